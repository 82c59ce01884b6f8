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
  output. The overlap defaults to the exact one (receptive radius x NFE: tiled == untiled);
  a smaller ``--overlap`` is faster and approximate. Without ``--tile``, tiles are
  :data:`AUTO_TILE` pixels, or one piece when one window would cover the output anyway.
  Models taking the LR image (``meta-rdn``, ``*-fixed``) run on the whole image.
* Budgets: outputs above :data:`MAX_PIXELS` need an explicit ``--tile``; above
  :data:`MAX_PIXELS_TILED` (or :data:`MAX_PIXELS_WHOLE` for untileable models) they are refused.
* Every problem (unreadable input, bad value, unwritable output, bad checkpoint) is reported on
  one line before anything is written; outputs are encoded in memory and written atomically, and
  an existing output is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odesr import validate
from odesr.arguments import upscale_arguments
from odesr.checkpoints import BUNDLED_MODEL, load_model
from odesr.data import IMAGE_SUFFIXES, inspect_images, read_image
from odesr.encoding import FOLDER_SUFFIX, FORMATS, encode, encode_gif, to_uint
from odesr.io import write_bytes_atomic
from odesr.models import DEFAULT_OVERLAP
from odesr.ode import SolverSettings, time_grid
from odesr.solvers import solver_names
from odesr.tiling import bicubic_window, tile_grid
from odesr.validate import writable_folder

__all__ = [
    "BUNDLED_MODEL",
    "FORMATS",
    "MAX_PIXELS",
    "MAX_PIXELS_TILED",
    "MAX_PIXELS_WHOLE",
    "TRAJECTORY_MAX_PIXELS",
    "AUTO_TILE",
    "MIN_SIDE",
    "MAX_SCALE",
    "auto_tile",
    "to_uint",
    "parse_scale",
    "add_arguments",
    "run_from_args",
    "output_shape",
    "upscale_array",
    "UpscaleError",
    "Job",
    "plan_jobs",
    "check_size",
    "encode",
]

MAX_PIXELS = 64_000_000  # output pixels allowed without an explicit --tile
MAX_PIXELS_TILED = 256_000_000  # hard limit with --tile (the quantised output is held in memory)
MAX_PIXELS_WHOLE = 8_000_000  # models that cannot be tiled (they take the LR image)
TRAJECTORY_MAX_PIXELS = 4_000_000  # --trajectory keeps every step's frame in memory
AUTO_TILE = 1024  # tile side used when --tile is not given
MIN_SIDE = 2
MAX_SCALE = 8000.0  # MIN_SIDE * MAX_SCALE squared is MAX_PIXELS_TILED


class UpscaleError(ValueError):
    """A user error of ``odesr upscale`` (printed as one line by the CLI, exit 2)."""


# --------------------------------------------------------------------------- arguments


add_arguments = upscale_arguments  # the argument definitions live in odesr.arguments


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


def parse_scale(text: str | float, flag: str = "--scale") -> float:
    """``--scale``: a finite real number in (1, :data:`MAX_SCALE`] (``flag`` names it)."""
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        raise UpscaleError(f"{flag} must be a number > 1, got {text!r}") from None
    if not math.isfinite(value) or value <= 1:
        raise UpscaleError(f"{flag} must be a finite number > 1, got {text!r}")
    if value > MAX_SCALE:
        raise UpscaleError(
            f"{flag} {value:g} is above {MAX_SCALE:g}: even a {MIN_SIDE}x{MIN_SIDE} image "
            f"would exceed the {MAX_PIXELS_TILED // 1_000_000} Mpx output limit"
        )
    return value


def output_shape(h: int, w: int, scale: float) -> tuple[int, int]:
    """MATLAB's ``ceil(h * scale), ceil(w * scale)`` -- the same rule as the Python API
    (:func:`odesr.models.default_size`); evaluation protocols keep their own crop rules."""
    from odesr.resize import output_size

    return output_size(h, scale), output_size(w, scale)


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
        writable_folder(out_path, "output folder")
    else:
        fmt = FORMATS.get(out_path.suffix.lower())
        if fmt is None:
            raise UpscaleError(
                f"--out {out_path}: unsupported format {out_path.suffix!r}; use "
                f"{', '.join(sorted(FORMATS))}"
            )
        jobs.append(Job(files[0], out_path, fmt))
        writable_folder(out_path.parent if str(out_path.parent) else Path("."), "output folder")
    for job in jobs:
        if job.dst.is_dir():
            raise UpscaleError(f"{job.dst}: output path is a folder")
        if job.dst.exists() and not overwrite:
            raise UpscaleError(f"{job.dst} exists (pass --overwrite to replace it)")
    return jobs


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


# --------------------------------------------------------------------------- inference


@dataclass
class Restored:
    """``rgb`` (H, W, 3) float32 numpy in model range (None when a sink took it); ``alpha``
    (H, W) or None; ``frames`` list of (H, W, 3) float32 arrays (trajectory) with ``times``;
    ``nfe`` per pixel."""

    rgb: np.ndarray | None
    alpha: np.ndarray | None
    nfe: int
    frames: list[np.ndarray] | None = None
    times: list[float] | None = None


def _hwc(x: torch.Tensor) -> np.ndarray:
    """(1, C, h, w) tensor -> (h, w, C) float32 numpy."""
    return x[0].float().cpu().permute(1, 2, 0).numpy()


def _enlarge_alpha(alpha: np.ndarray, scale: float, size: tuple[int, int]) -> np.ndarray:
    """MATLAB bicubic enlargement of an alpha plane (h, w) to ``size``, tile by tile."""
    lr = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))
    out = np.empty(size, dtype=np.float32)
    for t in tile_grid(*size, AUTO_TILE):
        out[t.out] = bicubic_window(lr, scale, size, *t.window).numpy()
    return out


def upscale_array(
    model: torch.nn.Module,
    arr: np.ndarray,
    scale: float,
    size: tuple[int, int],
    *,
    tile: int | None = AUTO_TILE,
    overlap: int | None = None,
    solver: SolverSettings | dict | None = None,
    trajectory: bool = False,
    sink: Callable[[np.ndarray, tuple[slice, slice]], None] | None = None,
    on_tile: Callable[[], None] | None = None,
    device: str = "cpu",
) -> Restored:
    """Super-resolve ``arr`` (h, w, C) float in [0, 1], C in {1, 2, 3, 4} (grey, grey+alpha,
    RGB, RGBA), to ``size`` (H, W) with
    :meth:`odesr.models.SRModel.super_resolve` (tiles for ``upscaled`` models; ``overlap`` None:
    exact). Grey is replicated to RGB; alpha is enlarged with MATLAB bicubic, not the network.

    Returns float results (not clipped). ``sink`` (if given) receives each finished tile's RGB
    (h', w', 3) float32 with its output slices instead of it being kept in ``Restored.rgb``.
    """
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"expected 1 to 4 channels (grey, grey+alpha, RGB, RGBA), got {channels}")
    rgb = arr[..., :3] if channels >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    lr = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).to(torch.float32)
    out = None if sink is not None else np.empty((*size, 3), dtype=np.float32)

    def take(part: torch.Tensor, where: tuple[slice, slice]) -> None:
        if sink is not None:
            sink(_hwc(part), where)
        else:
            out[where] = _hwc(part)

    res = model.super_resolve(
        lr[None].to(device),
        scale,
        size,
        solver=solver,
        tile=tile if model.input_kind == "upscaled" else None,
        overlap=overlap,
        return_trajectory=trajectory,
        sink=take,
        on_tile=on_tile,
    )
    frames = times = None
    if res.trajectory is not None:
        frames = [_hwc(frame) for frame in res.trajectory]
        times = [float(t) for t in res.times]
    alpha = _enlarge_alpha(arr[..., -1], scale, size) if channels in (2, 4) else None
    return Restored(out, alpha, int(res.nfe), frames, times)


# --------------------------------------------------------------------------- command


@dataclass
class Options:
    """``odesr upscale`` arguments, parsed and checked (before any file is read)."""

    scale: float
    tile: int | None  # --tile (None: automatic)
    overlap: int | None  # --overlap (None: exact)
    solver: dict[str, Any]  # --solver/--steps/--step-size given
    traj_dir: Path | None


def _parse_options(args: argparse.Namespace) -> Options:
    scale = parse_scale(args.scale)
    tile = _positive_int(args.tile, "--tile", minimum=8)
    overlap = _positive_int(args.overlap, "--overlap", minimum=0)
    steps = _positive_int(args.steps, "--steps")
    step_size = _positive_float(args.step_size, "--step-size")
    solver = {"method": args.solver, "steps": steps, "step_size": step_size}
    if args.solver is not None and args.solver not in solver_names():
        raise UpscaleError(f"unknown --solver {args.solver!r}; choose from {solver_names()}")
    args.device = validate.device(args.device)  # auto -> cuda or cpu
    traj_dir = Path(args.trajectory) if args.trajectory else None
    return Options(
        scale, tile, overlap, {k: v for k, v in solver.items() if v is not None}, traj_dir
    )


def _check_trajectory_dir(traj_dir: Path | None) -> None:
    if traj_dir is None:
        return
    if traj_dir.exists() and not traj_dir.is_dir():
        raise UpscaleError(f"--trajectory {traj_dir}: is a file, not a folder")
    writable_folder(traj_dir, "trajectory folder")


def _check_model(model: torch.nn.Module, opts: Options) -> tuple[SolverSettings | None, list]:
    """The solver settings and trajectory times the model will use; refuses options that do not
    apply to it."""
    name = model.spec.get("name", "model")
    if not model.is_ode:
        if opts.solver:
            raise UpscaleError(
                f"model {name!r} is not an ODE model: --solver/--steps/--step-size do not apply"
            )
        if opts.traj_dir is not None:
            raise UpscaleError(f"model {name!r} is not an ODE model: it has no trajectory")
    if opts.tile is not None and model.input_kind != "upscaled":
        raise UpscaleError(f"model {name!r} takes the LR image and cannot be tiled")
    if not model.is_ode:
        return None, []
    try:
        settings = model.solver_settings(opts.solver)
        grid = time_grid(opts.scale, steps=settings.steps, step_size=settings.step_size)
    except (ValueError, TypeError) as exc:
        raise UpscaleError(f"bad solver settings {opts.solver}: {exc}") from None
    return settings, [float(t) for t in grid]


def _check_inputs(
    jobs: Sequence[Job],
    opts: Options,
    tileable: bool,
    times: list,
    overwrite: bool,
    overlap: int | None = None,
) -> list[tuple[int, int]]:
    """Output size of every input, checking each one before anything is written (``overlap``:
    the context around each explicit ``--tile``, whose cost is bounded)."""
    sizes: list[tuple[int, int]] = []
    tiled = opts.tile is not None
    for header in inspect_images([job.src for job in jobs]):  # every header before decoding
        check_size(header.path, *header.size, opts.scale, tiled, tileable)
    for job in jobs:
        arr, _ = read_image(job.src)
        H, W = check_size(job.src, arr.shape[0], arr.shape[1], opts.scale, tiled, tileable)
        del arr
        if tileable and opts.tile is not None:
            validate.tiles_affordable((H, W), opts.tile, overlap or 0, "--tile", "--overlap")
        if opts.traj_dir is not None:
            if H * W > TRAJECTORY_MAX_PIXELS:
                raise UpscaleError(
                    f"{job.src}: --trajectory needs an output of at most "
                    f"{TRAJECTORY_MAX_PIXELS // 1_000_000} Mpx, this one is {W}x{H}"
                )
            for p in _trajectory_paths(opts.traj_dir, job.src.stem, times):
                if p.exists() and not overwrite:
                    raise UpscaleError(f"{p} exists (pass --overwrite to replace it)")
        sizes.append((H, W))
    return sizes


def auto_tile(
    model: torch.nn.Module, scale: float, settings: SolverSettings | None, size: tuple[int, int]
) -> int | None:
    """Tile side without ``--tile``: one piece when a single window of AUTO_TILE plus the exact
    overlap on both sides would cover the output anyway, else AUTO_TILE."""
    overlap = model.exact_overlap(scale, settings) or 0
    return None if max(size) <= AUTO_TILE + 2 * overlap else AUTO_TILE


def _upscale_one(
    model: torch.nn.Module,
    job: Job,
    size: tuple[int, int],
    opts: Options,
    settings: SolverSettings | None,
    args: argparse.Namespace,
) -> tuple[Restored, np.ndarray, float]:
    """Read, super-resolve and encode one image; returns the result, the input and seconds."""
    from tqdm import tqdm

    arr, bits = read_image(job.src)
    grey = arr.shape[2] in (1, 2)  # grey, or grey and alpha
    out_bits = 16 if bits == 16 and job.fmt in ("PNG", "TIFF") and grey else 8
    result = np.empty((*size, 1 if grey else 3), np.uint16 if out_bits == 16 else np.uint8)

    def sink(part: np.ndarray, where: tuple[slice, slice]) -> None:
        if not np.isfinite(part).all():
            raise UpscaleError(f"{job.src}: the model output holds NaN/inf; nothing written for it")
        result[where] = to_uint(part.mean(axis=2, keepdims=True) if grey else part, out_bits)

    tileable = model.input_kind == "upscaled"
    tile = opts.tile if opts.tile is not None else auto_tile(model, opts.scale, settings, size)
    n_tiles = len(tile_grid(*size, tile)) if tileable else 1
    tile_bar = tqdm(
        total=n_tiles,
        unit="tile",
        leave=False,
        file=sys.stderr,
        disable=args.no_progress or n_tiles == 1,
        desc=job.src.name,
    )
    start = time.perf_counter()
    res = upscale_array(
        model,
        arr,
        opts.scale,
        size,
        tile=tile,
        overlap=opts.overlap,
        solver=settings,
        trajectory=opts.traj_dir is not None,
        sink=sink,
        on_tile=tile_bar.update,
        device=args.device,
    )
    tile_bar.close()
    seconds = time.perf_counter() - start
    final = _with_alpha(result[..., 0] if grey else result, res, job)
    _write(job.dst, encode(final, job.fmt), args.overwrite)
    if opts.traj_dir is not None and res.frames is not None:
        _write_trajectory(opts.traj_dir, job.src.stem, res, grey, args.overwrite)
    return res, arr, seconds


def _with_alpha(final: np.ndarray, res: Restored, job: Job) -> np.ndarray:
    """``final`` with the enlarged alpha channel appended where the format keeps one."""
    if res.alpha is None:
        return final
    if job.fmt == "JPEG":
        print(f"odesr: warning: {job.dst}: JPEG has no alpha; alpha dropped", file=sys.stderr)
        return final
    alpha = to_uint(res.alpha, 16 if final.dtype == np.uint16 else 8)
    if final.ndim == 2:  # grey and alpha
        return np.stack([final, alpha], axis=2)
    return np.concatenate([final, alpha[..., None]], axis=2)


def _model_choice(args: argparse.Namespace) -> str | Path | None:
    """``--model`` (even an empty name, which is refused), else ``--checkpoint``, else None
    (the bundled model)."""
    if args.model is not None:
        return args.model
    return Path(args.checkpoint) if args.checkpoint is not None else None


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``odesr upscale`` from parsed arguments; returns the exit status."""
    from tqdm import tqdm

    opts = _parse_options(args)
    jobs = plan_jobs(args.inputs, args.out, args.format, args.overwrite)
    _check_trajectory_dir(opts.traj_dir)
    model = load_model(_model_choice(args), args.device)
    name = model.spec.get("name", "model")
    settings, times = _check_model(model, opts)
    tileable = model.input_kind == "upscaled"
    overlap = opts.overlap
    if overlap is None and tileable and opts.tile is not None:
        exact = model.exact_overlap(opts.scale, settings)
        overlap = DEFAULT_OVERLAP if exact is None else exact
    sizes = _check_inputs(jobs, opts, tileable, times, args.overwrite, overlap)
    bar = tqdm(
        total=len(jobs), unit="img", disable=args.no_progress, file=sys.stderr, desc="upscale"
    )
    try:
        for job, (H, W) in zip(jobs, sizes, strict=True):
            res, arr, seconds = _upscale_one(model, job, (H, W), opts, settings, args)
            bar.write(
                f"{job.src} {arr.shape[1]}x{arr.shape[0]} -> {W}x{H} (x{opts.scale:g}, {name}, "
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


def _write(path: Path, data: bytes, overwrite: bool) -> None:
    """Atomic write; without ``overwrite`` an output that appeared since planning (another run)
    is never replaced (enforced by the write itself, not only checked before)."""
    try:
        write_bytes_atomic(path, data, overwrite=overwrite)
    except FileExistsError:
        raise UpscaleError(f"{path} exists (pass --overwrite to replace it)") from None


def _write_trajectory(
    folder: Path, stem: str, res: Restored, grey: bool, overwrite: bool = True
) -> None:
    """Write the trajectory frames (8-bit PNGs) and the animated GIF."""
    assert res.frames is not None and res.times is not None
    frames8 = [to_uint(f.mean(axis=2) if grey else f, 8) for f in res.frames]
    *pngs, gif = _trajectory_paths(folder, stem, res.times)
    for p, q in zip(pngs, frames8, strict=True):
        _write(p, encode(q, "PNG"), overwrite)
    _write(gif, encode_gif(frames8), overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m odesr.upscale ...`` (same as ``odesr upscale``)."""
    from odesr.cli import main as cli_main

    return cli_main(["upscale", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
