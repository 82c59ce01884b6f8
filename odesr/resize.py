"""MATLAB-exact bicubic resize on torch tensors.

Conventions (MATLAB ``imresize(x, ..., 'bicubic')``):

* cubic convolution kernel with a = -0.5 (Keys); ``F.interpolate`` uses a = -0.75 and is *not*
  equivalent;
* when shrinking with ``antialias=True`` the kernel is widened by 1/scale;
* output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``,
  where ``scale`` is the scale the caller gave (not the output/input size ratio, unless only a size
  was given);
* borders are handled by symmetric reflection of the input (current MATLAB ``contributions``,
  checked against MATLAB's own outputs in ``golden/``); ``border="replicate"`` clamps
  out-of-range taps instead, as older MATLAB releases did ("replicating end-points"). The
  Meta-SR benchmark LR files match ``replicate`` (max diff 1 grey level) and not ``symmetric``
  (up to 25 grey levels on the last row/column when the output overhangs the input);
* the dimension with the smaller scale is resized first (rows first on ties).

Values are not rounded or clipped: quantise the result yourself when emulating ``uint8`` MATLAB
output (see :func:`odesr.degrade.quantize`). Weights are computed once per
``(in, out, scale, antialias, border)`` in float64 and applied along each axis as a banded
product: blocks of output rows times the input span they reach (``_band_blocks``), so on the
CPU the zeros of the matrix are mostly skipped; off the CPU the blocks hold up to
``DEVICE_BLOCK_ROWS`` rows (a benchmark image's side in one product: a kernel launch per block
costs more than the zeros). Differentiable; any device and batch shape ``(..., H, W)``.
The result is laid out in memory as (H, batch..., W) (not contiguous unless the batch is one
plane): feeding it back into :func:`imresize` then needs no copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

__all__ = ["BORDERS", "imresize", "resize_matrix", "output_size"]


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    ) * ((absx > 1) & (absx <= 2))


BORDERS = ("symmetric", "replicate")


@lru_cache(maxsize=512)
def resize_weights(
    in_len: int, out_len: int, scale: float, antialias: bool, border: str = "symmetric"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero weights ``(rows, cols, values)`` of the (out_len, in_len) resize matrix.

    MATLAB ``contributions`` semantics, float64; sorted by row then column, taps that the border
    rule maps onto the same source pixel summed (in tap order), exact zeros dropped.
    """
    kernel_width = 4.0
    if scale < 1 and antialias:
        width = kernel_width / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        width = kernel_width
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based source indices
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    if border == "symmetric":  # aux = [1..n, n..1]
        aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
        src = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    elif border == "replicate":
        src = np.clip(idx.astype(np.int64) - 1, 0, in_len - 1)
    else:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    rows = np.repeat(np.arange(out_len), taps)
    cols, vals = src.ravel(), w.ravel()
    order = np.lexsort((cols, rows))  # stable: equal (row, col) keep their tap order
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    summed = np.zeros(int(first.sum()), dtype=np.float64)
    np.add.at(summed, np.cumsum(first) - 1, vals)
    rows, cols = rows[first], cols[first]
    keep = summed != 0
    out = (rows[keep], cols[keep], summed[keep])
    for a in out:
        a.setflags(write=False)
    return out


def _matrix_np(
    in_len: int, out_len: int, scale: float, antialias: bool, border: str = "symmetric"
) -> np.ndarray:
    """Dense (out_len, in_len) float64 weight matrix, MATLAB ``contributions`` semantics."""
    rows, cols, vals = resize_weights(in_len, out_len, scale, antialias, border)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    mat[rows, cols] = vals
    return mat


def output_size(in_len: int, scale: float) -> int:
    """MATLAB's output length for a scale: ``ceil(in_len * scale)``."""
    return int(math.ceil(in_len * scale))


_TORCH_CACHE: dict[tuple, object] = {}


def resize_matrix(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool = True,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    border: str = "symmetric",
) -> torch.Tensor:
    """The dense (out_len, in_len) matrix ``M`` such that ``M @ x`` resizes ``x`` along axis 0."""
    key = ("dense", in_len, out_len, float(scale), bool(antialias), dtype, str(device), border)
    mat = _TORCH_CACHE.get(key)
    if mat is None:
        mat = torch.from_numpy(_matrix_np(in_len, out_len, float(scale), bool(antialias), border))
        mat = _cache(key, mat.to(device=device, dtype=dtype))
    return mat


# Output rows per band block, as a multiple of the rows whose input span equals the kernel's:
# each block multiplies only the input span its rows reach (about (1 + BLOCK_SPAN) x the taps),
# a small dense GEMM; bigger blocks waste multiplies on zeros, smaller ones cost calls.
BLOCK_SPAN = 3.0


# Output rows per block off the CPU, where each block's GEMM is a kernel launch: a benchmark
# image's side in one or a few products; a huge image's blocks still skip most zeros.
DEVICE_BLOCK_ROWS = 1024


def _block_rows(in_len: int, out_len: int, taps: float, scale: float, device_type: str) -> int:
    """Output rows per block: all of them (one dense GEMM) for small resizes, up to
    :data:`DEVICE_BLOCK_ROWS` off the CPU, else the band blocks."""
    if in_len * out_len <= 96 * 96:
        return out_len
    if device_type != "cpu":
        return min(out_len, DEVICE_BLOCK_ROWS)
    return int(min(max(round(BLOCK_SPAN * taps * scale), 4), 128, out_len))


def _band_blocks(weights: tuple, dtype: torch.dtype, device) -> list[tuple[int, int, torch.Tensor]]:
    """The resize matrix of ``weights`` = ``(in_len, out_len, scale, antialias, border)`` cut
    into row blocks ``(first_in, last_in + 1, block)``.

    ``block`` holds consecutive rows of :func:`resize_matrix` restricted to the
    columns that are non-zero in them, so stacking ``block @ x[first_in:last_in + 1]`` over the
    blocks equals ``resize_matrix(...) @ x`` with only the band multiplied.
    """
    key = ("band", *weights, dtype, str(device))
    blocks = _TORCH_CACHE.get(key)
    if blocks is None:
        in_len, out_len, scale = weights[:3]
        rows, cols, vals = resize_weights(*weights)
        step = _block_rows(
            in_len, out_len, len(rows) / out_len, float(scale), torch.device(device).type
        )
        starts = np.searchsorted(rows, np.arange(0, out_len + step, step))
        blocks = []
        for o0, a, b in zip(range(0, out_len, step), starts[:-1], starts[1:], strict=False):
            i0, i1 = int(cols[a:b].min()), int(cols[a:b].max()) + 1
            block = np.zeros((min(step, out_len - o0), i1 - i0))
            block[rows[a:b] - o0, cols[a:b] - i0] = vals[a:b]
            blocks.append((i0, i1, torch.from_numpy(block).to(device=device, dtype=dtype)))
        blocks = _cache(key, blocks)
    return blocks


def _cache(key: tuple, value):
    if len(_TORCH_CACHE) > 2048:
        _TORCH_CACHE.clear()
    _TORCH_CACHE[key] = value
    return value


def _pair(value: float | Sequence[float] | None) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (value, value)
    if len(value) != 2:
        raise ValueError(f"expected one value or a (height, width) pair, got {value!r}")
    return tuple(value)


def imresize(
    x: torch.Tensor,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    antialias: bool = True,
    border: str = "symmetric",
) -> torch.Tensor:
    """Resize the last two dimensions of ``x`` like MATLAB ``imresize(x, ..., 'bicubic')``.

    Give ``scale`` (output ``ceil(in * scale)``; coordinates mapped by ``scale``), ``size``
    (coordinates mapped by ``size / in``), or both (coordinates by ``scale``, output ``size``: an
    exact crop or extension of the scale-only result). ``x`` is any floating tensor ``(..., H, W)``.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize needs a floating tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(
            f"imresize needs at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}"
        )
    in_h, in_w = x.shape[-2], x.shape[-1]
    scales = _pair(scale)
    sizes = _pair(size)
    if scales is None and sizes is None:
        raise ValueError("imresize needs a scale or a size")
    if scales is not None:
        for s in scales:
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"scale must be a positive finite number, got {s!r}")
    if sizes is None:
        sizes = (output_size(in_h, scales[0]), output_size(in_w, scales[1]))
    sizes = (int(sizes[0]), int(sizes[1]))
    if min(sizes) < 1:
        raise ValueError(f"output size must be at least 1x1, got {sizes}")
    if scales is None:
        scales = (sizes[0] / in_h, sizes[1] / in_w)

    flat = x.reshape(-1, in_h, in_w)
    steps = [(1, in_h, sizes[0], scales[0]), (2, in_w, sizes[1], scales[1])]
    if scales[1] < scales[0]:
        steps.reverse()
    for dim, in_len, out_len, s in steps:
        if out_len == in_len and s == 1:
            continue
        weights = (in_len, out_len, float(s), bool(antialias), border)
        blocks = _band_blocks(weights, x.dtype, x.device)
        flat = _banded_product(flat, dim, out_len, blocks)
    return flat.reshape(*x.shape[:-2], sizes[0], sizes[1])


def _banded_product(x: torch.Tensor, dim: int, out_len: int, blocks: list) -> torch.Tensor:
    """Resize ``x`` (N, H, W) along ``dim`` (1 or 2) block by block (see :func:`_band_blocks`).

    Without autograd each block is one GEMM written in place: along H on the (H, N * W) matrix
    (a view when the memory runs H, N, W, as this function's own results do), along W on the
    rows in memory order. The result keeps that memory order (it is not contiguous for N > 1).
    With autograd the blocks are concatenated instead (same products).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        if dim == 1:
            return torch.cat([torch.matmul(m, x[:, i0:i1]) for i0, i1, m in blocks], dim=1)
        return torch.cat([torch.matmul(x[..., i0:i1], m.T) for i0, i1, m in blocks], dim=2)
    start = 0
    if dim == 1:
        cols = x.movedim(1, 0).reshape(x.shape[1], -1)
        out = x.new_empty(out_len, cols.shape[1])
        for i0, i1, m in blocks:
            stop = start + m.shape[0]
            torch.mm(m, cols[i0:i1], out=out[start:stop])
            start = stop
        return out.view(out_len, x.shape[0], x.shape[2]).movedim(0, 1)
    swap = x.stride(1) > x.stride(0)  # leading dims in memory order
    lead = x.transpose(0, 1) if swap else x
    rows = lead.reshape(-1, x.shape[2])
    out = x.new_empty(rows.shape[0], out_len)
    for i0, i1, m in blocks:
        stop = start + m.shape[0]
        torch.mm(rows[:, i0:i1], m.T, out=out[:, start:stop])
        start = stop
    out = out.view(lead.shape[0], lead.shape[1], out_len)
    return out.transpose(0, 1) if swap else out
