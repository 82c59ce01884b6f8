"""Geometric self-ensemble ("x8", the ``+`` of RDN+): super-resolve the 8 flips/rotations of the
LR image, undo each transform on its output and average (Lim et al. 2017; Zhang et al. 2018).

The 8 transforms are the dihedral group D4: ``rot90^k`` (k = 0..3), each with and without a
left-right flip. Rotations by 90/270 degrees swap H and W, so the requested output size is
swapped for them. ``nfe`` of the result is the sum over the 8 passes.

Alignment: the SR grid is anchored at the LR image's top-left corner (coordinates mapped by the
scale), so a flipped image's grid matches the original's only when ``side * scale`` is an
integer. The LR image is therefore first extended (symmetric reflection, at most a few pixels on
the bottom/right) to sides whose product with the scale is an integer; every transform then
super-resolves the whole extended image, the inverse transform lines the grids up exactly, and the
requested top-left ``size`` is cropped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from odesr.models import SRResult, default_size

__all__ = [
    "TRANSFORMS",
    "forward_transform",
    "inverse_transform",
    "aligned_extension",
    "SelfEnsemble",
]

# (quarter turns, flip left-right after turning)
TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def forward_transform(x: torch.Tensor, rot: int, flip: bool) -> torch.Tensor:
    """Rotate the last two dims by ``rot`` quarter turns, then flip left-right if ``flip``."""
    y = torch.rot90(x, rot, dims=(-2, -1)) if rot % 4 else x
    return y.flip(-1) if flip else y


def inverse_transform(y: torch.Tensor, rot: int, flip: bool) -> torch.Tensor:
    """Undo :func:`forward_transform` (flip back, then turn back)."""
    x = y.flip(-1) if flip else y
    return torch.rot90(x, -rot, dims=(-2, -1)) if rot % 4 else x


def aligned_extension(side: int, scale: float, max_extra: int = 64) -> int:
    """Smallest ``p >= 0`` with ``(side + p) * scale`` an integer (within 1e-6)."""
    for extra in range(max_extra + 1):
        value = (side + extra) * scale
        if abs(value - round(value)) < 1e-6:
            return extra
    raise ValueError(f"scale {scale} has no grid alignment within {max_extra} pixels")


def _extend(x: torch.Tensor, extra_h: int, extra_w: int) -> torch.Tensor:
    """Symmetric (edge-including) extension on the bottom and right, as MATLAB's borders."""
    if extra_w:
        x = torch.cat([x, x.flip(-1)[..., :extra_w]], dim=-1)
    if extra_h:
        x = torch.cat([x, x.flip(-2)[..., :extra_h, :]], dim=-2)
    return x


class SelfEnsemble(nn.Module):
    """Wrap an SR model: ``super_resolve`` averages its outputs over the 8 D4 transforms.

    ``spec`` is ``{"name": "x8", "base": base.spec}`` (not a registry name: rebuild by loading
    the base checkpoint and wrapping it). It declares the base's ``input_kind``, ``is_ode`` and
    ``supported_scales``; everything else of the base is reachable through ``self.base``.
    """

    def __init__(self, base: nn.Module, transforms=TRANSFORMS) -> None:
        super().__init__()
        self.base = base
        self.transforms = tuple(transforms)
        self.spec = {"name": "x8", "base": getattr(base, "spec", {})}
        self.input_kind = getattr(base, "input_kind", "upscaled")
        self.is_ode = bool(getattr(base, "is_ode", False))
        self.supported_scales = getattr(base, "supported_scales", None)

    def solver_settings(self, solver=None):
        """The base model's solver settings (None for non-ODE bases)."""
        return self.base.solver_settings(solver) if self.is_ode else None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:  # pragma: no cover - unused
        raise NotImplementedError("SelfEnsemble is for inference: use super_resolve")

    @torch.no_grad()
    def super_resolve(
        self, lr: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> SRResult:
        size = tuple(size) if size is not None else default_size(lr, scale)
        h, w = lr.shape[-2:]
        ext_h, ext_w = aligned_extension(h, scale), aligned_extension(w, scale)
        big = _extend(lr, ext_h, ext_w)
        full = (round((h + ext_h) * scale), round((w + ext_w) * scale))
        acc: torch.Tensor | None = None
        nfe = 0
        for rot, flip in self.transforms:
            t_size = (full[1], full[0]) if rot % 2 else full
            res = self.base.super_resolve(forward_transform(big, rot, flip), scale, t_size, **opts)
            out = inverse_transform(res.image, rot, flip)
            acc = out.clone() if acc is None else acc.add_(out)
            nfe += int(res.nfe)
        assert acc is not None
        return SRResult(acc[..., : size[0], : size[1]] / len(self.transforms), nfe)
