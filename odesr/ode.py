"""ODE machinery: the right-hand side f(t, I), the time grid, solvers, checkpointing and tiling.

Conventions (paper section 3):

* The state is an image ``I`` (B, 3, H, W); time is the scale ``t >= 1``. We integrate
  ``dI/dt = f(I, t)`` from ``t0`` (the bicubic image ``I(t0)``) *down* to ``t = 1`` (the HR
  estimate), so the time grid is decreasing and steps ``dt`` are negative.
* Fixed-step methods (``euler``, ``midpoint``, ``rk4``, ``rk4-classic``) run on a grid of exactly
  ``steps + 1`` points built by :func:`time_grid`; NFE is exactly ``steps x stages``
  (1 / 2 / 4 / 4). Give ``steps`` or ``step_size`` (``steps = ceil((t0 - 1) / step_size)``); with
  neither, one step is taken, which is what ``torchdiffeq.odeint(f, y0, [t0, 1], method=...)``
  does.
* ``rk4`` is torchdiffeq's ``rk4``, which is the **3/8 rule** (``rk4_alt_step_func``: stages at
  0, 1/3, 2/3, 1; weights 1/8, 3/8, 3/8, 1/8) -- the paper used torchdiffeq's RK4, so this is the
  default. ``rk4-classic`` is the classic Runge-Kutta method (stages 0, 1/2, 1/2, 1; weights
  1/6, 1/3, 1/3, 1/6); torchdiffeq has no method name for it, so it runs on our own stepper.
* ``dopri5`` is adaptive (torchdiffeq, ``rtol``/``atol``); its step sizes are shared across the
  batch, so results may depend on the batch composition.
* All times are tensors of the state's dtype (float32 normally): the grid's first point is
  ``t0`` in that dtype and its last is exactly ``1.0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint as _checkpoint
from torchdiffeq import odeint

from odesr.nets import with_t_plane

__all__ = [
    "ODEFunc",
    "ODESolution",
    "FIXED_METHODS",
    "ADAPTIVE_METHODS",
    "METHODS",
    "time_grid",
    "num_steps",
    "solve",
    "solve_tiled",
    "safe_overlap",
]

# stages (function evaluations) per step of each fixed-step method
FIXED_METHODS: dict[str, int] = {"euler": 1, "midpoint": 2, "rk4": 4, "rk4-classic": 4}
ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5",)
METHODS: tuple[str, ...] = (*FIXED_METHODS, *ADAPTIVE_METHODS)
_TORCHDIFFEQ_FIXED = ("euler", "midpoint", "rk4")


class ODEFunc(nn.Module):
    """f(t, I) = backbone(cat[I, t-plane]): the ODE right-hand side around a backbone.

    Counters: ``nfe`` counts forward evaluations (including recomputations done by activation
    checkpointing during backward); ``nfe_backward`` counts backward passes through the backbone
    (one per forward evaluation that took part in a ``loss.backward()``); :meth:`reset` zeroes
    both. :func:`solve` reports the forward NFE of the solve itself, independent of these totals.
    """

    def __init__(self, net: nn.Module, t_plane: bool = True) -> None:
        super().__init__()
        self.net = net
        self.t_plane = t_plane
        self.nfe = 0
        self.nfe_backward = 0

    def reset(self) -> None:
        self.nfe = 0
        self.nfe_backward = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.nfe_backward += 1

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        x = with_t_plane(y, t) if self.t_plane else y
        out = self.net(x)
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    @property
    def receptive_radius(self) -> int | None:
        return getattr(self.net, "receptive_radius", None)


class _Counted:
    """Wraps any callable f(t, y) and counts its calls (used for plain functions in solve)."""

    def __init__(self, func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.func = func
        self.calls = 0

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.func(t, y)


@dataclass
class ODESolution:
    """Result of :func:`solve`.

    ``image``: the state at t = 1. ``nfe``: forward function evaluations of this solve (for a
    tiled solve: of one tile, i.e. per pixel). ``times``: the grid (decreasing, ``t0`` .. 1) at
    which the trajectory is given. ``trajectory``: (len(times), *image.shape) or None.
    """

    image: torch.Tensor
    nfe: int
    times: torch.Tensor
    trajectory: torch.Tensor | None = None


def num_steps(t0: float, step_size: float, t1: float = 1.0) -> int:
    """Steps of size at most ``step_size`` covering [t1, t0]: ``ceil((t0 - t1) / h - 1e-9)``."""
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
    return max(int(math.ceil((float(t0) - t1) / step_size - 1e-9)), 0)


def time_grid(
    t0: float,
    t1: float = 1.0,
    steps: int | None = None,
    step_size: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Decreasing grid of exactly ``steps + 1`` equally spaced times from ``t0`` to ``t1``.

    The first point is ``t0`` and the last exactly ``t1`` (in ``dtype``). ``steps`` wins over
    ``step_size``; with neither, one step. ``t0 == t1`` gives the one-point grid ``[t1]``.
    Built in float64 and rounded once, so no near-zero steps appear (torchdiffeq's own
    ``step_size`` grid adds one at e.g. t0 = 1.1, 1.2, 2.4 in float32).
    """
    t0 = float(t0)
    if not (math.isfinite(t0) and t0 >= t1):
        raise ValueError(f"t0 must be finite and >= {t1}, got {t0!r}")
    if t0 == t1:
        return torch.tensor([t1], dtype=dtype, device=device)
    if steps is None:
        steps = 1 if step_size is None else max(num_steps(t0, step_size, t1), 1)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = torch.linspace(t0, t1, steps + 1, dtype=torch.float64).to(dtype)
    grid[0] = t0
    grid[-1] = t1
    if steps > 1 and not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(f"{steps} steps on [{t1}, {t0}] are too fine for {dtype}")
    return grid.to(device) if device is not None else grid


def _rk4_classic_step(
    func: Callable, t0: torch.Tensor, t1: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    dt = t1 - t0
    half = dt * 0.5
    k1 = func(t0, y)
    k2 = func(t0 + half, y + half * k1)
    k3 = func(t0 + half, y + half * k2)
    k4 = func(t1, y + dt * k3)
    return y + (k1 + 2 * (k2 + k3) + k4) * (dt / 6)


def _segment(
    func: Callable, method: str, y: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor
) -> torch.Tensor:
    """One fixed step from ``ta`` to ``tb`` (same arithmetic as the full-grid odeint call)."""
    if method == "rk4-classic":
        return _rk4_classic_step(func, ta, tb, y)
    return odeint(func, y, torch.stack([ta, tb]), method=method)[-1]


def solve(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    *,
    method: str = "rk4",
    steps: int | None = None,
    step_size: float | None = None,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    return_trajectory: bool = False,
    checkpoint: bool | str = False,
) -> ODESolution:
    """Integrate ``dy/dt = func(t, y)`` from ``y(t0) = y0`` down to t = 1.

    Fixed-step methods pass the whole :func:`time_grid` to ``torchdiffeq.odeint`` (so NFE is
    exactly steps x stages). ``dopri5`` integrates [t0, 1] adaptively with ``rtol``/``atol``
    (``steps``/``step_size`` then only choose where the trajectory is reported).
    Activation checkpointing (results identical to the plain path, differentiable, only active
    while grad is enabled): ``checkpoint=True`` or ``"step"`` (fixed-step only) wraps every
    solver step in ``torch.utils.checkpoint``: backward recomputes one step at a time (peak memory
    ~ one step's stages, i.e. 4 evaluations for rk4); ``"eval"`` wraps every function
    evaluation (peak ~ one evaluation plus one image per evaluation; any method), the choice for
    big backbones such as the paper RDN.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose from {list(METHODS)}")
    if checkpoint not in (False, True, "step", "eval", None):
        raise ValueError(f"checkpoint must be False, True, 'step' or 'eval', got {checkpoint!r}")
    counted = _Counted(func)
    rhs: Callable = counted
    if checkpoint == "eval":
        checkpoint = False
        if torch.is_grad_enabled():

            def rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return _checkpoint(counted, t, y, use_reentrant=False)

    grid = time_grid(t0, steps=steps, step_size=step_size, dtype=y0.dtype, device=y0.device)
    traj: torch.Tensor | None = None
    if len(grid) == 1:
        image = y0
        if return_trajectory:
            traj = y0.unsqueeze(0)
    elif method in ADAPTIVE_METHODS:
        if checkpoint:
            raise ValueError("checkpoint=True needs a fixed-step method, not " + method)
        sol = odeint(rhs, y0, grid, method=method, rtol=rtol, atol=atol)
        image = sol[-1]
        traj = sol if return_trajectory else None
    elif checkpoint or method == "rk4-classic":
        states = [y0]
        y = y0
        for i in range(len(grid) - 1):
            ta, tb = grid[i], grid[i + 1]
            if checkpoint and torch.is_grad_enabled():
                y = _checkpoint(_segment, counted, method, y, ta, tb, use_reentrant=False)
            else:
                y = _segment(rhs, method, y, ta, tb)
            if return_trajectory:
                states.append(y)
        image = y
        traj = torch.stack(states) if return_trajectory else None
    else:
        sol = odeint(rhs, y0, grid, method=method)
        image = sol[-1]
        traj = sol if return_trajectory else None
    return ODESolution(image=image, nfe=counted.calls, times=grid, trajectory=traj)


def safe_overlap(
    receptive_radius: int,
    t0: float,
    method: str = "rk4",
    steps: int | None = None,
    step_size: float | None = None,
) -> int:
    """Tile overlap that makes :func:`solve_tiled` exactly equal to the untiled solve.

    Each function evaluation lets a zero-padded tile border leak ``receptive_radius`` pixels
    further in, so the overlap must be ``>= receptive_radius x NFE`` (fixed-step methods only;
    adaptive ones choose different steps per tile and are never exactly equal). In practice the
    leak decays quickly and a much smaller overlap is visually indistinguishable.
    """
    if method not in FIXED_METHODS:
        raise ValueError(f"no exact overlap for adaptive method {method!r}")
    n = len(time_grid(t0, steps=steps, step_size=step_size, dtype=torch.float64)) - 1
    return int(receptive_radius) * n * FIXED_METHODS[method]


def _tile_starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def solve_tiled(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    *,
    tile: int,
    overlap: int,
    **solve_opts,
) -> ODESolution:
    """:func:`solve` on overlapping tiles of ``y0`` (B, C, H, W), stitching the tile centres.

    The image is cut into a grid of ``tile x tile`` *cores* (the last row/column may be
    smaller); each core is solved together with ``overlap`` pixels of context on every side
    (clipped at the image border) and only the core is kept. The result equals the untiled
    solve (up to float rounding) when ``overlap >= safe_overlap(...)`` = receptive radius x NFE.
    ``nfe`` is that of one tile (per pixel); trajectories are stitched too when requested.
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"need tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    h, w = y0.shape[-2:]
    if tile >= h and tile >= w:
        return solve(func, y0, t0, **solve_opts)
    out: torch.Tensor | None = None
    traj: torch.Tensor | None = None
    nfe = 0
    times = None
    for top in _tile_starts(h, tile):
        bottom = min(top + tile, h)
        a, b = max(top - overlap, 0), min(bottom + overlap, h)
        for left in _tile_starts(w, tile):
            right = min(left + tile, w)
            c, d = max(left - overlap, 0), min(right + overlap, w)
            sol = solve(func, y0[..., a:b, c:d], t0, **solve_opts)
            nfe = max(nfe, sol.nfe)
            times = sol.times
            core = (slice(top - a, bottom - a), slice(left - c, right - c))
            if out is None:
                out = y0.new_empty(y0.shape)
            out[..., top:bottom, left:right] = sol.image[..., core[0], core[1]]
            if sol.trajectory is not None:
                if traj is None:
                    traj = y0.new_empty((sol.trajectory.shape[0], *y0.shape))
                traj[..., top:bottom, left:right] = sol.trajectory[..., core[0], core[1]]
    assert out is not None and times is not None
    return ODESolution(image=out, nfe=nfe, times=times, trajectory=traj)
