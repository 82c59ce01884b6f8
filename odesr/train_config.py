"""Training configuration: :data:`DEFAULTS` (every key a config may set), the objectives and
schedules it names, its checks, and the errors of training (:class:`TrainError`).

:func:`odesr.train.load_config` composes a config on top of :data:`DEFAULTS` and checks it here.
"""

from __future__ import annotations

import math
from typing import Any

from odesr.scale_weight import SCALE_WEIGHTS

__all__ = [
    "DEFAULTS",
    "DEFAULT_SCALES",
    "OBJECTIVES",
    "SIMULATION_FREE",
    "LR_SCHEDULES",
    "TrainError",
    "NonFiniteLoss",
    "check_config",
]

DEFAULT_SCALES = [round(1.1 + 0.1 * k, 1) for k in range(30)]  # 1.1 .. 4.0 (paper 4.1)

DEFAULTS: dict[str, Any] = {
    "model": None,  # registry spec for odesr.models.build
    "data": ["T91", "BSD200"],
    "patch_size": 48,
    "batch_size": 8,
    "scales": DEFAULT_SCALES,
    "objective": "endpoint",  # endpoint | hr | path (ODE models only; module docstring)
    # per-scale loss weight, mean 1 over `scales`: none | inv_span | inv_sqrt_span | inv_residual
    "scale_weight": "none",
    "train_solver": {"method": "rk4", "step_size": 0.25},
    "path": {"h": 1e-3, "t_sampling": "uniform", "t_max": None},
    "align_grid": True,
    "max_steps": 1000,
    "lr": 1e-4,
    "lr_schedule": "step",  # step (halve every lr_halve_every) | cosine (to 0 at max_steps)
    "lr_halve_every": 100_000,
    "warmup_steps": 0,  # linear warm-up from lr / warmup_steps
    "adam": {"betas": [0.9, 0.999], "eps": 1e-8},
    "grad_clip": 0.0,  # max global gradient L2 norm; 0 = off
    "ema": 0.0,  # decay of an exponential moving average of the weights; 0 = off
    "mixed_scales": False,  # one scale per sample (else per batch); see _mixed_ok
    # images of a training dataset kept out of training, for validation / weight selection
    "holdout": {"dataset": None, "n_images": 0},
    "val": {
        "dataset": "Set5",
        "scales": [2.0, 3.0, 4.0],
        "every": 0,
        "n_images": 2,
        "max_size": None,
        "solver": {},
    },
    "seed": 0,
    # version of the training procedure: bump it when the code trains a config differently (it
    # enters the checkpoint key, odesr.config.weights_hash)
    "recipe": "1",
    "log_every": 10,
    "checkpoint_every": 500,
    "checkpoint_recompute": False,
    "channels_last": False,
    "preload": True,
}

OBJECTIVES = ("endpoint", "hr", "path")
SIMULATION_FREE = ("hr", "path")  # one network pass per sample at a t drawn from [1, t_max]
LR_SCHEDULES = ("step", "cosine")


class TrainError(RuntimeError):
    """A problem with the config, the data or the run directory; the message says which."""


class NonFiniteLoss(TrainError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def check_config(cfg: dict) -> None:
    """Check ``cfg`` (a config merged onto :data:`DEFAULTS`) in place: raises :class:`TrainError`
    naming the first bad key; a single ``data`` name becomes a list."""
    if not isinstance(cfg.get("model"), dict) or "name" not in cfg["model"]:
        raise TrainError("config needs 'model: {name: ..., ...}' (an odesr.models spec)")
    if cfg["objective"] not in OBJECTIVES:
        raise TrainError(f"objective must be one of {list(OBJECTIVES)}, got {cfg['objective']!r}")
    scales = [float(s) for s in cfg["scales"]]
    if not scales or any(not (math.isfinite(s) and s >= 1) for s in scales):
        raise TrainError(f"scales must be finite numbers >= 1, got {cfg['scales']!r}")
    cfg["scales"] = scales
    for key in ("patch_size", "batch_size", "max_steps", "lr_halve_every"):
        if int(cfg[key]) < 1:
            raise TrainError(f"{key} must be >= 1, got {cfg[key]!r}")
    if cfg["scale_weight"] not in SCALE_WEIGHTS:
        raise TrainError(
            f"scale_weight must be one of {list(SCALE_WEIGHTS)}, got {cfg['scale_weight']!r}"
        )
    if (
        cfg["scale_weight"] != "none"
        and cfg["objective"] in SIMULATION_FREE
        and (cfg.get("path") or {}).get("t_sampling", "uniform") != "scales"
    ):
        raise TrainError(
            "scale_weight weights the configured scales; objective "
            f"{cfg['objective']!r} draws t from an interval (set path.t_sampling: scales)"
        )
    if cfg["lr_schedule"] not in LR_SCHEDULES:
        raise TrainError(
            f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {cfg['lr_schedule']!r}"
        )
    if not 0.0 <= float(cfg["ema"]) < 1.0:
        raise TrainError(f"ema must be a decay in [0, 1), got {cfg['ema']!r}")
    if float(cfg["grad_clip"]) < 0 or int(cfg["warmup_steps"]) < 0:
        raise TrainError("grad_clip and warmup_steps must be >= 0")
    if isinstance(cfg["data"], str):
        cfg["data"] = [cfg["data"]]
