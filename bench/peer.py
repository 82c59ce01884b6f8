"""The peer pipeline that bicubic evaluation speed is compared with (benchmarks only).

What a typical super-resolution toolbox does per (image, scale) pair, written here so the
comparison runs without extra dependencies: a MATLAB-port ``imresize`` in the style of BasicSR's
``matlab_functions.imresize`` (weights and indices recomputed on every call, the image padded by
symmetric copies, then one matrix-vector product per output row / column and channel, float32),
followed by scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity`` (Gaussian
window, sigma 1.5, population covariance, data range 255) on the MATLAB luma of the 8-bit SR.
The protocol is odesr's ``metasr`` (crop, LR size, SR size, shave ``ceil(scale)``) with
symmetric LR borders, so its PSNR agrees with odesr's to about 0.01 dB.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from odesr.degrade import protocol_case
from odesr.metrics import shave_for

__all__ = ["peer_imresize", "peer_pair"]


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1).to(x.dtype)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)).to(x.dtype)
    return near + far


def _taps(in_len: int, out_len: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per output pixel: weights (out, p) and first padded input index; the padding length."""
    width = 4.0 / scale if scale < 1 else 4.0
    u = torch.arange(1, out_len + 1, dtype=torch.float32) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    p = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(p, dtype=torch.float32)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    pad = int(-idx.min().item()) + 1
    return w, (idx[:, 0] + pad - 1).to(torch.int64), pad


def _symmetric_pad(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    parts = [x.narrow(dim, 0, before).flip(dim)] if before > 0 else []
    parts.append(x)
    if after > 0:
        parts.append(x.narrow(dim, x.shape[dim] - after, after).flip(dim))
    return torch.cat(parts, dim=dim)


def peer_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] -> (ceil(H * scale), ceil(W * scale), C): a loop per line."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    c, in_h, in_w = x.shape
    out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    wh, start_h, pad_h = _taps(in_h, out_h, scale)
    ww, start_w, pad_w = _taps(in_w, out_w, scale)
    xh = _symmetric_pad(x, 1, pad_h, pad_h + wh.shape[1])
    rows = torch.empty(c, out_h, in_w)
    for i in range(out_h):
        s = int(start_h[i])
        for j in range(c):
            rows[j, i, :] = xh[j, s : s + wh.shape[1], :].t().mv(wh[i])
    xw = _symmetric_pad(rows, 2, pad_w, pad_w + ww.shape[1])
    out = torch.empty(c, out_h, out_w)
    for i in range(out_w):
        s = int(start_w[i])
        for j in range(c):
            out[j, :, i] = xw[j, :, s : s + ww.shape[1]].mv(ww[i])
    return out.numpy().transpose(1, 2, 0)


def _luma(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y of an 8-bit image (H, W, 3), rounded to 8 bits, float64."""
    y = np.dot(img.astype(np.float64) / 255.0, [65.481, 128.553, 24.966]) + 16.0
    return np.floor(y + 0.5)


def peer_pair(hr_u8: np.ndarray, scale: float) -> tuple[float, float]:
    """(PSNR, SSIM) of bicubic at ``scale`` for an 8-bit HR image (H, W, 3), peer style."""
    case = protocol_case(hr_u8.shape[0], hr_u8.shape[1], scale, "metasr")
    crop = hr_u8[: case.hr_crop[0], : case.hr_crop[1]].astype(np.float32) / 255.0
    lr = np.clip(np.round(peer_imresize(crop, 1.0 / scale) * 255.0), 0, 255) / 255.0
    sr = peer_imresize(lr.astype(np.float32), scale)
    sh, sw = min(case.sr_size[0], sr.shape[0]), min(case.sr_size[1], sr.shape[1])
    sr = np.clip(np.round(sr[:sh, :sw] * 255.0), 0, 255).astype(np.uint8)
    b = shave_for(scale)
    y_sr = _luma(sr)[b:-b, b:-b]
    y_hr = _luma(hr_u8[:sh, :sw])[b:-b, b:-b]
    p = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
    s = structural_similarity(
        y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    return float(p), float(s)
