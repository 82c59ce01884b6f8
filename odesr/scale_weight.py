"""Scale-balanced training losses: a weight per training scale, mean 1 over the scale set.

A loss that mixes scales weights them whether one chooses to or not. For the ODE models' endpoint
objective one RK4 step from t0 multiplies f by the span (t0 - 1), so the gradient reaching f at
x1.1 is about 0.1 / 3.0 of the one at x4; the +t nets' L1 is dominated by the large-scale
residuals. ``scale_weight`` (a training-config key) multiplies each sample's L1 by ``w(t0)``:

* ``none``: 1 everywhere (the paper's loss; the default, so earlier checkpoints keep their key).
* ``inv_span``: proportional to 1 / (t0 - 1): undoes the endpoint objective's span factor.
* ``inv_sqrt_span``: proportional to 1 / sqrt(t0 - 1): half of that correction (log scale).
* ``inv_residual``: proportional to 1 / mean |I(t0) - HR| (the bicubic residual of training
  patches at t0, :func:`odesr.objectives.bicubic_residuals`): every scale's error counts relative to
  the error bicubic leaves there.

Weights are normalised so their mean over the configured scales is 1 (scales are drawn uniformly
from that list), so the learning rate keeps its meaning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = ["SCALE_WEIGHTS", "scale_weights", "weight_of", "weighted_l1"]

SCALE_WEIGHTS = ("none", "inv_span", "inv_sqrt_span", "inv_residual")


def scale_weights(
    kind: str, scales: Sequence[float], residuals: Mapping[float, float] | None = None
) -> dict[float, float]:
    """``{scale: weight}`` for ``kind`` (module docstring), mean 1 over ``scales``.

    ``residuals`` (mean bicubic L1 per scale) is needed for ``inv_residual`` only. Raises
    ValueError for an unknown kind, a scale of 1 or less with a span weight, or a missing or
    non-positive residual.
    """
    if kind not in SCALE_WEIGHTS:
        raise ValueError(f"scale_weight must be one of {list(SCALE_WEIGHTS)}, got {kind!r}")
    keys = [round(float(s), 6) for s in scales]
    if not keys:
        raise ValueError("scale_weight: no scales")
    if kind == "none":
        return {s: 1.0 for s in keys}
    if kind in ("inv_span", "inv_sqrt_span"):
        if any(s <= 1.0 for s in keys):
            raise ValueError(f"scale_weight {kind} needs every scale > 1, got {min(keys)}")
        power = 1.0 if kind == "inv_span" else 0.5
        raw = {s: (s - 1.0) ** -power for s in keys}
    else:
        if residuals is None:
            raise ValueError("scale_weight inv_residual needs the bicubic residual per scale")
        table = {round(float(s), 6): float(r) for s, r in residuals.items()}
        missing = [s for s in keys if s not in table]
        if missing:
            raise ValueError(f"scale_weight inv_residual: no residual for scales {missing}")
        bad = [s for s in keys if not (math.isfinite(table[s]) and table[s] > 0)]
        if bad:
            raise ValueError(f"scale_weight inv_residual: residual not > 0 at scales {bad}")
        raw = {s: 1.0 / table[s] for s in keys}
    mean = sum(raw[s] for s in keys) / len(keys)
    return {s: raw[s] / mean for s in keys}


def weight_of(weights: Mapping[float, float], scale: float | torch.Tensor) -> float | torch.Tensor:
    """The weight of one scale (a float) or of each sample's scale (a (B,) tensor)."""
    if torch.is_tensor(scale):
        values = [weights[round(float(s), 6)] for s in scale.reshape(-1).tolist()]
        return torch.tensor(values, dtype=torch.float64)
    return float(weights[round(float(scale), 6)])


def weighted_l1(
    pred: torch.Tensor, target: torch.Tensor, weight: float | torch.Tensor | None
) -> torch.Tensor:
    """Mean over samples of ``weight[b] * mean |pred[b] - target[b]|``; plain L1 for None.

    With equal-sized samples and weight 1 this equals ``F.l1_loss(pred, target)``.
    """
    if weight is None:
        return F.l1_loss(pred, target)
    per_sample = (pred - target).abs().flatten(1).mean(dim=1)
    if torch.is_tensor(weight):
        weight = weight.to(per_sample.device, per_sample.dtype)
    return (per_sample * weight).mean()
