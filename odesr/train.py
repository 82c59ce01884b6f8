"""Training (paper sections 3.3 and 4.1) with exact resume, DDP and simulation-free path training.

One run = one config (``PROFILE/MODEL`` composed from ``odesr/configs``, or a YAML file) + a run
directory holding ``last.pt`` (latest checkpoint, atomic), ``final.pt`` (at ``max_steps``),
``config.yaml`` and ``metrics.jsonl`` (one JSON record per log / validation event).

Batches: one scale per batch, drawn from ``scales`` by a generator shared by all ranks; patch
positions, rotations and flips come from a per-rank generator. HR images are preloaded once.

* ``input_kind == "upscaled"`` models get I(t0) of the HR patch. The patch is cut from the
  (augmented) image *with a margin* (>= the path pad ``ceil(4 t) + 2``, reflected at the image
  border as :func:`odesr.degrade.path_point` pads a full image) and, for scales t = p/q with
  small p, the margin is widened so the crop starts on the LR sampling grid of the full image: the
  patch's I(t) then equals ``path_point(image, t)`` there (up to float rounding). The LR is
  quantised to 8 bits (``quantize_lr=True``) as a stored LR image is at test time. Target: the HR
  patch.
* ``input_kind == "lr"`` models get ``quantize(imresize(hr_patch, 1/s))`` of ``floor(n / s)``
  pixels and the target ``hr_patch[:floor(lr * s)]`` (the ``floor`` protocol on the patch).

Objectives for ODE models: ``endpoint`` (the paper: L1(ODESolve(I(t0), [t0, 1]), HR), backprop
through the solver), ``hr`` (beyond the paper, simulation-free, one network pass per sample: L1
between g(I(t), t) and the HR patch at t drawn uniformly from [1, t_max], on the same 8-bit
I(t) patches as ``endpoint``; the model (``predicts: hr``) is solved with ``path-step``, which
moves the state along P_t of the predicted HR image, see :mod:`odesr.ode`) and ``path`` (kept as
a negative control, it diverges: L1 between f(I(t), t) and a secant of ``path_point`` along t;
that target is dominated by the drift of the LR grid with t and with the crop's origin, results
in results/cpu/objective-path-vs-endpoint.md).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml

from odesr import tensorboard_log
from odesr.arguments import train_arguments
from odesr.config import (
    LEGACY_VALUES,
    ConfigError,
    apply_overrides,
    check_keys,
    compose,
    config_names,
    deep_merge,
    parse_set,
    read_yaml,
    split_name,
)
from odesr.degrade import path_pad, path_point, quantize
from odesr.ensemble import forward_transform
from odesr.io import write_text_atomic
from odesr.ode import grid_options
from odesr.prefetch import BatchSource, batch_source
from odesr.resize import imresize
from odesr.scale_weight import SCALE_WEIGHTS, scale_weights, weight_of, weighted_l1

__all__ = [
    "DEFAULTS",
    "DEFAULT_SCALES",
    "TrainError",
    "NonFiniteLoss",
    "config_path",
    "load_config",
    "PatchSampler",
    "path_patch",
    "path_derivative",
    "train",
    "TrainingRun",
    "TrainStep",
    "MetricsLog",
    "seed_everything",
    "build_model",
    "make_optimizer",
    "lr_factor",
    "update_ema",
    "machine_segment",
    "save_run",
    "restore_run",
    "validate",
    "load_val_images",
    "pick_device",
    "progress_bar",
    "compute_loss",
    "add_arguments",
    "run_config",
    "run_from_args",
    "main",
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

EXIT_OK, EXIT_USAGE, EXIT_NONFINITE = 0, 2, 3
OBJECTIVES = ("endpoint", "hr", "path")
SIMULATION_FREE = ("hr", "path")  # one network pass per sample at a t drawn from [1, t_max]
LR_SCHEDULES = ("step", "cosine")


class TrainError(RuntimeError):
    """A problem with the config, the data or the run directory; the message says which."""


class NonFiniteLoss(TrainError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- configuration


def load_config(
    source: str | os.PathLike | dict, overrides: Sequence[str] | dict | None = None
) -> dict:
    """``DEFAULTS`` <- a composed ``PROFILE/MODEL``, a YAML file or a dict <- overrides.

    Overrides are ``["a.b=value", ...]`` (YAML values) or ``{"a.b": value}``; each replaces what
    its key held (:mod:`odesr.config`). Unknown keys, badly typed values and YAML syntax errors
    raise :class:`TrainError` naming the key, value or file."""
    try:
        composed = None if isinstance(source, dict) else split_name(source)
        if composed is not None:
            cfg = compose(*composed, DEFAULTS)
        else:
            where = "config" if isinstance(source, dict) else str(source)
            raw = source if isinstance(source, dict) else read_yaml(config_path(source))
            cfg = deep_merge(DEFAULTS, check_keys(raw, DEFAULTS, f"{where}: "))
        if overrides is not None and not isinstance(overrides, dict):
            overrides = parse_set(overrides)
        cfg = apply_overrides(cfg, overrides or {}, DEFAULTS)
        cfg = deep_merge(DEFAULTS, check_keys(cfg, DEFAULTS, "--set " if overrides else ""))
    except ConfigError as exc:
        raise TrainError(str(exc)) from None
    _check_config(cfg)
    return cfg


def config_path(name: str | os.PathLike) -> Path:
    """A config file given by path (composed ``PROFILE/MODEL`` names have none)."""
    path = Path(name)
    if path.is_file():
        return path
    raise TrainError(
        f"config {str(name)!r} not found (a YAML file or PROFILE/MODEL, one of: "
        f"{', '.join(config_names())})"
    )


def _check_config(cfg: dict) -> None:
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


# ----------------------------------------------------------------------------- patches


def _grid_period(t: float, limit: int = 64) -> int | None:
    """p for t = p / q (lowest terms, p <= limit): crops starting at multiples of p share the LR
    grid of the full image. None when t is not such a fraction."""
    frac = Fraction(t).limit_denominator(1000)
    if abs(float(frac) - t) > 1e-9 or frac.numerator > limit:
        return None
    return frac.numerator


def _reflect(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Indices mirrored at the border without repeating the edge (``F.pad(mode='reflect')``)."""
    idx = idx.abs()
    idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    return idx.clamp(0, n - 1)


def crop_reflect(img: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """``img[..., top:top+h, left:left+w]`` with out-of-range rows/cols mirrored."""
    rows = _reflect(torch.arange(top, top + h), img.shape[-2])
    cols = _reflect(torch.arange(left, left + w), img.shape[-1])
    return img.index_select(-2, rows).index_select(-1, cols)


def _to_float(img: torch.Tensor) -> torch.Tensor:
    return img.to(torch.float32) / 255.0 if img.dtype == torch.uint8 else img.to(torch.float32)


def patch_origin(top: int, left: int, t: float, align: bool = True) -> tuple[int, int]:
    """Row and column of a :func:`path_patch` patch's first pixel in the crop whose corner
    anchors the LR grid its I(t) was computed on (what position planes need)."""
    pad = path_pad(t)
    period = _grid_period(t) if align else None
    return pad + (top % period if period else 0), pad + (left % period if period else 0)


def path_patch(
    img: torch.Tensor,
    top: int,
    left: int,
    size: int,
    t: float,
    quantize_lr: bool = True,
    align: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I(t) patch, HR patch)`` at ``[top:top+size, left:left+size]`` of ``img`` (C, H, W).

    Cut with a margin and resized with ``pad=0``; when ``align`` and t = p/q with small p, the crop
    starts on the full image's LR grid so the result equals ``path_point(img, t)[..., patch]``.
    """
    m_top, m_left = patch_origin(top, left, t, align)
    pad = path_pad(t)
    crop = crop_reflect(img, top - m_top, left - m_left, m_top + size + pad, m_left + size + pad)
    crop = _to_float(crop)
    it = path_point(crop, t, pad=0, quantize_lr=quantize_lr)
    hr = crop[..., m_top : m_top + size, m_left : m_left + size]
    return it[..., m_top : m_top + size, m_left : m_left + size], hr


def path_derivative(
    img: torch.Tensor, top: int, left: int, size: int, t: float, h: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I(t), dI/dt)`` on a patch: central difference ``(I(t+h) - I(t-h)) / 2h`` (one-sided
    ``(I(t+h) - I(t)) / h`` when t - h < 1), in float64, no quantisation."""
    pad = path_pad(t + h)
    crop = _to_float(crop_reflect(img, top - pad, left - pad, size + 2 * pad, size + 2 * pad))
    crop = crop.to(torch.float64)
    sl = (..., slice(pad, pad + size), slice(pad, pad + size))
    it = path_point(crop, t, pad=0)[sl]
    up = path_point(crop, t + h, pad=0)[sl]
    if t - h >= 1:
        deriv = (up - path_point(crop, t - h, pad=0)[sl]) / (2 * h)
    else:
        deriv = (up - it) / h
    return it.to(torch.float32), deriv.to(torch.float32)


class PatchSampler:
    """Random training batches from preloaded HR images (stored as uint8 when 8-bit).

    ``scale_gen`` (same seed on every rank) draws the batch scale, ``gen`` (per rank) the rest.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        cfg: dict,
        input_kind: str,
        objective: str,
        seed: int,
        rank: int = 0,
        allowed_scales: Sequence[float] | None = None,
        mixed: bool = False,
    ) -> None:
        if mixed and input_kind != "upscaled":
            raise TrainError("mixed_scales needs a model taking I(t0) (not an LR-input model)")
        self.mixed = mixed
        self.images = list(images)
        self.cfg = cfg
        self.input_kind = input_kind
        self.objective = objective
        self.patch = int(cfg["patch_size"])
        self.batch = int(cfg["batch_size"])
        scales = [float(s) for s in cfg["scales"]]
        if allowed_scales is not None:
            allowed = {round(float(s), 6) for s in allowed_scales}
            scales = [s for s in scales if round(s, 6) in allowed]
            if not scales:
                raise TrainError(
                    f"none of the config scales {cfg['scales']} is one the model supports "
                    f"({sorted(allowed)})"
                )
        self.scales = scales
        self.gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * rank + 1)
        self.scale_gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
        small = [i for i, im in enumerate(self.images) if min(im.shape[-2:]) < self.patch]
        if len(small) == len(self.images):
            raise TrainError(f"every training image is smaller than patch_size {self.patch}")
        self.usable = [i for i in range(len(self.images)) if i not in set(small)]

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "scale_gen": self.scale_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.scale_gen.set_state(state["scale_gen"])

    def _randint(self, n: int, gen: torch.Generator | None = None) -> int:
        return int(torch.randint(n, (1,), generator=gen or self.gen))

    def _draw_scale(self) -> float:
        if self.input_kind == "upscaled" and self.objective in SIMULATION_FREE:
            pcfg = self.cfg["path"]
            if pcfg.get("t_sampling", "uniform") == "scales":
                return self.scales[self._randint(len(self.scales), self.scale_gen)]
            t_max = float(pcfg.get("t_max") or max(self.scales))
            u = float(torch.rand((), generator=self.scale_gen, dtype=torch.float64))
            return 1.0 + (t_max - 1.0) * u
        return self.scales[self._randint(len(self.scales), self.scale_gen)]

    def _draw_view(self, size: int) -> tuple[int, int, bool, int, int]:
        """``(image index, rot, flip, top, left)`` of one ``size`` crop of an augmented image."""
        index = self.usable[self._randint(len(self.usable))]
        rot, flip = self._randint(4), bool(self._randint(2))
        height, width = self.images[index].shape[-2:]
        if rot % 2:
            height, width = width, height
        top = self._randint(height - size + 1)
        left = self._randint(width - size + 1)
        return index, rot, flip, top, left

    def plan(self) -> dict:
        """The random draws of the next batch (cheap): ``{"mixed", "samples"}`` with one
        ``(scale, image index, rot, flip, top, left)`` per sample. :meth:`make` turns a plan into
        the batch, a pure function of the images and the plan, so batches can be made ahead in
        worker processes (:mod:`odesr.prefetch`) and come out the same."""
        if self.mixed:
            samples = []
            for _ in range(self.batch):
                t = self._draw_scale()  # the scale first, then the view, per sample
                samples.append((t, *self._draw_view(self.patch)))
            return {"mixed": True, "samples": samples}
        t = self._draw_scale()
        return {
            "mixed": False,
            "samples": [(t, *self._draw_view(self.patch)) for _ in range(self.batch)],
        }

    def make(self, plan: dict) -> dict:
        """The batch of a :meth:`plan` (see :meth:`next`)."""
        if plan["mixed"]:
            parts = [self._make_samples([sample]) for sample in plan["samples"]]
            return {
                "scale": torch.tensor([b["scale"] for b in parts], dtype=torch.float64),
                "x": torch.cat([b["x"] for b in parts]),
                "target": torch.cat([b["target"] for b in parts]),
                "origin": torch.cat([b["origin"] for b in parts]),
            }
        return self._make_samples(plan["samples"])

    def next(self) -> dict:
        """One batch: ``{"scale", "x", "target"}`` (+ ``"size"`` for LR models). ``scale`` is a
        float, or a (B,) float64 tensor (one scale per sample) when ``mixed``."""
        return self.make(self.plan())

    def _make_samples(self, samples: Sequence[tuple]) -> dict:
        """One batch of samples that share a scale."""
        t = samples[0][0]
        views = [
            (forward_transform(self.images[index], rot, flip), top, left)
            for _, index, rot, flip, top, left in samples
        ]
        xs, ys, origins = [], [], []
        if self.input_kind == "upscaled":
            for img, top, left in views:
                origins.append(patch_origin(top, left, t, bool(self.cfg["align_grid"])))
                if self.objective == "path":
                    x, y = path_derivative(
                        img, top, left, self.patch, t, float(self.cfg["path"]["h"])
                    )
                else:
                    x, y = path_patch(
                        img,
                        top,
                        left,
                        self.patch,
                        t,
                        quantize_lr=True,
                        align=bool(self.cfg["align_grid"]),
                    )
                xs.append(x)
                ys.append(y)
            origin = torch.tensor(origins, dtype=torch.int64)
            return {"scale": t, "x": torch.stack(xs), "target": torch.stack(ys), "origin": origin}
        n = self.patch
        lr_n = int(math.floor(n / t + 1e-9))
        sr_n = int(math.floor(lr_n * t + 1e-9))
        if lr_n < 2:
            raise TrainError(f"patch_size {n} is too small for scale {t}")
        hr = torch.stack(
            [_to_float(img[..., top : top + n, left : left + n]) for img, top, left in views]
        )
        lr = quantize(imresize(hr, scale=1.0 / t, size=(lr_n, lr_n)))
        return {"scale": t, "x": lr, "target": hr[..., :sr_n, :sr_n], "size": (sr_n, sr_n)}


def holdout_files(cfg: dict, data_root: str | None) -> list[Path]:
    """The last ``holdout.n_images`` files (sorted order) of ``holdout.dataset``: kept out of
    training and used for validation / weight selection (never a test set)."""
    from odesr.data import DataError, list_images

    hcfg = cfg.get("holdout") or {}
    n = int(hcfg.get("n_images") or 0)
    if not hcfg.get("dataset") or n < 1:
        return []
    try:
        files = list_images(hcfg["dataset"], data_root)
    except DataError as exc:
        raise TrainError(str(exc)) from None
    if n >= len(files):
        raise TrainError(f"holdout.n_images {n} leaves no {hcfg['dataset']} image to train on")
    return [Path(f) for f in files[-n:]]


def load_training_images(
    names: Sequence[str], data_root: str | None, exclude: Sequence[str | os.PathLike] = ()
) -> list[torch.Tensor]:
    """All images of the datasets/folders ``names`` but ``exclude`` (paths) as (3, H, W) uint8
    (or float32 if 16-bit)."""
    from odesr.data import DataError, list_images, load_image

    skip = {Path(f).resolve() for f in exclude}
    out: list[torch.Tensor] = []
    for name in names:
        try:
            files = list_images(name, data_root)
        except DataError as exc:
            raise TrainError(str(exc)) from None
        for f in files:
            if Path(f).resolve() in skip:
                continue
            img = load_image(f)
            if img.bit_depth == 8:
                out.append(torch.round(img.rgb * 255.0).to(torch.uint8))
            else:
                out.append(img.rgb)
    return out


# ----------------------------------------------------------------------------- model glue


def _models():
    import odesr.models as models  # noqa: PLC0415 (written concurrently; imported late)

    return models


def _model_spec(cfg: dict) -> dict:
    """The config's model spec; an ODE model trained on the endpoint objective also records the
    solver it is trained with (``train_solver``), so its checkpoint carries it."""
    spec = copy.deepcopy(cfg["model"])
    if _models().is_ode(spec["name"]) and cfg["objective"] == "endpoint":
        spec.setdefault("train_solver", copy.deepcopy(cfg["train_solver"]))
    return spec


class TrainStep(nn.Module):
    """What DDP wraps: one forward for every objective, so gradients are always all-reduced."""

    def __init__(self, model: nn.Module, cfg: dict) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch: dict) -> torch.Tensor:
        model, cfg, t = self.model, self.cfg, batch["scale"]
        x = batch["x"]
        if getattr(model, "input_kind", "upscaled") == "lr":
            return model(x, t, batch["size"])
        # set on every batch, never cleared here: activation checkpointing recomputes the
        # forward during backward, with the same origins
        _models().set_grid_origin(model, batch.get("origin"))
        if model.is_ode:
            if cfg["objective"] in SIMULATION_FREE:
                return model.func(_as_t(t, x), x)  # f ~ dI/dt (path), g ~ HR (hr): one pass
            solver = grid_options(cfg["train_solver"] or {})
            solver["checkpoint"] = cfg["checkpoint_recompute"]  # false, true/step or eval
            if torch.is_tensor(t):
                return solve_per_sample(model.func, x, t, **solver)
            return model(x, t, **solver)
        return model(x, _as_t(t, x))


def _as_t(scale: float | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    return scale.to(x.device, x.dtype) if torch.is_tensor(scale) else scale


def mixed_scales_ok(model: nn.Module, cfg: dict) -> bool:
    """Whether a batch may mix scales: +t nets and the simulation-free objectives always;
    endpoint ODE training when ``train_solver`` fixes ``steps`` (a fixed-step method on a
    per-sample grid of equal step counts); never for LR-input models (their LR sizes differ
    per scale)."""
    if getattr(model, "input_kind", "upscaled") != "upscaled":
        return False
    if not model.is_ode or cfg["objective"] in SIMULATION_FREE:
        return True
    from odesr.ode import FIXED_METHODS

    solver = grid_options(cfg["train_solver"] or {})
    return solver.get("steps") is not None and solver.get("method", "rk4") in FIXED_METHODS


def solve_per_sample(
    func: nn.Module, x: torch.Tensor, scales: torch.Tensor, **solver: Any
) -> torch.Tensor:
    """Fixed-step solve of dI/dt = func(t, I) from each sample's own t0 = ``scales[b]`` to 1.

    Integrates in u from 2 to 1 with t = 1 + (u - 1)(t0 - 1), dI/du = (t0 - 1) f(t, I): the
    change of time variable is affine, so a fixed-step method with ``steps`` steps takes exactly
    the steps (same stages, same increments) it takes on [t0, 1] alone.
    """
    from odesr.ode import PATH_STEP, solve

    if solver.get("method") == PATH_STEP:  # P_t is not affine in t: no shared time variable
        raise TrainError("solve_per_sample: path-step cannot solve mixed scales in one batch")
    span = (scales.to(x.device, x.dtype) - 1.0).reshape(-1)
    gain = span.reshape(-1, 1, 1, 1)

    def rhs(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return gain * func(1.0 + (u - 1.0) * span, y)

    opts = {k: solver[k] for k in ("method", "steps", "checkpoint") if k in solver}
    return solve(rhs, x, 2.0, **opts).image


def compute_loss(step_module: nn.Module, batch: dict) -> torch.Tensor:
    """L1 between the prediction (image or derivative) and the batch target, each sample
    weighted by ``batch["weight"]`` when present (:mod:`odesr.scale_weight`)."""
    pred = step_module(batch)
    return weighted_l1(pred, batch["target"], batch.get("weight"))


def bicubic_residuals(
    images: Sequence[torch.Tensor], cfg: dict, n_patches: int = 32, seed: int = 20240607
) -> dict[float, float]:
    """Mean |I(t) - HR| of ``n_patches`` training patches (``patch_size``, 8-bit LR as in
    training) at each configured scale, drawn by a generator of its own (``seed``, not the run's
    seed): the same table for every seed of a config, and the run's batches are untouched."""
    gen = torch.Generator().manual_seed(int(seed))
    size = int(cfg["patch_size"])
    usable = [im for im in images if min(im.shape[-2:]) >= size]
    if not usable:
        raise TrainError(f"every training image is smaller than patch_size {size}")
    table: dict[float, float] = {}
    for t in [float(s) for s in cfg["scales"]]:
        total = 0.0
        for _ in range(int(n_patches)):
            img = usable[int(torch.randint(len(usable), (1,), generator=gen))]
            height, width = img.shape[-2:]
            top = int(torch.randint(height - size + 1, (1,), generator=gen))
            left = int(torch.randint(width - size + 1, (1,), generator=gen))
            x, y = path_patch(img, top, left, size, t, align=bool(cfg["align_grid"]))
            total += float((x - y).abs().mean())
        table[round(t, 6)] = total / int(n_patches)
    return table


def loss_weights(cfg: dict, images: Sequence[torch.Tensor], scales: Sequence[float]):
    """``{scale: weight}`` of the config's ``scale_weight`` over ``scales`` (the ones the sampler
    draws), or None for ``none``."""
    kind = cfg["scale_weight"]
    if kind == "none":
        return None
    residuals = bicubic_residuals(images, cfg) if kind == "inv_residual" else None
    try:
        return scale_weights(kind, scales, residuals)
    except ValueError as exc:
        raise TrainError(str(exc)) from None


# ----------------------------------------------------------------------------- checkpoints


# Config keys a resumed run may change: they do not alter the optimisation trajectory.
RESUMABLE_CHANGES = ("max_steps", "log_every", "checkpoint_every", "val", "checkpoint_recompute")


def resume_mismatch(saved: dict, cfg: dict) -> list[str]:
    """Top-level config keys that differ between a checkpoint's config and ``cfg``, ignoring
    :data:`RESUMABLE_CHANGES` (extending ``max_steps`` is a legitimate resume, except under the
    cosine schedule, which it would change)."""
    saved = {**LEGACY_VALUES, **saved}  # a checkpoint from before a key existed
    free = set(RESUMABLE_CHANGES)
    if "cosine" in (saved.get("lr_schedule"), cfg.get("lr_schedule")):
        free.discard("max_steps")  # the cosine schedule ends at max_steps
    keys = (set(saved) | set(cfg)) - free
    return sorted(k for k in keys if saved.get(k) != cfg.get(k))


def _global_rng_state() -> dict:
    """This process's Python, NumPy, torch (and CUDA) generator states."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rank_rng_state(rng: dict, rank: int, world: int) -> dict:
    """The global generator state ``rank`` saved; rank 0's when the world size changed or the
    checkpoint predates per-rank states (they held rank 0's state at the top level)."""
    ranks = rng.get("ranks")
    if ranks is None:
        return rng
    return ranks[rank] if len(ranks) == world else ranks[0]


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    ns = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            ns["keys"].numpy().astype(np.uint32),
            ns["pos"],
            ns["has_gauss"],
            ns["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass


def save_training_checkpoint(path: Path, model: nn.Module, extra: dict) -> None:
    """Atomic ``{format, spec, state_dict, extra}`` via :func:`odesr.models.save_checkpoint`.

    ``extra`` holds optimizer, scheduler, step, RNG states and config, all loadable with
    ``torch.load(weights_only=True)``.
    """
    _models().save_checkpoint(path, model, **extra)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, extra)`` of a training checkpoint."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return payload["state_dict"], payload["extra"]
    except (KeyError, TypeError, RuntimeError, EOFError, OSError) as exc:
        raise TrainError(f"{path}: not a readable training checkpoint ({exc})") from None


# ----------------------------------------------------------------------------- logging


class MetricsLog:
    """Append-only JSONL metrics log; records past ``keep_until`` are dropped on resume."""

    def __init__(self, path: Path, enabled: bool, keep_until: int | None) -> None:
        self.path, self.enabled = path, enabled
        if enabled and keep_until is not None and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = []
            for line in lines:
                try:
                    if json.loads(line).get("step", 0) <= keep_until:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
            path.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
        elif enabled and keep_until is None and path.exists():
            path.unlink()

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def validate(model: nn.Module, images: list, cfg: dict, device: torch.device) -> dict:
    """``{"scale": PSNR}`` of ``model`` on the validation images (``val`` settings of ``cfg``)."""
    from odesr.evaluate import EvalSettings, evaluate_images, summarize

    vcfg = cfg["val"]
    scales = [float(s) for s in vcfg["scales"]]
    allowed = model.supported_scales
    if allowed is not None:
        scales = [s for s in scales if s in allowed] or list(allowed)
    opts = dict(vcfg.get("solver") or cfg.get("train_solver") or {}) if model.is_ode else None
    settings = EvalSettings(device=str(device), solver=opts)
    was_training = model.training
    model.eval()
    try:
        rows = evaluate_images(model, images, scales, settings)
    finally:
        model.train(was_training)
    return {f"{s:g}": p for s, p, _, _ in summarize(rows)}


def load_val_images(cfg: dict, data_root: str | None) -> list:
    """The validation images of ``cfg["val"]`` (none when validation is off)."""
    from odesr.data import LoadedImage, list_images, load_image

    vcfg = cfg["val"]
    if not vcfg.get("every") or not vcfg.get("dataset"):
        return []
    if vcfg["dataset"] == "holdout":
        files = holdout_files(cfg, data_root)
        if not files:
            raise TrainError("val.dataset 'holdout' needs holdout: {dataset: ..., n_images: N}")
    else:
        files = list_images(vcfg["dataset"], data_root)
    files = files[: int(vcfg.get("n_images") or 1)]
    images = []
    for f in files:
        img = load_image(f)
        ms = vcfg.get("max_size")
        if ms:
            h, w = img.rgb.shape[-2:]
            top, left = max(0, (h - ms) // 2), max(0, (w - ms) // 2)
            rgb = img.rgb[:, top : top + ms, left : left + ms].contiguous()
            img = LoadedImage(img.path, rgb, img.channels, img.bit_depth)
        images.append(img)
    return images


# ----------------------------------------------------------------------------- distributed


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _param_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- training


def pick_device(name: str | None, local_rank: int) -> torch.device:
    """The device ``name`` means (``auto``/None: cuda when available; cuda: ``cuda:local_rank``)."""
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def train(
    cfg: dict,
    run_dir: str | os.PathLike,
    resume: bool = False,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
    data_workers: int = 0,
    tf32: bool = False,
) -> dict:
    """Train per ``cfg`` into ``run_dir``; returns ``{"step", "loss", "final", ...}``.

    ``data_workers`` > 0 makes batches ahead in that many worker processes
    (:mod:`odesr.prefetch`; the same batches, so the same weights). On a GPU the convolutions
    and matmuls run in full float32 unless ``tf32`` (faster, 10-bit mantissa products; PyTorch's
    own default is TF32 for cuDNN convolutions), as evaluation does (``gpu_float32``); the
    checkpoints' ``trained_on`` records which.

    Raises :class:`NonFiniteLoss` on a NaN/inf loss (``last.pt`` keeps the last good state) and
    :class:`TrainError` on config/data problems.
    """
    world, rank, local_rank = _dist_env()
    dev = pick_device(device, local_rank)
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group(backend=backend)
    from odesr.evaluate import gpu_float32

    try:
        with gpu_float32(tf32):
            result = _train(
                cfg, Path(run_dir), resume, dev, data_root, progress, world, rank, data_workers
            )
        if distributed:
            torch.distributed.barrier()  # nobody tears down while a peer is still talking
        return result
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class TrainingRun:
    """What one training run holds and a checkpoint stores (``ema``: averaged weights or None)."""

    cfg: dict
    model: nn.Module
    ema: nn.Module | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    sampler: BatchSource  # a PatchSampler, or a Prefetcher around one
    step: int = 0
    trained_on: list[dict] = field(default_factory=list)  # segments, see machine_segment
    scale_weights: dict[float, float] | None = None  # loss weight per scale (odesr.scale_weight)
    # (perf_counter, step, seconds, steps) when the current segment's clock last started
    clock: tuple[float, int, float, int] = (0.0, 0, 0.0, 0)


def machine_segment(run: TrainingRun, dev: torch.device, world: int, together: int = 1) -> None:
    """Record where the next steps run: ``run.trained_on`` (saved in every checkpoint, kept by
    published weights) lists ``{from_step, device, torch, world, tf32}`` segments, a new one each
    time a resume changes any of them. Weights trained on another machine, thread count or
    torch differ by float reduction order, so a report can say which rows came from where.
    Each save adds how fast the segment trains (:func:`_record_speed`). ``together`` > 1: the
    run is one of that many seeds trained in one process (:mod:`odesr.multiseed`), recorded as
    ``seeds_together`` (each step then trains that many seeds)."""
    from odesr.evaluate import device_label

    segment = {
        "device": device_label(dev),
        "torch": str(torch.__version__),  # a plain str: TorchVersion is not weights_only-safe
        "world": world,
        "tf32": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else False,
    }
    if together > 1:
        segment["seeds_together"] = together
    last = run.trained_on[-1] if run.trained_on else None
    keys = (*segment, "seeds_together")
    if last is None or {k: last.get(k) for k in keys} != {k: segment.get(k) for k in keys}:
        run.trained_on.append({"from_step": run.step, **segment})
    current = run.trained_on[-1]
    run.clock = (
        time.perf_counter(),
        run.step,
        float(current.get("seconds", 0.0)),
        int(current.get("steps", 0)),
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (what model init draws from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: dict, dev: torch.device) -> tuple[nn.Module, str, str]:
    """``(model, input_kind, objective)`` for ``cfg`` (the objective is endpoint for non-ODEs)."""
    model = _models().build(_model_spec(cfg)).to(dev)
    kind = getattr(model, "input_kind", "upscaled")
    if cfg["objective"] != "endpoint" and kind == "upscaled" and not model.is_ode:
        raise TrainError(
            f"objective {cfg['objective']!r} needs an ODE model; {cfg['model']['name']} is not one"
        )
    if model.is_ode and (cfg["objective"] == "hr") != (getattr(model, "predicts", "") == "hr"):
        raise TrainError(
            f"objective {cfg['objective']!r} and model.predicts "
            f"{getattr(model, 'predicts', 'derivative')!r} do not go together (objective hr "
            "trains an HR predictor: model {predicts: hr, method: path-step}, and only it)"
        )
    if cfg["mixed_scales"] and not mixed_scales_ok(model, cfg):
        why = (
            "an LR-input model: its LR sizes differ per scale"
            if kind != "upscaled"
            else "an ODE model needs train_solver.steps and a fixed-step method"
        )
        raise TrainError(
            f"mixed_scales: {cfg['model']['name']} cannot mix scales in a batch ({why}); "
            "set mixed_scales: false"
        )
    objective = cfg["objective"] if model.is_ode else "endpoint"
    if cfg.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model, kind, objective


def lr_factor(step: int, cfg: dict) -> float:
    """Learning-rate multiplier after ``step`` steps: linear warm-up over ``warmup_steps``, then
    ``step`` (halved every ``lr_halve_every``) or ``cosine`` (from 1 to 0 at ``max_steps``)."""
    warm = int(cfg["warmup_steps"])
    if step < warm:
        return (step + 1) / warm
    if cfg["lr_schedule"] == "cosine":
        span = max(int(cfg["max_steps"]) - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min((step - warm) / span, 1.0)))
    return 0.5 ** (step // int(cfg["lr_halve_every"]))


def make_optimizer(model: nn.Module, cfg: dict):
    """Adam and its schedule (a plain StepLR for the step schedule without warm-up, as before)."""
    opt = torch.optim.Adam(
        model.parameters(),
        lr=float(cfg["lr"]),
        betas=tuple(float(b) for b in cfg["adam"]["betas"]),
        eps=float(cfg["adam"]["eps"]),
    )
    if cfg["lr_schedule"] == "step" and not int(cfg["warmup_steps"]):
        return opt, torch.optim.lr_scheduler.StepLR(
            opt, step_size=int(cfg["lr_halve_every"]), gamma=0.5
        )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model, d = min(decay, (1 + step) / (10 + step)) (short warm-up
    so the average forgets the initial weights early)."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1.0 - d)


def restore_run(run: TrainingRun, last: Path, rank: int, world: int) -> None:
    """Continue ``run`` from ``last`` (refusing a checkpoint trained with another config)."""
    state, ckpt = read_checkpoint(last)
    differ = resume_mismatch(ckpt.get("config", {}), run.cfg)
    if differ:
        raise TrainError(
            f"{last}: cannot resume, the checkpoint was trained with a different "
            f"{', '.join(differ)} (use a new output folder, or train without --resume)"
        )
    run.model.load_state_dict(state)
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.step = int(ckpt["step"])
    run.trained_on = list(ckpt.get("trained_on", []))
    rng = ckpt["rng"]
    _set_rng_state(_rank_rng_state(rng, rank, world))
    samplers = rng["samplers"]
    if len(samplers) == world:
        run.sampler.load_state_dict(samplers[rank])
    elif rank == 0:
        print(
            f"odesr train: world size changed ({len(samplers)} -> {world}); data streams restart",
            file=sys.stderr,
        )


def _record_speed(run: TrainingRun) -> None:
    """Update the current ``trained_on`` segment with its speed so far: ``threads`` (torch
    threads of this process), ``steps`` and ``seconds`` (steps trained and wall seconds spent in
    the segment, from after the data is loaded to this save, summed over resumes on the same
    machine), ``steps_per_s`` and ``loadavg`` (the 1, 5 and 15 minute load averages now; None
    where the OS has none)."""
    start, step0, seconds0, steps0 = run.clock
    seconds = seconds0 + max(time.perf_counter() - start, 0.0)
    steps = steps0 + run.step - step0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    run.trained_on[-1].update(
        threads=torch.get_num_threads(),
        steps=steps,
        seconds=round(seconds, 3),
        steps_per_s=round(steps / seconds, 4) if seconds > 0 else None,
        loadavg=load,
    )


def save_run(run: TrainingRun, path: Path, world: int, rank: int, final: bool = False) -> None:
    """Write a checkpoint (collective under DDP). ``last.pt`` holds the raw weights (+ ``ema``);
    ``final.pt`` holds the weights to evaluate: the EMA when on (``extra.weights`` says which)."""
    states, globals_ = [run.sampler.state_dict()], [_global_rng_state()]
    if world > 1:
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, (states[0], globals_[0]))
        states = [g[0] for g in gathered]
        globals_ = [g[1] for g in gathered]
    if rank != 0:
        return
    _record_speed(run)
    extra = dict(
        optimizer=run.opt.state_dict(),
        scheduler=run.sched.state_dict(),
        step=run.step,
        rng={"samplers": states, "ranks": globals_},  # index = rank
        config=run.cfg,
        weights="ema" if run.ema is not None else "last",
        trained_on=run.trained_on,
    )
    if run.scale_weights is not None:
        extra["scale_weights"] = {f"{s:g}": w for s, w in run.scale_weights.items()}
    if run.ema is not None and not final:
        extra["ema"] = run.ema.state_dict()
    model = run.ema if (final and run.ema is not None) else run.model
    save_training_checkpoint(path, model, extra)


def _train_step(run: TrainingRun, step_module: nn.Module, batch: dict, dev, world: int, last: Path):
    """One optimiser step; returns ``(loss, grad_norm)``. Raises NonFiniteLoss before updating."""
    cfg = run.cfg
    batch["x"] = batch["x"].to(dev, non_blocking=True)
    batch["target"] = batch["target"].to(dev, non_blocking=True)
    if cfg.get("channels_last"):
        batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
    run.opt.zero_grad(set_to_none=True)
    loss = compute_loss(step_module, batch)
    check = loss.detach().clone()
    if world > 1:
        torch.distributed.all_reduce(check)
        check /= world
    loss_value = float(check)
    if not math.isfinite(loss_value):
        raise NonFiniteLoss(
            f"non-finite loss ({loss_value}) at step {run.step + 1} "
            f"(scale {_scale_text(batch['scale'])}); last good checkpoint kept: "
            f"{last if last.exists() else 'none yet'}"
        )
    loss.backward()
    clip = float(cfg["grad_clip"])
    grad_norm = float("nan")
    if clip > 0:
        grad_norm = float(nn.utils.clip_grad_norm_(run.model.parameters(), clip))
    run.opt.step()
    run.sched.step()
    if run.ema is not None:
        update_ema(run.ema, run.model, float(cfg["ema"]), run.step)
    run.step += 1
    return loss_value, grad_norm


def _scale_text(scale: float | torch.Tensor) -> str:
    return "mixed" if torch.is_tensor(scale) else f"{scale:.4g}"


def _log_metrics(log: MetricsLog, bar, record: dict) -> None:
    """The one place training and validation metrics are reported (JSONL log, progress bar)."""
    log.write(**record)
    if bar is not None and "val_psnr" in record:
        bar.write(
            f"step {record['step']}: val PSNR "
            + ", ".join(f"x{k} {p:.2f}" for k, p in record["val_psnr"].items())
        )


def progress_bar(cfg: dict, step: int, enabled: bool, label: str = ""):
    """A tqdm bar over the run's steps from ``step`` (None when not ``enabled``); ``label``
    follows the model name in its description."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=int(cfg["max_steps"]),
        initial=step,
        desc=f"train {cfg['model']['name']}{label}",
        unit="step",
        dynamic_ncols=True,
    )


def _train(
    cfg: dict,
    run_dir: Path,
    resume: bool,
    dev: torch.device,
    data_root: str | None,
    progress: bool,
    world: int,
    rank: int,
    data_workers: int = 0,
) -> dict:
    distributed, main_rank = world > 1, rank == 0
    seed = int(cfg["seed"])
    seed_everything(seed)
    model, kind, objective = build_model(cfg, dev)
    opt, sched = make_optimizer(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if float(cfg["ema"]) > 0 else None
    held_out = holdout_files(cfg, data_root)
    images = load_training_images(cfg["data"], data_root, exclude=held_out)
    sampler = PatchSampler(
        images, cfg, kind, objective, seed, rank, model.supported_scales, bool(cfg["mixed_scales"])
    )
    try:
        source = batch_source(sampler, int(data_workers))
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    run = TrainingRun(cfg, model, ema, opt, sched, source)
    run.scale_weights = loss_weights(cfg, images, sampler.scales)
    # everything that can refuse the run comes before its folder is touched
    val_images = load_val_images(cfg, data_root) if main_rank else []

    run_dir.mkdir(parents=True, exist_ok=True)
    last, final = run_dir / "last.pt", run_dir / "final.pt"
    if resume and last.exists():
        restore_run(run, last, rank, world)
    elif not resume and last.exists() and main_rank:
        print(
            f"odesr train: {run_dir} has a checkpoint; starting over (use --resume to continue)",
            file=sys.stderr,
        )
    machine_segment(run, dev, world)
    if main_rank:
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    log = MetricsLog(run_dir / "metrics.jsonl", main_rank, run.step if resume else None)
    log = tensorboard_log.tee(  # + TensorBoard event files in run_dir when tensorboard is installed
        log,
        run_dir,
        main_rank,
        run.step if resume else None,
        model=model,
        val_images=val_images,
        cfg=cfg,
        device=dev,
    )

    step_module: nn.Module = TrainStep(model, cfg)
    if distributed:
        ids = [dev.index] if dev.type == "cuda" else None
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=ids)

    max_steps = int(cfg["max_steps"])
    bar = progress_bar(cfg, run.step, progress and main_rank)
    model.train()
    log_every, ckpt_every = int(cfg["log_every"]), int(cfg["checkpoint_every"])
    val_every = int(cfg["val"].get("every") or 0)
    t_mark, s_mark = time.perf_counter(), run.step
    loss_sum, loss_n, loss_value, grad_norm = 0.0, 0, float("nan"), float("nan")
    data_s = 0.0  # time spent waiting for batches since the last log record
    try:
        while run.step < max_steps:
            t_data = time.perf_counter()
            batch = source.next()
            if run.scale_weights is not None:
                batch["weight"] = weight_of(run.scale_weights, batch["scale"])
            data_s += time.perf_counter() - t_data
            loss_value, grad_norm = _train_step(run, step_module, batch, dev, world, last)
            step = run.step
            loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
            if bar is not None:
                bar.update(1)
                scale = _scale_text(batch["scale"])
                bar.set_postfix(loss=f"{loss_value:.4f}", t=scale, refresh=False)
            if step % log_every == 0 or step == max_steps:
                now = time.perf_counter()
                record = dict(
                    step=step,
                    loss=loss_sum / loss_n,
                    lr=opt.param_groups[0]["lr"],
                    steps_per_s=(step - s_mark) / max(now - t_mark, 1e-9),
                    data_share=data_s / max(now - t_mark, 1e-9),
                )
                if not torch.is_tensor(batch["scale"]):  # a mixed batch has no one scale
                    record["scale"] = batch["scale"]
                if math.isfinite(grad_norm):
                    record["grad_norm"] = grad_norm
                _log_metrics(log, bar, record)
                t_mark, s_mark, loss_sum, loss_n, data_s = now, step, 0.0, 0, 0.0
            if val_every and step % val_every == 0 and main_rank and val_images:
                v = validate(ema if ema is not None else model, val_images, cfg, dev)
                _log_metrics(
                    log, bar, dict(step=step, val_psnr=v, val_dataset=str(cfg["val"]["dataset"]))
                )
            if ckpt_every and step % ckpt_every == 0 and step < max_steps:
                save_run(run, last, world, rank)
    finally:
        if bar is not None:
            bar.close()
        if source is not sampler:
            source.close()
    save_run(run, last, world, rank)
    save_run(run, final, world, rank, final=True)
    result: dict[str, Any] = {"step": run.step, "loss": loss_value, "final": str(final)}
    if distributed:
        digests: list = [None] * world
        torch.distributed.all_gather_object(digests, _param_digest(model))
        result["ranks_agree"] = len(set(digests)) == 1
    log.write(done=True, **{k: v for k, v in result.items() if k != "final"})
    return result


# ----------------------------------------------------------------------------- CLI


add_arguments = train_arguments  # the argument definitions live in odesr.arguments


def _default_out(config: str) -> Path:
    composed = split_name(config)
    return Path("runs", *composed) if composed else Path("runs") / Path(config).stem


def run_config(args: argparse.Namespace) -> tuple[dict, Path]:
    """``(config, run directory)`` of parsed ``odesr train`` arguments: the config with
    ``--set``, ``--max-steps`` and ``--seed`` applied, and ``--out`` (default
    runs/PROFILE/MODEL)."""
    overrides = list(args.overrides or [])
    if args.max_steps is not None:
        overrides.append(f"max_steps={int(args.max_steps)}")
    if args.seed is not None:
        overrides.append(f"seed={int(args.seed)}")
    cfg = load_config(args.config, overrides)
    return cfg, Path(args.out) if args.out else _default_out(args.config)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``odesr train`` from parsed arguments; returns the exit status. ``--seeds S1,S2``
    trains those seeds together into ``OUT/seed<S>`` (:mod:`odesr.multiseed`)."""
    seeds = getattr(args, "seeds", None)
    try:
        if seeds and args.seed is not None:
            raise TrainError("--seed and --seeds do not go together")
        cfg, out = run_config(args)
        options: dict[str, Any] = dict(
            resume=args.resume,
            device=args.device,
            data_root=args.data_root,
            progress=not args.no_progress,
            data_workers=args.data_workers,
            tf32=args.tf32,
        )
        if seeds:
            from odesr import multiseed  # noqa: PLC0415 (it imports this module)

            seeds = multiseed.parse_seeds(seeds)
            dirs = multiseed.seed_dirs(out, seeds)
            results = multiseed.train_seeds(cfg, seeds, dirs, **options)
        else:
            results = [train(cfg, out, **options)]
    except NonFiniteLoss as exc:
        print(f"odesr train: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    except TrainError as exc:
        print(f"odesr train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if int(os.environ.get("RANK", "0")) == 0:
        for i, result in enumerate(results):
            which = f"seed {seeds[i]} " if seeds else ""
            msg = f"odesr train: {which}done at step {result['step']}, loss {result['loss']:.5f}"
            if "ranks_agree" in result:
                msg += f", ranks agree: {result['ranks_agree']}"
            print(msg + f" -> {result['final']}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m odesr.train CONFIG ...`` (same as ``odesr train``)."""
    parser = add_arguments(argparse.ArgumentParser(prog="odesr train", description=__doc__))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
