"""Tiled inference: the one tiler used by every caller (``odesr upscale``, ``odesr eval --tile``,
the experiment runner through :meth:`odesr.models.SRModel.super_resolve`).

The output (H, W) is cut into ``tile x tile`` *cores* (the last row/column may be smaller); each
core is computed together with ``overlap`` pixels of context on every side (clipped at the image
border) and only the core is kept. A per-pixel operation with receptive radius r applied N times
(an ODE solve with N function evaluations) is exactly equal to the untiled result when
``overlap >= r x N`` (:func:`odesr.ode.safe_overlap`).

The start image of a tile, I(t0) = bicubic(LR) restricted to the tile's window, is computed from
the LR image with the rows of :func:`odesr.resize.resize_matrix` that the window needs, so memory
is bounded by the window, never by the whole I(t0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from odesr.resize import resize_matrix

__all__ = ["Tile", "tile_grid", "bicubic_window", "TiledResult", "run_tiled"]


@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` rows/cols (output coordinates, half-open), ``window`` = core plus the
    overlap (clipped to the image)."""

    core: tuple[tuple[int, int], tuple[int, int]]
    window: tuple[tuple[int, int], tuple[int, int]]

    @property
    def out(self) -> tuple[slice, slice]:
        """Where the core goes in the output."""
        (top, bottom), (left, right) = self.core
        return slice(top, bottom), slice(left, right)

    @property
    def inner(self) -> tuple[slice, slice]:
        """Where the core lies inside the window."""
        (top, bottom), (left, right) = self.core
        (a, _), (c, _) = self.window
        return slice(top - a, bottom - a), slice(left - c, right - c)


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, length)) for a in range(0, length, tile)]


def tile_grid(height: int, width: int, tile: int | None, overlap: int = 0) -> list[Tile]:
    """Row-major tiles covering ``height x width``; ``tile=None``: one tile, the whole image."""
    if tile is None:
        return [Tile(((0, height), (0, width)), ((0, height), (0, width)))]
    if tile < 1 or overlap < 0:
        raise ValueError(f"need tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    tiles = []
    for top, bottom in _spans(height, tile):
        rows = (max(top - overlap, 0), min(bottom + overlap, height))
        for left, right in _spans(width, tile):
            cols = (max(left - overlap, 0), min(right + overlap, width))
            tiles.append(Tile(((top, bottom), (left, right)), (rows, cols)))
    return tiles


def bicubic_window(
    lr: torch.Tensor,
    scale: float,
    size: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
) -> torch.Tensor:
    """Output ``rows x cols`` of MATLAB bicubic ``imresize(lr, scale, size)`` for ``lr``
    (..., h, w), computed in float64 from the LR pixels that window reads; ``lr``'s dtype out."""
    h, w = lr.shape[-2:]
    mh = resize_matrix(h, int(size[0]), scale)[rows[0] : rows[1]]
    mw = resize_matrix(w, int(size[1]), scale)[cols[0] : cols[1]]
    used_h = torch.nonzero(mh.abs().sum(0)).flatten()
    used_w = torch.nonzero(mw.abs().sum(0)).flatten()
    r0, r1 = int(used_h[0]), int(used_h[-1]) + 1
    c0, c1 = int(used_w[0]), int(used_w[-1]) + 1
    part = lr[..., r0:r1, c0:c1].to(torch.float64)
    mh, mw = mh[:, r0:r1].to(lr.device), mw[:, c0:c1].to(lr.device)
    return torch.matmul(torch.matmul(mh, part), mw.transpose(0, 1)).to(lr.dtype)


@dataclass
class TiledResult:
    """``image`` (B, C, H, W) or None when a ``sink`` took the tiles; ``nfe`` per pixel (the
    largest of any tile); ``trajectory`` (T, B, C, H, W) with ``times`` (T,) when returned."""

    image: torch.Tensor | None
    nfe: int
    trajectory: torch.Tensor | None = None
    times: torch.Tensor | None = None


Restore = Callable[
    [torch.Tensor], tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]
]
Sink = Callable[[torch.Tensor, tuple[slice, slice]], None]


def run_tiled(
    restore: Restore,
    window: Callable[[tuple[int, int], tuple[int, int]], torch.Tensor],
    size: tuple[int, int],
    tile: int | None,
    overlap: int = 0,
    *,
    sink: Sink | None = None,
    on_tile: Callable[[], None] | None = None,
) -> TiledResult:
    """Compute an image of ``size`` tile by tile.

    ``window(rows, cols)`` gives a tile's input (B, C, h', w'); ``restore(x)`` returns
    ``(image, nfe, trajectory or None, times or None)`` for it, same spatial size. Each finished
    core goes to ``sink(core, (rows, cols))`` when given (nothing is kept), else into the result.
    """
    out: torch.Tensor | None = None
    traj: torch.Tensor | None = None
    times: torch.Tensor | None = None
    nfe = 0
    height, width = size
    for t in tile_grid(height, width, tile, overlap):
        image, tile_nfe, tile_traj, tile_times = restore(window(*t.window))
        nfe = max(nfe, int(tile_nfe))
        core = image[..., t.inner[0], t.inner[1]]
        if sink is not None:
            sink(core, t.out)
        else:
            if out is None:
                out = image.new_empty((*image.shape[:-2], height, width))
            out[..., t.out[0], t.out[1]] = core
        if tile_traj is not None:
            if traj is None:
                traj = tile_traj.new_empty((*tile_traj.shape[:-2], height, width))
            traj[..., t.out[0], t.out[1]] = tile_traj[..., t.inner[0], t.inner[1]]
            times = tile_times
        if on_tile is not None:
            on_tile()
    return TiledResult(out, nfe, traj, times)
