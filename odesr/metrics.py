"""PSNR and SSIM with the conventions of the super-resolution literature.

Inputs are float tensors in [0, 1], shaped (C, H, W) or (B, C, H, W), C = 3 (RGB) or 1.

* SR is quantised to 8 bits first (``quantize_sr=True``), as the published tables do by writing
  PNGs; HR is assumed to be 8-bit already.
* ``test_y_channel=True`` scores the BT.601 luma of MATLAB ``rgb2ycbcr``
  (Y = 16 + (65.481 R + 128.553 G + 24.966 B), R, G, B in [0, 1], Y in [16, 235]).
  ``y_rounding="matlab"`` rounds Y to 8 bits as MATLAB does for uint8 images; ``"float"`` keeps it
  (EDSR / Meta-SR style pipelines; reads ~0.01-0.03 dB higher). A single-channel image is scored on
  its own channel, never converted.
* ``crop_border`` pixels are shaved from every side before scoring (the literature uses
  ``ceil(scale)``; see :func:`shave_for`).
* PSNR uses peak 255 on the 8-bit scale; identical images give ``inf``.
* SSIM follows Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid'
  filtering, mean over the map, computed on the [0, 255] scale; equal to
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["rgb_to_y", "shave_for", "psnr", "ssim", "score"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_ROUNDINGS = ("matlab", "float")


def shave_for(scale: float) -> int:
    """Border shave used by the literature for a scale: ``ceil(scale)``."""
    return int(math.ceil(scale - 1e-9))


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return x[None]
    if x.dim() != 4:
        raise ValueError(f"expected (C,H,W) or (B,C,H,W), got shape {tuple(x.shape)}")
    return x


def rgb_to_y(x: torch.Tensor, rounding: str = "matlab") -> torch.Tensor:
    """BT.601 luma on the [0, 255] scale from RGB in [0, 1]; (B,3,H,W) -> (B,1,H,W)."""
    if rounding not in Y_ROUNDINGS:
        raise ValueError(f"y_rounding must be one of {Y_ROUNDINGS}, got {rounding!r}")
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = r * _Y_WEIGHTS[0]
    y.add_(g, alpha=_Y_WEIGHTS[1]).add_(b, alpha=_Y_WEIGHTS[2]).add_(16.0)
    if rounding == "matlab":
        y.add_(0.5).floor_()
    return y


def _prepare(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int,
    test_y_channel: bool,
    y_rounding: str,
    quantize_sr: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images on the [0, 255] scale, float64, channel(s) selected, border shaved."""
    sr, hr = _batch(sr), _batch(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
    if crop_border > 0:  # shave first: every later step is per pixel
        sr = sr[..., crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[..., crop_border:-crop_border, crop_border:-crop_border]
    if sr.shape[-1] < 1 or sr.shape[-2] < 1:
        raise ValueError(f"image too small for a border shave of {crop_border}")
    sr = sr.to(torch.float64)
    hr = hr.to(torch.float64)
    if quantize_sr:
        sr = (sr.clamp(0, 1) * 255.0).add_(0.5).floor_().div_(255.0)
    if test_y_channel and sr.shape[1] == 3:
        return rgb_to_y(sr, y_rounding), rgb_to_y(hr, y_rounding)
    return sr * 255.0, hr * 255.0


def psnr(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    test_y_channel: bool = True,
    y_rounding: str = "matlab",
    quantize_sr: bool = True,
) -> torch.Tensor:
    """PSNR in dB per image (shape (B,)); inf where the images are identical."""
    return _psnr_255(*_prepare(sr, hr, crop_border, test_y_channel, y_rounding, quantize_sr))


def _psnr_255(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    mse = ((sr - hr) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps."""
    # skimage builds the window by filtering a delta with scipy's gaussian, truncate=3.5:
    # for sigma=1.5 and size 11 that is the normalised sampled Gaussian on [-5, 5].
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    test_y_channel: bool = True,
    y_rounding: str = "matlab",
    quantize_sr: bool = True,
) -> torch.Tensor:
    """SSIM per image (shape (B,)), averaged over channels when scoring RGB."""
    return _ssim_255(*_prepare(sr, hr, crop_border, test_y_channel, y_rounding, quantize_sr))


def _ssim_255(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    size, sigma = 11, 1.5
    if min(sr.shape[-2:]) < size:
        raise ValueError(f"SSIM needs at least {size}x{size} pixels, got {tuple(sr.shape[-2:])}")
    g = _gaussian_window(size, sigma, torch.float64, "cpu").tolist()

    def filt(x: torch.Tensor) -> torch.Tensor:
        # separable 'valid' filtering as shifted multiply-adds: exact in float64 and several
        # times faster than float64 conv2d on the CPU.
        h, w = x.shape[-2] - size + 1, x.shape[-1] - size + 1
        rows = x[..., 0:h, :] * g[0]
        for k in range(1, size):
            rows.add_(x[..., k : k + h, :], alpha=g[k])
        out = rows[..., 0:w] * g[0]
        for k in range(1, size):
            out.add_(rows[..., k : k + w], alpha=g[k])
        return out

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = filt(sr), filt(hr)
    sxx = filt(sr * sr) - mu_x**2
    syy = filt(hr * hr) - mu_y**2
    sxy = filt(sr * hr) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=(1, 2, 3))


def score(
    sr: torch.Tensor,
    hr: torch.Tensor,
    scale: float,
    test_y_channel: bool = True,
    y_rounding: str = "matlab",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(PSNR, SSIM) per image with the literature's protocol for ``scale`` (shave ceil(scale)).

    Quantises and converts once for both metrics."""
    a, b = _prepare(sr, hr, shave_for(scale), test_y_channel, y_rounding, True)
    return _psnr_255(a, b), _ssim_255(a, b)
