"""``odesr upscale``: super-resolve your own images at any scale > 1.

::

    odesr upscale photo.png --scale 3 --out photo_x3.png
    odesr upscale shots/ --scale 2.5 --out big/ --format webp --tile 512
    odesr upscale a.png --scale 4 --out a_x4.png --trajectory traj/   # I(t_i) PNGs + a GIF

Rules:

* The output of an ``h x w`` image is ``floor(h * S) x floor(w * S)``; the model sees the image
  as RGB float in [0, 1] (grey replicated) and the result is quantised only when written.
* Formats PNG, JPEG, TIFF and WebP in and out (out: by the OUT suffix; in folder mode by
  ``--format``, default PNG). 16-bit grey PNG/TIFF (Pillow mode ``I;16``) comes out 16-bit in
  PNG/TIFF; grey comes out grey (mean of the model's 3 channels); an alpha channel is enlarged
  with MATLAB bicubic (:mod:`odesr.resize`), never through the network, and kept where the format
  has one (dropped for JPEG).
* Models with ``input_kind == "upscaled"`` (the ODE models, ``bicubic``, ``*+t``) run on tiles:
  the bicubic start image ``I(t0)`` of each tile (plus ``--overlap`` pixels of context) is
  computed directly from the LR image, so memory is bounded by the tile size and the quantised
  output. Without ``--tile``, outputs up to :data:`AUTO_TILE` pixels a side are one tile.
  Models taking the LR image (``meta-rdn``, ``*-fixed``) run on the whole image.
* Budgets: outputs above :data:`MAX_PIXELS` need an explicit ``--tile``; above
  :data:`MAX_PIXELS_TILED` (or :data:`MAX_PIXELS_WHOLE` for untileable models) they are refused.
* Every problem (unreadable input, bad value, unwritable output, bad checkpoint) is reported on
  one line before anything is written; outputs are encoded in memory and written atomically, and
  an existing output is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from odesr.data import IMAGE_SUFFIXES, read_image
from odesr.io import write_bytes_atomic

__all__ = [
    "BUNDLED_MODEL",
    "FORMATS",
    "MAX_PIXELS",
    "MAX_PIXELS_TILED",
    "MAX_PIXELS_WHOLE",
    "TRAJECTORY_MAX_PIXELS",
    "AUTO_TILE",
    "MIN_SIDE",
    "add_arguments",
    "run_from_args",
    "output_shape",
    "enlarge_rows",
    "upscale_array",
    "UpscaleError",
    "Job",
    "plan_jobs",
    "check_size",
    "load_model",
    "encode",
]

BUNDLED_MODEL = Path(__file__).with_name("weights") / "vdsr-ode-cpu.pt"
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
FOLDER_SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "jpg": ".jpg",
    "tiff": ".tif",
    "tif": ".tif",
    "webp": ".webp",
}
MAX_PIXELS = 64_000_000  # output pixels allowed without an explicit --tile
MAX_PIXELS_TILED = 256_000_000  # hard limit with --tile (the quantised output is held in memory)
MAX_PIXELS_WHOLE = 8_000_000  # models that cannot be tiled (they take the LR image)
TRAJECTORY_MAX_PIXELS = 4_000_000  # --trajectory keeps every step's frame in memory
AUTO_TILE = 1024  # tile side used when --tile is not given
DEFAULT_OVERLAP = 32
MIN_SIDE = 2
GIF_MAX_SIDE = 1024
JPEG_QUALITY = 95
WEBP_QUALITY = 95


class UpscaleError(ValueError):
    """A user error of ``odesr upscale`` (printed as one line by the CLI, exit 2)."""


# --------------------------------------------------------------------------- arguments


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``odesr upscale``."""
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders")
    parser.add_argument("--scale", required=True, help="scale factor S > 1 (any real number)")
    parser.add_argument(
        "--out", required=True, help="output file (one input) or folder (created if needed)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        help="checkpoint (.pt) made by odesr train (default: the bundled small vdsr-ode, "
        "odesr/weights/vdsr-ode-cpu.pt)",
    )
    which.add_argument("--model", help="registry name of a parameter-free model (e.g. bicubic)")
    parser.add_argument("--solver", help="ODE method: euler, midpoint, rk4, rk4-classic, dopri5")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--steps", help="fixed solver steps from t0 to 1")
    steps.add_argument("--step-size", help="fixed solver step size in t")
    parser.add_argument("--tile", help=f"tile side in output pixels (default {AUTO_TILE})")
    parser.add_argument(
        "--overlap",
        help="context pixels around each tile (default: exact for fixed-step ODE solvers, "
        f"radius x NFE capped at 256; else {DEFAULT_OVERLAP})",
    )
    parser.add_argument(
        "--format",
        default="png",
        help="output format in folder mode: png (default), jpeg, tiff, webp",
    )
    parser.add_argument("--trajectory", metavar="DIR", help="write I(t_i) PNGs and a GIF here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser


def _positive_float(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UpscaleError(f"{name} must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UpscaleError(f"{name} must be a positive finite number, got {text!r}")
    return value


def _positive_int(text: str | None, name: str, minimum: int = 1) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UpscaleError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UpscaleError(f"{name} must be >= {minimum}, got {text!r}")
    return value


def parse_scale(text: str) -> float:
    """``--scale``: a finite real number > 1."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UpscaleError(f"--scale must be a number > 1, got {text!r}") from None
    if not math.isfinite(value) or value <= 1:
        raise UpscaleError(f"--scale must be a finite number > 1, got {text!r}")
    return value


def output_shape(h: int, w: int, scale: float) -> tuple[int, int]:
    """``floor(h * scale), floor(w * scale)`` (with a 1e-9 guard against float error)."""
    return int(math.floor(h * scale + 1e-9)), int(math.floor(w * scale + 1e-9))


# --------------------------------------------------------------------------- planning


@dataclass
class Job:
    src: Path
    dst: Path
    fmt: str


def _collect_inputs(items: Sequence[str]) -> tuple[list[Path], bool]:
    """Input files (folders expanded, non-recursive) and whether any folder was given."""
    files: list[Path] = []
    had_folder = False
    for item in items:
        p = Path(item)
        if p.is_dir():
            had_folder = True
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise UpscaleError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
            files.extend(found)
        elif p.exists() and not p.is_file():
            raise UpscaleError(f"{p}: not a file or folder")
        elif not p.exists():
            raise UpscaleError(f"{p}: no such file or folder")
        else:
            files.append(p)
    return files, had_folder


def _check_writable_folder(folder: Path, what: str) -> None:
    """Fail early (before any work) when ``folder`` cannot be created or written."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UpscaleError(f"cannot write {what} {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UpscaleError(f"cannot write {what} {folder}: {probe} is not writable")


def plan_jobs(
    inputs: Sequence[str], out: str, folder_format: str = "png", overwrite: bool = False
) -> list[Job]:
    """Pair every input with its output path and format; checks names and writability."""
    files, had_folder = _collect_inputs(inputs)
    fmt_key = folder_format.lower().lstrip(".")
    if fmt_key not in FOLDER_SUFFIX:
        raise UpscaleError(f"--format must be one of png, jpeg, tiff, webp, got {folder_format!r}")
    out_path = Path(out)
    folder_mode = (
        had_folder
        or len(files) > 1
        or out_path.is_dir()
        or out.endswith(("/", os.sep))
        or out_path.suffix == ""
    )
    jobs: list[Job] = []
    if folder_mode:
        if out_path.exists() and not out_path.is_dir():
            raise UpscaleError(f"--out {out_path}: is a file, but several inputs need a folder")
        suffix = FOLDER_SUFFIX[fmt_key]
        seen: dict[Path, Path] = {}
        for f in files:
            dst = out_path / (f.stem + suffix)
            if dst in seen:
                raise UpscaleError(f"{f} and {seen[dst]} would both be written to {dst}")
            seen[dst] = f
            jobs.append(Job(f, dst, FORMATS[suffix]))
        _check_writable_folder(out_path, "output folder")
    else:
        fmt = FORMATS.get(out_path.suffix.lower())
        if fmt is None:
            raise UpscaleError(
                f"--out {out_path}: unsupported format {out_path.suffix!r}; use "
                f"{', '.join(sorted(FORMATS))}"
            )
        jobs.append(Job(files[0], out_path, fmt))
        _check_writable_folder(
            out_path.parent if str(out_path.parent) else Path("."), "output folder"
        )
    for job in jobs:
        if job.dst.is_dir():
            raise UpscaleError(f"{job.dst}: output path is a folder")
        if job.dst.exists() and not overwrite:
            raise UpscaleError(f"{job.dst} exists (pass --overwrite to replace it)")
    return jobs


def _peek_size(path: Path) -> tuple[int, int] | None:
    """(h, w) from the header without decoding; None when Pillow cannot even open it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except Image.DecompressionBombError:
        raise UpscaleError(f"{path}: image is too large to decode safely") from None
    except Exception:  # noqa: BLE001 - read_image gives the precise message
        return None
    return h, w


def check_size(
    path: Path, h: int, w: int, scale: float, tiled: bool, tileable: bool
) -> tuple[int, int]:
    """Output (H, W) for an ``h x w`` input, or :class:`UpscaleError` (too small / too big)."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UpscaleError(
            f"{path}: image of {w}x{h} pixels is too small (need at least {MIN_SIDE}x{MIN_SIDE})"
        )
    H, W = output_shape(h, w, scale)
    pixels = H * W
    mpx = pixels / 1e6
    if not tileable and pixels > MAX_PIXELS_WHOLE:
        raise UpscaleError(
            f"{path}: output {W}x{H} ({mpx:.1f} Mpx) at scale {scale:g} exceeds the "
            f"{MAX_PIXELS_WHOLE // 1_000_000} Mpx limit of a model that cannot be tiled"
        )
    if pixels > MAX_PIXELS_TILED:
        raise UpscaleError(
            f"{path}: output {W}x{H} ({mpx:.1f} Mpx) at scale {scale:g} exceeds the "
            f"{MAX_PIXELS_TILED // 1_000_000} Mpx limit"
        )
    if pixels > MAX_PIXELS and not tiled:
        raise UpscaleError(
            f"{path}: output {W}x{H} ({mpx:.1f} Mpx) at scale {scale:g} exceeds the "
            f"{MAX_PIXELS // 1_000_000} Mpx budget; pass --tile N to process it in tiles"
        )
    return H, W


# --------------------------------------------------------------------------- model


def load_model(checkpoint: str | None, name: str | None, device: str = "cpu") -> torch.nn.Module:
    """The model from ``--checkpoint``, ``--model`` or the bundled checkpoint, in eval mode."""
    from odesr import models

    if name is not None:
        if name not in models.MODELS:
            raise UpscaleError(f"unknown model {name!r}; choose from {sorted(models.MODELS)}")
        model = models.build({"name": name})
        if any(True for _ in model.parameters()):
            raise UpscaleError(f"model {name!r} needs trained weights: pass --checkpoint PATH")
        return model.to(device).eval()
    path = Path(checkpoint) if checkpoint is not None else BUNDLED_MODEL
    if not path.is_file():
        if checkpoint is None:
            raise UpscaleError(
                f"bundled model {path} is missing; pass --checkpoint PATH or --model bicubic"
            )
        raise UpscaleError(f"checkpoint {path}: no such file")
    if path.stat().st_size == 0:
        raise UpscaleError(f"checkpoint {path}: empty file")
    return models.load(path, map_location=device)


def _is_ode(model: torch.nn.Module) -> bool:
    return hasattr(model, "solve") and hasattr(model, "solver_options")


# --------------------------------------------------------------------------- inference


def enlarge_rows(in_len: int, scale: float, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the MATLAB bicubic enlargement matrix (scale >= 1, symmetric
    borders), shape (stop - start, in_len), float64: equal to
    ``odesr.resize.resize_matrix(in_len, out_len, scale)[start:stop]`` for any out_len >= stop,
    without building the full matrix."""
    from odesr.resize import _cubic

    x = np.arange(start + 1, stop + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - 2.0)
    taps = 6
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    w = _cubic(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((stop - start, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(stop - start), taps)
    np.add.at(mat, (rows, src.ravel()), w.ravel())
    return mat


def _bicubic_window(
    lr: torch.Tensor, scale: float, rows: tuple[int, int], cols: tuple[int, int]
) -> torch.Tensor:
    """I(t0) = bicubic(lr, scale) restricted to output ``rows`` x ``cols``; lr (C, h, w)."""
    _, h, w = lr.shape
    mh = enlarge_rows(h, scale, *rows)
    mw = enlarge_rows(w, scale, *cols)
    used_h = np.flatnonzero(mh.any(axis=0))
    used_w = np.flatnonzero(mw.any(axis=0))
    r0, r1 = int(used_h[0]), int(used_h[-1]) + 1
    c0, c1 = int(used_w[0]), int(used_w[-1]) + 1
    part = lr[:, r0:r1, c0:c1].to(torch.float64)
    th = torch.from_numpy(mh[:, r0:r1])
    tw = torch.from_numpy(mw[:, c0:c1])
    return torch.matmul(torch.matmul(th, part), tw.transpose(0, 1)).to(lr.dtype)


def _tiles(length: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, length)) for a in range(0, length, tile)]


@dataclass
class Restored:
    """``rgb`` (H, W, 3) float32 numpy in model range; ``alpha`` (H, W) or None; ``frames``
    list of (H, W, 3) float32 arrays (trajectory) with ``times``; ``nfe`` per pixel."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    nfe: int
    frames: list[np.ndarray] | None = None
    times: list[float] | None = None


def upscale_array(
    model: torch.nn.Module,
    arr: np.ndarray,
    scale: float,
    size: tuple[int, int],
    *,
    tile: int = AUTO_TILE,
    overlap: int = DEFAULT_OVERLAP,
    solver: dict[str, Any] | None = None,
    trajectory: bool = False,
    sink: Callable[[np.ndarray, tuple[slice, slice]], None] | None = None,
    on_tile: Callable[[], None] | None = None,
    device: str = "cpu",
) -> Restored:
    """Super-resolve ``arr`` (h, w, C) float in [0, 1], C in {1, 3, 4}, to ``size`` (H, W).

    Returns float results (not clipped). ``sink`` (if given) receives each finished tile's RGB
    (h', w', 3) float32 with its output slices instead of it being kept in ``Restored.rgb``.
    """
    solver = dict(solver or {})
    H, W = size
    channels = arr.shape[2]
    rgb = arr[..., :3] if channels >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    alpha_in = arr[..., 3] if channels == 4 else None
    planes = rgb if alpha_in is None else np.concatenate([rgb, alpha_in[..., None]], axis=2)
    lr = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1))).to(torch.float32)
    kind = getattr(model, "input_kind", "upscaled")
    out = None if sink is not None else np.empty((H, W, 3), dtype=np.float32)
    alpha = np.empty((H, W), dtype=np.float32) if alpha_in is not None else None
    frames: list[np.ndarray] | None = None
    times: list[float] | None = None
    nfe = 0

    if kind != "upscaled":
        from odesr.resize import imresize

        with torch.no_grad():
            res = model.super_resolve(lr[None, :3].to(device), scale, (H, W))
        img = res.image[0].float().cpu()
        if tuple(img.shape[-2:]) != (H, W):
            raise UpscaleError(
                f"model {model.spec.get('name')!r} returned {tuple(img.shape[-2:])}, "
                f"expected {(H, W)} at scale {scale:g}"
            )
        tile_rgb = img.permute(1, 2, 0).numpy()
        if sink is not None:
            sink(tile_rgb, (slice(0, H), slice(0, W)))
        else:
            out[...] = tile_rgb
        if alpha is not None:
            alpha[...] = imresize(lr[3:4].double(), scale=scale, size=(H, W))[0].numpy()
        if on_tile is not None:
            on_tile()
        return Restored(out, alpha, int(res.nfe))

    ode = _is_ode(model)
    for top, bottom in _tiles(H, tile):
        a, b = max(top - overlap, 0), min(bottom + overlap, H)
        for left, right in _tiles(W, tile):
            c, d = max(left - overlap, 0), min(right + overlap, W)
            x0 = _bicubic_window(lr, scale, (a, b), (c, d))
            core = (slice(top - a, bottom - a), slice(left - c, right - c))
            if alpha is not None:
                alpha[top:bottom, left:right] = x0[3][core].numpy()
            x = x0[None, :3].to(device)
            with torch.no_grad():
                if ode:
                    sol = model.solve(x, scale, return_trajectory=trajectory, **solver)
                    y, traj, nfe = sol.image, sol.trajectory, max(nfe, sol.nfe)
                    if traj is not None:
                        if frames is None:
                            times = [float(t) for t in sol.times]
                            frames = [np.empty((H, W, 3), np.float32) for _ in times]
                        for k in range(len(frames)):
                            part = traj[k, 0].float().cpu().permute(1, 2, 0).numpy()
                            frames[k][top:bottom, left:right] = part[core]
                else:
                    y = model(x, scale, tuple(x.shape[-2:]))
                    nfe = max(nfe, int(getattr(model, "nfe_per_call", 1)))
            part = y[0].float().cpu().permute(1, 2, 0).numpy()[core]
            if sink is not None:
                sink(part, (slice(top, bottom), slice(left, right)))
            else:
                out[top:bottom, left:right] = part
            if on_tile is not None:
                on_tile()
    return Restored(out, alpha, nfe, frames, times)


# --------------------------------------------------------------------------- encoding


def _to_uint(x: np.ndarray, bits: int) -> np.ndarray:
    peak = 65535.0 if bits == 16 else 255.0
    q = np.floor(np.clip(x, 0.0, 1.0) * peak + 0.5)
    return q.astype(np.uint16 if bits == 16 else np.uint8)


def encode(arr: np.ndarray, fmt: str) -> bytes:
    """Encode a uint8 (H, W[, C]) or uint16 (H, W) array in ``fmt`` (PNG, JPEG, TIFF, WEBP)."""
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    elif fmt == "WEBP":
        img.save(buf, format="WEBP", quality=WEBP_QUALITY)
    elif fmt == "TIFF":
        img.save(buf, format="TIFF", compression="tiff_deflate")
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Atomic write, then the permissions a plain ``open(path, "wb")`` would give (mkstemp
    creates 0600 files)."""
    write_bytes_atomic(path, data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _gif(frames: list[np.ndarray]) -> bytes:
    """Animated GIF (loops; first and last frames held longer), long side <= GIF_MAX_SIDE."""
    images = [Image.fromarray(f) for f in frames]
    h, w = frames[0].shape[:2]
    if max(h, w) > GIF_MAX_SIDE:
        k = GIF_MAX_SIDE / max(h, w)
        new = (max(1, round(w * k)), max(1, round(h * k)))
        images = [im.resize(new, Image.Resampling.LANCZOS) for im in images]
    durations = [120] * len(images)
    durations[0] = durations[-1] = 800
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    return buf.getvalue()


# --------------------------------------------------------------------------- command


def _default_overlap(model: torch.nn.Module, scale: float, solver: dict) -> int:
    """The overlap that makes tiles exact (receptive radius x NFE) for fixed-step ODE models,
    capped at 256 px; ``DEFAULT_OVERLAP`` for other models and adaptive solvers."""
    exact = getattr(model, "safe_overlap", None)
    if exact is None:
        return DEFAULT_OVERLAP
    try:
        return min(max(int(exact(scale, **solver)), DEFAULT_OVERLAP), 256)
    except ValueError:  # adaptive solver: no exact overlap
        return DEFAULT_OVERLAP


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``odesr upscale`` from parsed arguments; returns the exit status."""
    from tqdm import tqdm

    scale = parse_scale(args.scale)
    tile_arg = _positive_int(args.tile, "--tile", minimum=8)
    overlap_arg = _positive_int(args.overlap, "--overlap", minimum=0)
    steps = _positive_int(args.steps, "--steps")
    step_size = _positive_float(args.step_size, "--step-size")
    solver = {"method": args.solver, "steps": steps, "step_size": step_size}
    solver = {k: v for k, v in solver.items() if v is not None}
    if args.solver is not None:
        from odesr.ode import METHODS

        if args.solver not in METHODS:
            raise UpscaleError(f"unknown --solver {args.solver!r}; choose from {list(METHODS)}")

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise UpscaleError(f"--device {args.device}: CUDA is not available on this machine")
    jobs = plan_jobs(args.inputs, args.out, args.format, args.overwrite)
    traj_dir = Path(args.trajectory) if args.trajectory else None
    if traj_dir is not None:
        if traj_dir.exists() and not traj_dir.is_dir():
            raise UpscaleError(f"--trajectory {traj_dir}: is a file, not a folder")
        _check_writable_folder(traj_dir, "trajectory folder")

    model = load_model(args.checkpoint, args.model, args.device)
    name = model.spec.get("name", "model")
    ode = _is_ode(model)
    if solver and not ode:
        raise UpscaleError(
            f"model {name!r} is not an ODE model: --solver/--steps/--step-size do not apply"
        )
    if traj_dir is not None and not ode:
        raise UpscaleError(f"model {name!r} is not an ODE model: it has no trajectory")
    tileable = getattr(model, "input_kind", "upscaled") == "upscaled"
    if tile_arg is not None and not tileable:
        raise UpscaleError(f"model {name!r} takes the LR image and cannot be tiled")
    times: list[float] = []
    if ode:
        from odesr.ode import time_grid

        try:
            opts = model.solver_options(**solver)
            grid = time_grid(scale, steps=opts["steps"], step_size=opts["step_size"])
        except (ValueError, TypeError) as exc:
            raise UpscaleError(f"bad solver settings {solver}: {exc}") from None
        times = [float(t) for t in grid]

    # validate every input before writing anything
    sizes: list[tuple[int, int]] = []
    for job in jobs:
        peek = _peek_size(job.src)
        if peek is not None:
            check_size(job.src, *peek, scale, tile_arg is not None, tileable)
        arr, _ = read_image(job.src)
        H, W = check_size(
            job.src, arr.shape[0], arr.shape[1], scale, tile_arg is not None, tileable
        )
        if traj_dir is not None and H * W > TRAJECTORY_MAX_PIXELS:
            raise UpscaleError(
                f"{job.src}: --trajectory needs an output of at most "
                f"{TRAJECTORY_MAX_PIXELS // 1_000_000} Mpx, this one is {W}x{H}"
            )
        sizes.append((H, W))
        del arr
        if traj_dir is not None:
            for p in _trajectory_paths(traj_dir, job.src.stem, times):
                if p.exists() and not args.overwrite:
                    raise UpscaleError(f"{p} exists (pass --overwrite to replace it)")

    tile = tile_arg if tile_arg is not None else AUTO_TILE
    bar = tqdm(
        total=len(jobs), unit="img", disable=args.no_progress, file=sys.stderr, desc="upscale"
    )
    try:
        for job, (H, W) in zip(jobs, sizes, strict=True):
            arr, bits = read_image(job.src)
            channels = arr.shape[2]
            grey = channels == 1
            out_bits = 16 if bits == 16 and job.fmt in ("PNG", "TIFF") and grey else 8
            out_ch = 1 if grey else 3
            result = np.empty((H, W, out_ch), np.uint16 if out_bits == 16 else np.uint8)

            def sink(
                part: np.ndarray,
                where: tuple[slice, slice],
                result=result,
                grey=grey,
                out_bits=out_bits,
            ) -> None:
                vals = part.mean(axis=2, keepdims=True) if grey else part
                result[where] = _to_uint(vals, out_bits)

            n_tiles = len(_tiles(H, tile)) * len(_tiles(W, tile)) if tileable else 1
            tile_bar = tqdm(
                total=n_tiles,
                unit="tile",
                leave=False,
                file=sys.stderr,
                disable=args.no_progress or n_tiles == 1,
                desc=job.src.name,
            )
            overlap = (
                overlap_arg if overlap_arg is not None else _default_overlap(model, scale, solver)
            )
            start = time.perf_counter()
            res = upscale_array(
                model,
                arr,
                scale,
                (H, W),
                tile=tile,
                overlap=overlap,
                solver=solver,
                trajectory=traj_dir is not None,
                sink=sink,
                on_tile=tile_bar.update,
                device=args.device,
            )
            tile_bar.close()
            seconds = time.perf_counter() - start
            final = result[..., 0] if grey else result
            if res.alpha is not None:
                if job.fmt == "JPEG":
                    print(
                        f"odesr: warning: {job.dst}: JPEG has no alpha; alpha dropped",
                        file=sys.stderr,
                    )
                else:
                    final = np.concatenate([result, _to_uint(res.alpha, 8)[..., None]], axis=2)
            _write(job.dst, encode(final, job.fmt))
            if traj_dir is not None and res.frames is not None:
                _write_trajectory(traj_dir, job.src.stem, res, grey)
            bar.write(
                f"{job.src} {arr.shape[1]}x{arr.shape[0]} -> {W}x{H} (x{scale:g}, {name}, "
                f"NFE {res.nfe}) in {seconds:.2f} s -> {job.dst}"
            )
            bar.update()
    finally:
        bar.close()
    return 0


def _trajectory_paths(folder: Path, stem: str, times: Sequence[float]) -> list[Path]:
    """``folder/{stem}_{k:03d}_t{t:.3f}.png`` for each I(t_k), then ``folder/{stem}.gif``."""
    pngs = [folder / f"{stem}_{k:03d}_t{t:.3f}.png" for k, t in enumerate(times)]
    return [*pngs, folder / f"{stem}.gif"]


def _write_trajectory(folder: Path, stem: str, res: Restored, grey: bool) -> None:
    """Write the trajectory frames (8-bit PNGs) and the animated GIF."""
    assert res.frames is not None and res.times is not None
    frames8 = [_to_uint(f.mean(axis=2) if grey else f, 8) for f in res.frames]
    *pngs, gif = _trajectory_paths(folder, stem, res.times)
    for p, q in zip(pngs, frames8, strict=True):
        _write(p, encode(q, "PNG"))
    _write(gif, _gif(frames8))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m odesr.upscale ...`` (same as ``odesr upscale``)."""
    from odesr.cli import main as cli_main

    return cli_main(["upscale", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
