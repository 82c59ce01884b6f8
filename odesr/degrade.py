"""Degradations: the path point I(t), 8-bit quantisation and the evaluation protocols.

Value range everywhere: float tensors in [0, 1], shaped (..., C, H, W). "Quantise" means what
MATLAB does when it writes a uint8 image: ``round(clip(x * 255, 0, 255)) / 255`` (round half away
from zero; values are non-negative after clipping so ``floor(v + 0.5)`` is exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from odesr.resize import imresize

__all__ = [
    "quantize",
    "path_pad",
    "path_point",
    "upscale",
    "EvalCase",
    "PROTOCOLS",
    "DEFAULT_PROTOCOL",
    "protocol_case",
    "make_case",
]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] image to the 8-bit grid (MATLAB uint8 conversion), keeping it float."""
    return torch.floor(x.clamp(0, 1) * 255.0 + 0.5) / 255.0


def path_pad(scale: float) -> int:
    """Margin that makes I(t) of a region independent of what lies beyond it: the widened
    shrink kernel reaches 2 * scale pixels, the enlarge kernel 2 LR pixels."""
    return int(math.ceil(4 * scale)) + 2


def path_point(
    hr: torch.Tensor, t: float, pad: int | None = None, quantize_lr: bool = False
) -> torch.Tensor:
    """I(t): ``hr`` shrunk by 1/t and enlarged back by t (paper section 3.1), same size as ``hr``.

    The border is padded (symmetric reflection, ``pad`` pixels, default enough for the kernels)
    before resizing and the result centre-cropped back, so every pixel of I(t) sees image-like
    surroundings. Coordinates are mapped by the scale, so I(t) is defined for any real t >= 1 and
    pixel (i, j) of I(t) only depends on the content around (i, j). ``I(1) == hr``.
    ``quantize_lr`` rounds the shrunk image to 8 bits, as a stored LR image would be.
    """
    if not (math.isfinite(t) and t >= 1):
        raise ValueError(f"path point needs a finite t >= 1, got {t!r}")
    if t == 1:
        return hr
    pad = path_pad(t) if pad is None else pad
    h, w = hr.shape[-2:]
    x = hr
    if pad > 0:
        flat = x.reshape(-1, *x.shape[-3:]) if x.dim() >= 3 else x[None, None]
        if pad >= min(h, w):
            flat = F.pad(flat, (pad, pad, pad, pad), mode="replicate")
        else:
            flat = F.pad(flat, (pad, pad, pad, pad), mode="reflect")
        x = flat.reshape(*hr.shape[:-2], h + 2 * pad, w + 2 * pad)
    lr = imresize(x, scale=1.0 / t)
    if quantize_lr:
        lr = quantize(lr)
    up = imresize(lr, scale=t, size=(h + 2 * pad, w + 2 * pad))
    return up[..., pad : pad + h, pad : pad + w]


def upscale(lr: torch.Tensor, scale: float, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic enlargement of ``lr`` by ``scale`` to exactly ``size`` (coordinates mapped by scale).

    This is I(t0), the ODE's initial value and the bicubic baseline before quantisation.
    """
    return imresize(lr, scale=scale, size=size)


@dataclass(frozen=True)
class EvalCase:
    """Sizes fixed by an evaluation protocol for one image and one scale.

    ``hr_crop``: (H, W) of the HR region the LR is made from (top-left crop).
    ``lr_size``: (h, w) of the LR image. ``sr_size``: (H', W') at which SR and HR are compared
    (HR is cropped top-left to it). ``lr_border``: the resize border mode used to make the LR.
    """

    scale: float
    hr_crop: tuple[int, int]
    lr_size: tuple[int, int]
    sr_size: tuple[int, int]
    lr_border: str = "symmetric"


def _divisible(n: int, scale: float) -> bool:
    q = n / scale
    return abs(q - round(q)) < 1e-6


def _metasr_side(n: int, scale: float) -> tuple[int, int, int]:
    crop = n if _divisible(n, scale) else n - 4
    lr = int(math.ceil(crop / scale - 1e-9))
    sr = int(math.floor(lr * scale + 1e-9))
    return crop, lr, sr


def _modcrop_side(n: int, scale: float) -> tuple[int, int, int]:
    if abs(scale - round(scale)) > 1e-9:
        raise ValueError(f"protocol 'modcrop' needs an integer scale, got {scale}")
    s = int(round(scale))
    crop = n - n % s
    return crop, crop // s, crop


def _metasr_floor_side(n: int, scale: float) -> tuple[int, int, int]:
    # variant: no 4-pixel drop, LR = floor(n / scale), SR = floor(lr * scale)
    lr = int(math.floor(n / scale + 1e-9))
    return n, lr, int(math.floor(lr * scale + 1e-9))


# name -> (per-side crop/LR/SR rule, border mode of the LR resize). The Meta-SR benchmark LR
# files agree with replicate borders (max diff 1 grey level, see README); PSNR/SSIM do not depend
# on it (the affected last row/column is shaved).
PROTOCOLS = {
    "metasr": (_metasr_side, "replicate"),
    "modcrop": (_modcrop_side, "symmetric"),
    "floor": (_metasr_floor_side, "symmetric"),
}
DEFAULT_PROTOCOL = "metasr"


def protocol_case(
    height: int, width: int, scale: float, protocol: str = DEFAULT_PROTOCOL
) -> EvalCase:
    """The crop and sizes that ``protocol`` prescribes for an HR image of ``height x width``."""
    try:
        side, border = PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(
            f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}"
        ) from None
    if not (math.isfinite(scale) and scale >= 1):
        raise ValueError(f"scale must be a finite number >= 1, got {scale!r}")
    ch, lh, sh = side(height, scale)
    cw, lw, sw = side(width, scale)
    if min(lh, lw) < 2:
        raise ValueError(
            f"image of {height}x{width} is too small for scale {scale} (LR would be {lh}x{lw})"
        )
    return EvalCase(scale, (ch, cw), (lh, lw), (sh, sw), border)


def make_case(
    hr: torch.Tensor, scale: float, protocol: str = DEFAULT_PROTOCOL
) -> tuple[torch.Tensor, torch.Tensor, EvalCase]:
    """Apply ``protocol`` to an HR image (..., C, H, W) in [0, 1].

    Returns ``(hr_ref, lr, case)``: the HR crop that SR is compared with (size ``case.sr_size``)
    and the 8-bit-quantised LR image ``imresize(hr_crop, 1/scale)`` of size ``case.lr_size``.
    """
    case = protocol_case(hr.shape[-2], hr.shape[-1], scale, protocol)
    ch, cw = case.hr_crop
    crop = hr[..., :ch, :cw]
    lr = quantize(imresize(crop, scale=1.0 / scale, size=case.lr_size, border=case.lr_border))
    sh, sw = case.sr_size
    return hr[..., :sh, :sw], lr, case
