"""Checks of user-given values that run before any expensive work starts.

Each check raises :class:`ValueError` with one line naming the flag and the value (the CLI prints
it as ``odesr: error: ...`` and exits 2). Bounds, and why:

* ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` that exists here; other torch device types
  (``mps``, ...) are not supported by this harness.
* ``--rtol``/``--atol``: finite, in [:data:`MIN_TOLERANCE`, 1] (below float32 resolution an
  adaptive solver only shrinks its steps until it fails).
* tiles: the tiles' windows (core plus overlap, clipped to the image) may cover at most
  :data:`MAX_TILE_COST` times the output's pixels, what ``tile == overlap`` costs inside a large
  image (``--tile 8`` with a 32 px overlap on a 96x80 output: 60x).
* outputs: not a folder, and the nearest existing folder above is writable; their lock
  ``<out>.lock`` a regular file or absent (not a folder or a symlink).
* Step counts are bounded in :data:`odesr.ode.MAX_STEPS`, scale lists in
  :data:`odesr.evaluate.MAX_SCALES`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

__all__ = [
    "MIN_TOLERANCE",
    "device",
    "tolerance",
    "MAX_TILE_COST",
    "tile_cost",
    "tiles_affordable",
    "writable_folder",
    "output_file",
    "lock_file",
    "finite_weights",
]

MIN_TOLERANCE = 1e-7
MAX_TILE_COST = 9.0  # what tile == overlap costs inside a large image


def device(name: str, flag: str = "--device") -> str:
    """``name`` if it is a usable device here: ``cpu``, ``cuda`` or an existing ``cuda:N``;
    ``auto`` (every command's and API function's default) is ``cuda`` when CUDA is available,
    else ``cpu``."""
    if str(name) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(name))
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{flag} {name!r}: unknown device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return str(name)
    if dev.type != "cuda":
        raise ValueError(f"{flag} {name}: {dev.type} devices are not supported; use cpu or cuda")
    if not torch.cuda.is_available():
        raise ValueError(f"{flag} {name}: CUDA is not available on this machine")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"{flag} {name}: no such GPU ({torch.cuda.device_count()} visible: "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1})"
        )
    return str(name)


def tolerance(value: float | None, flag: str) -> float | None:
    """An adaptive solver tolerance: None, or finite in [MIN_TOLERANCE, 1]."""
    if value is None:
        return None
    if not (math.isfinite(value) and MIN_TOLERANCE <= value <= 1):
        raise ValueError(f"{flag} must be in [{MIN_TOLERANCE:g}, 1], got {value!r}")
    return value


def tile_cost(size: tuple[int, int], tile: int, overlap: int) -> float:
    """Pixels computed by ``tile`` x ``tile`` cores with ``overlap`` px of context (windows
    clipped to the image), per output pixel: 1 for one tile, up to 9 when tile == overlap."""
    from odesr.tiling import tile_grid

    def along(length: int) -> float:  # the grid is separable: rows times columns
        return sum(b - a for (a, b), _ in (t.window for t in tile_grid(length, 1, tile, overlap)))

    return along(size[0]) * along(size[1]) / (size[0] * size[1])


def tiles_affordable(
    size: tuple[int, int], tile: int, overlap: int, what: str = "--tile", other: str = ""
) -> None:
    """Refuse a tile side whose overlap makes the tiles cost more than :data:`MAX_TILE_COST`
    times the output's pixels (``other``: the flag that sets the overlap, named in the hint)."""
    cost = tile_cost(size, tile, overlap)
    if cost > MAX_TILE_COST:
        hint = f" or a smaller {other}" if other else ""
        raise ValueError(
            f"{what} {tile} with {overlap} px of overlap computes {cost:.0f}x the pixels of the "
            f"{size[1]}x{size[0]} output (limit {MAX_TILE_COST:g}x); use a larger {what}{hint}"
        )


def writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Fail early when ``folder`` cannot be created or written (checks the nearest existing
    folder above it)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"cannot write {what} {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {what} {folder}: {probe} is not writable")


def output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """An output file path that can be written: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder, expected a file name")
    writable_folder(path.parent if str(path.parent) else Path("."), f"{flag} {path}: folder")
    return path


def lock_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """The lock file ``<path>.lock`` that guards ``path``, refused when it cannot be one: a
    folder, a symlink (a loop or not), or anything but a regular file."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    if os.path.islink(lock):
        raise ValueError(f"{flag} {path}: its lock {lock} is a symlink; remove it")
    if lock.exists() and not lock.is_file():
        raise ValueError(f"{flag} {path}: its lock {lock} is not a regular file; remove it")
    return lock


def finite_weights(state_dict: dict, source: str, error: type[Exception] = ValueError) -> None:
    """Refuse weights holding NaN or inf (they can only produce NaN images): ``error`` (the
    checkpoint loader passes :class:`odesr.models.ModelError`)."""
    for name, value in state_dict.items():
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and value.device.type != "meta"  # shapes only (cost estimates): nothing to check
            and not bool(torch.isfinite(value).all())
        ):
            raise error(f"{source}: weights hold NaN/inf values (first in {name!r})")
