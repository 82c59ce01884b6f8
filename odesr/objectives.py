"""What training minimises: the model a config builds (:func:`build_model`), the forward pass of
each objective (:class:`TrainStep`: ``endpoint`` through the solver, ``hr`` / ``path`` one pass
per sample), per-sample solves of mixed-scale batches and the (scale-weighted) L1 loss.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from odesr import models
from odesr.batches import path_patch
from odesr.ode import grid_options
from odesr.scale_weight import scale_weights, weighted_l1
from odesr.solvers import is_fixed
from odesr.train_config import SIMULATION_FREE, TrainError

__all__ = [
    "TrainStep",
    "build_model",
    "mixed_scales_ok",
    "solve_per_sample",
    "compute_loss",
    "bicubic_residuals",
    "loss_weights",
]


def _model_spec(cfg: dict) -> dict:
    """The config's model spec; an ODE model trained on the endpoint objective also records the
    solver it is trained with (``train_solver``), so its checkpoint carries it."""
    spec = copy.deepcopy(cfg["model"])
    if models.is_ode(spec["name"]) and cfg["objective"] == "endpoint":
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
        models.set_grid_origin(model, batch.get("origin"))
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
    solver = grid_options(cfg["train_solver"] or {})
    return solver.get("steps") is not None and is_fixed(solver.get("method", "rk4"))


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


def build_model(cfg: dict, dev: torch.device) -> tuple[nn.Module, str, str]:
    """``(model, input_kind, objective)`` for ``cfg`` (the objective is endpoint for non-ODEs)."""
    model = models.build(_model_spec(cfg)).to(dev)
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
