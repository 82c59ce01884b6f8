"""Optional native kernels (``odesr/_native.c``, built by ``pip install -e .`` when a C compiler
exists) for the bicubic evaluation pair; the torch path stays the reference and the fallback.

* :func:`available`: the compiled library loaded and not switched off. ``ODESR_NATIVE=0`` forces
  the torch path (read on each call).
* :func:`resize`: MATLAB bicubic resize of one float32 plane (float32 accumulation), matching
  :func:`odesr.resize.imresize` in float64 to about 1e-6.
* :func:`bicubic_pair`: one (image, scale) bicubic evaluation pair (degrade by the protocol,
  enlarge, quantise, luma, PSNR and SSIM), in one call, float32 like the torch fast path. On B100
  x 30 scales (3,000 pairs) it is as close to the float64 reference as the torch float32 path:
  max |dPSNR| 4.9e-4 dB, |dSSIM| 4.8e-6 (torch float32: 4.9e-4, 5.1e-6), 25 pairs beyond 1e-4 dB
  (torch float32: 15), mean dPSNR 2e-6. The differences are SR pixels on a quantisation boundary
  (x * 255 + 0.5 an integer up to rounding), which every implementation rounds its own way.

The library is plain C loaded with ctypes; weights come from :func:`odesr.resize.resize_weights`
(MATLAB-exact), cast to float32 as the torch float32 path does.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
from functools import lru_cache

import numpy as np
import torch

from odesr.degrade import protocol_case
from odesr.metrics import SSIM_SIGMA, SSIM_WINDOW, gaussian_window, scored_plane, shave_for
from odesr.resize import output_size, resize_weights

__all__ = ["ENV", "available", "load_error", "resize", "bicubic_pair"]

ENV = "ODESR_NATIVE"  # "0": use the torch path even when the library is built


class _Taps(ctypes.Structure):
    _fields_ = [
        ("in_len", ctypes.c_int32),
        ("out_len", ctypes.c_int32),
        ("ptr", ctypes.c_void_p),
        ("col", ctypes.c_void_p),
        ("val", ctypes.c_void_p),
    ]


class _Reference(ctypes.Structure):
    _fields_ = [
        ("plane", ctypes.c_void_p),
        ("mean", ctypes.c_void_p),
        ("twice_mean", ctypes.c_void_p),
        ("lum_den", ctypes.c_void_p),
        ("var_c2", ctypes.c_void_p),
        ("plane_stride", ctypes.c_int64),
        ("stats_stride", ctypes.c_int64),
    ]


_LIB: ctypes.CDLL | None = None
_ERROR: str | None = None


def _load() -> ctypes.CDLL | None:
    global _LIB, _ERROR
    if _LIB is not None or _ERROR is not None:
        return _LIB
    try:
        spec = importlib.util.find_spec("odesr._native")
        if spec is None or not spec.origin:
            raise ImportError("odesr._native is not built (pip install -e . needs a C compiler)")
        lib = ctypes.CDLL(spec.origin)
        p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        lib.odesr_resize_plane.argtypes = [p, i64, p, p, p]
        lib.odesr_resize_plane.restype = i32
        lib.odesr_bicubic_pair.argtypes = [p, i64, i64, p, p, p, p, i32, p, p, p, p, p, p]
        lib.odesr_bicubic_pair.restype = i32
        lib.odesr_hr_stats.argtypes = [p, i64, i64, p, p, p, p, p]
        lib.odesr_hr_stats.restype = i32
        _LIB = lib
    except (ImportError, OSError, AttributeError) as exc:
        _ERROR = f"{type(exc).__name__}: {exc}"
    return _LIB


def load_error() -> str | None:
    """Why the library could not be loaded (None when it loaded or was not tried yet)."""
    _load()
    return _ERROR


def available() -> bool:
    """The native kernels can be used: built, loaded and not switched off by ``ODESR_NATIVE=0``."""
    if os.environ.get(ENV, "").strip() == "0":
        return False
    return _load() is not None


@lru_cache(maxsize=1024)
def _taps(in_len: int, out_len: int, scale: float, antialias: bool, border: str) -> tuple:
    """CSR taps of one resize axis: (ctypes struct, the arrays it points into)."""
    rows, cols, vals = resize_weights(in_len, out_len, scale, antialias, border)
    ptr = np.searchsorted(rows, np.arange(out_len + 1)).astype(np.int32)
    col = np.ascontiguousarray(cols, dtype=np.int32)
    val = np.ascontiguousarray(vals, dtype=np.float32)
    t = _Taps(in_len, out_len, ptr.ctypes.data, col.ctypes.data, val.ctypes.data)
    # the struct holds raw pointers: it keeps its arrays alive itself, so that a caller holding
    # only the struct survives the entry's eviction from this cache (another thread's inserts)
    t._arrays = (ptr, col, val)
    return t, t._arrays


@lru_cache(maxsize=1)
def _gauss() -> np.ndarray:
    return gaussian_window(SSIM_WINDOW, SSIM_SIGMA, torch.float64, "cpu").numpy().astype(np.float32)


def _lib() -> ctypes.CDLL:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"odesr native kernels unavailable: {_ERROR}")
    return lib


def resize(
    plane: np.ndarray,
    scale: float,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    border: str = "symmetric",
) -> np.ndarray:
    """:func:`odesr.resize.imresize` of one 2-D plane (float32 result, float32 arithmetic), with
    the same scale/size conventions (one scale for both axes)."""
    x = np.ascontiguousarray(plane, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D plane, got shape {x.shape}")
    h, w = x.shape
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    oh, ow = size if size is not None else (output_size(h, scale), output_size(w, scale))
    oh, ow = int(oh), int(ow)
    if oh < 0 or ow < 0:
        raise ValueError(f"output size must not be negative, got {(oh, ow)}")
    if oh == 0 or ow == 0:
        return np.empty((oh, ow), dtype=np.float32)
    if h == 0 or w == 0:  # no source pixel for the taps to read
        raise ValueError(f"cannot resize an empty plane of shape {x.shape} to {(oh, ow)}")
    tv = _taps(h, oh, float(scale), bool(antialias), border)[0]
    th = _taps(w, ow, float(scale), bool(antialias), border)[0]
    out = np.empty((oh, ow), dtype=np.float32)
    rc = _lib().odesr_resize_plane(
        x.ctypes.data, w, ctypes.byref(tv), ctypes.byref(th), out.ctypes.data
    )
    if rc == -3:
        raise ValueError("odesr native resize: taps do not fit the plane")
    if rc != 0:
        raise MemoryError("odesr native resize: out of memory")
    return out


# the HR side of the last image scored (the evaluation goes image by image):
# (hr, its version counter, (plane, stats)), replaced as a whole and read once (thread-safe)
_HR: tuple | None = None


def _hr_side(hr: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The centred MATLAB-rounded luma plane (H, W) of ``hr`` (as
    :func:`odesr.metrics.prepare_reference` makes it in float32) and its SSIM statistics
    (4, H - 10, W - 10): mean, twice_mean, lum_den, var_c2, computed by the library with the SR
    side's arithmetic, so that the float32 rounding of the two sides cancels as in the torch
    path."""
    global _HR
    cached = _HR
    if cached is not None and cached[0] is hr and cached[1] == hr._version:
        return cached[2]
    plane = scored_plane(hr[None].float(), True, "matlab")[0, 0].numpy()
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    H, W = plane.shape
    stats = np.empty((4, H - SSIM_WINDOW + 1, W - SSIM_WINDOW + 1), dtype=np.float32)
    ptrs = [stats[i].ctypes.data for i in range(4)]
    if _lib().odesr_hr_stats(plane.ctypes.data, H, W, _gauss().ctypes.data, *ptrs) != 0:
        raise MemoryError("odesr native HR statistics: out of memory")
    _HR = (hr, hr._version, (plane, stats))
    return plane, stats


def bicubic_pair(
    hr: torch.Tensor,
    scale: float,
    protocol: str,
    sr_out: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``(psnr, ssim, seconds)`` of bicubic at ``scale`` on the RGB image ``hr`` (3, H, W)
    float32 under ``protocol``, scored on MATLAB-rounded luma (shave ceil(scale)) as
    :func:`odesr.metrics.score` does. ``seconds``: the time of the enlargement alone, as the
    torch path reports. ``sr_out`` (uint8, (3, H' - 2 s, W' - 2 s) for shave s), when given,
    receives the shaved 8-bit SR image (for tests)."""
    if hr.dim() != 3 or hr.shape[0] != 3 or hr.dtype != torch.float32:
        raise ValueError(f"expected a float32 RGB image (3, H, W), got {tuple(hr.shape)}")
    if hr.device.type != "cpu":
        raise ValueError(f"the native kernels read CPU memory, got a tensor on {hr.device}")
    H, W = hr.shape[-2:]
    case = protocol_case(H, W, scale, protocol)
    (ch, cw), (lh, lw), (sh, sw) = case.hr_crop, case.lr_size, case.sr_size
    if sh > H or sw > W:  # metasr above x5 can round the SR past the frame: odesr.metrics.score
        raise ValueError(  # refuses it, so the native path must too
            f"SR {sh}x{sw} of protocol {protocol!r} at scale {scale} does not fit the {H}x{W} image"
        )
    down, up = float(1.0 / scale), float(scale)
    dv = _taps(ch, lh, down, True, case.lr_border)[0]
    dh = _taps(cw, lw, down, True, case.lr_border)[0]
    uv = _taps(lh, sh, up, True, "symmetric")[0]
    uh = _taps(lw, sw, up, True, "symmetric")[0]
    shave = shave_for(scale)
    hr = hr.contiguous()
    plane, stats = _hr_side(hr)
    sW = W - SSIM_WINDOW + 1
    pp, mp, tp, lp, vp = plane.ctypes.data, *(stats[i].ctypes.data for i in range(4))
    off, soff = 4 * (shave * W + shave), 4 * (shave * sW + shave)
    ref = _Reference(pp + off, mp + soff, tp + soff, lp + soff, vp + soff, W, sW)
    out = (ctypes.c_double * 3)()
    gauss = _gauss()
    sr_ptr = None
    if sr_out is not None:
        want = (3, sh - 2 * shave, sw - 2 * shave)
        if sr_out.dtype != np.uint8 or sr_out.shape != want or not sr_out.flags.c_contiguous:
            raise ValueError(f"sr_out must be a contiguous uint8 array of shape {want}")
        sr_ptr = sr_out.ctypes.data
    rc = _lib().odesr_bicubic_pair(
        hr.data_ptr(), H, W, ctypes.byref(dv), ctypes.byref(dh), ctypes.byref(uv),
        ctypes.byref(uh), shave, ctypes.byref(ref), gauss.ctypes.data,
        ctypes.byref(out, 0), ctypes.byref(out, 8), ctypes.byref(out, 16), sr_ptr,
    )  # fmt: skip
    if rc == -2:
        raise ValueError(f"image of {H}x{W} is too small for SSIM at scale {scale}")
    if rc == -3:
        raise ValueError(f"odesr native pair: taps do not fit the {H}x{W} image")
    if rc != 0:
        raise MemoryError("odesr native pair: out of memory")
    return out[0], out[1], out[2]
