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
* ``path-step`` (beyond the paper, 1 evaluation per step) steps along the degradation path of a
  *predicted HR image*: ``func(t, I)`` returns g ~ HR (not dI/dt) and a step from ``ta`` to ``tb``
  is ``I - P_ta(g) + P_tb(g)`` with ``P_t = path_point(., t, pad=0)`` (shrink by 1/t, enlarge
  back, LR grid anchored at pixel (0, 0) as the evaluation's LR is). This is the increment of
  dI/dt = d/dt P_t(g) over the step with g frozen, taken exactly; with g = HR and
  ``I(t0) = P_t0(HR)`` every state is ``P_t(HR)`` (cold-diffusion-style sampling). A single step
  from t0 to 1 gives ``g + (I(t0) - P_t0(g))``: the prediction plus its back-projection residual.
* ``dopri5`` is adaptive (torchdiffeq, ``rtol``/``atol``); its step sizes are shared across the
  batch, so results may depend on the batch composition.
* Methods are looked up in the registry of :mod:`odesr.solvers` (a new fixed-step method is one
  step function registered there, see its docstring).
* All times are tensors of the state's dtype (float32 normally): the grid's first point is
  ``t0`` in that dtype and its last is exactly ``1.0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from odesr.degrade import path_point
from odesr.nets import CONV_MEMORY_FORMAT, grid_offset_planes, with_t_plane
from odesr.solvers import SOLVERS, is_fixed, solver, stages

__all__ = [
    "ODEFunc",
    "ODESolution",
    "FIXED_METHODS",
    "PATH_STEP",
    "ADAPTIVE_METHODS",
    "METHODS",
    "SolverSettings",
    "DEFAULT_SOLVER",
    "SOLVER_GRIDS",
    "grid_options",
    "time_grid",
    "num_steps",
    "solve",
    "safe_overlap",
    "MAX_STEPS",
    "rk4_classic_step",
    "path_step",
]

# bound on fixed solver steps from t0 to 1 (1000 rk4 steps = 4000 network evaluations per image;
# the paper's step 0.1 takes 30 at x4): a step size of 1e-9 is refused instead of running forever
MAX_STEPS = 1000

# The methods are registered in odesr.solvers (built-in ones there, others with
# register_solver or the odesr.solvers entry-point group). The names below are the built-in ones,
# kept for callers that import them; lookups go through the registry.
# stages (function evaluations) per step of each built-in fixed-step method
FIXED_METHODS: dict[str, int] = {n: s.stages for n, s in SOLVERS.items() if s.stages is not None}
PATH_STEP = "path-step"  # func predicts HR, not dI/dt (module docstring)
ADAPTIVE_METHODS: tuple[str, ...] = tuple(n for n, s in SOLVERS.items() if s.stages is None)
METHODS: tuple[str, ...] = (*FIXED_METHODS, *ADAPTIVE_METHODS)
# Named solver grids (how fixed steps cover [1, t0]); pass ``grid=NAME`` wherever solver options
# go. ``one-step``: what a bare ``odeint(f, I, [t0, 1], method=...)`` does (one step, e.g. 4 NFE
# for rk4 at every scale; the paper profile's default); ``h0.1`` / ``h0.25``: steps of at most
# 0.1 / 0.25 in t (up to 30 / 12 steps at x4).
SOLVER_GRIDS: dict[str, dict[str, float | int | None]] = {
    "one-step": {"steps": 1, "step_size": None},
    "h0.1": {"steps": None, "step_size": 0.1},
    "h0.25": {"steps": None, "step_size": 0.25},
}


def grid_options(opts: dict) -> dict:
    """``opts`` with a ``grid`` name (see :data:`SOLVER_GRIDS`) replaced by its ``steps`` and
    ``step_size``; a copy. Giving ``grid`` together with ``steps`` or ``step_size`` is an error."""
    out = dict(opts)
    name = out.pop("grid", None)
    if name is None:
        return out
    if name not in SOLVER_GRIDS:
        raise ValueError(f"unknown solver grid {name!r}; choose from {list(SOLVER_GRIDS)}")
    if out.get("steps") is not None or out.get("step_size") is not None:
        raise ValueError(f"give either grid ({name!r}) or steps / step_size, not both")
    out.update(SOLVER_GRIDS[name])
    return out


_TORCHDIFFEQ_FIXED = ("euler", "midpoint", "rk4")


def odeint(*args, **kwargs) -> torch.Tensor:
    """``torchdiffeq.odeint``, imported on first use (it pulls in scipy: seconds of start-up
    that a bicubic-only evaluation does not need)."""
    from torchdiffeq import odeint as torchdiffeq_odeint

    return torchdiffeq_odeint(*args, **kwargs)


class ODEFunc(nn.Module):
    """f(t, I) = backbone(cat[I, t-plane]): the ODE right-hand side around a backbone
    (``residual``: ``I + backbone(...)``, the HR predictor g that ``path-step`` steps with).

    Counters: ``nfe`` counts forward evaluations (including recomputations done by activation
    checkpointing during backward); ``nfe_backward`` counts backward passes through the backbone
    (one per forward evaluation that took part in a ``loss.backward()``); :meth:`reset` zeroes
    both. :func:`solve` reports the forward NFE of the solve itself, independent of these totals.
    """

    def __init__(
        self,
        net: nn.Module,
        t_plane: bool | str = "raw",
        residual: bool = False,
        pos: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        # + two planes of the pixel's offset on the LR grid at the current t
        # (odesr.nets.grid_offset_planes); ``grid_origin`` (B, 2) is set per batch by training
        self.pos = pos
        self.grid_origin: torch.Tensor | None = None
        self.residual = residual  # return y + net(...) (an HR predictor for path-step)
        # "raw" / "normalized" (odesr.nets.T_PLANES); True = "raw"; False / None = no plane
        self.t_plane = "raw" if t_plane is True else (t_plane or None)
        self.nfe = 0
        self.nfe_backward = 0

    def reset(self) -> None:
        self.nfe = 0
        self.nfe_backward = 0

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.nfe_backward += 1

    def forward(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        x = with_t_plane(y, t, self.t_plane) if self.t_plane else y
        if self.pos:
            x = torch.cat([x, grid_offset_planes(y, t, self.grid_origin)], dim=1)
        out = self.net(x.contiguous(memory_format=CONV_MEMORY_FORMAT) if x.dim() == 4 else x)
        if self.residual:
            out = y + out
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
    ratio = (float(t0) - t1) / step_size
    if not math.isfinite(ratio):
        raise ValueError(f"step_size {step_size!r} is too small for t0={t0!r}")
    return max(int(math.ceil(ratio - 1e-9)), 0)


def _grid_steps(t0: float, steps: int | None, step_size: float | None, t1: float = 1.0) -> int:
    """Steps of the fixed-step grid from ``t0`` to ``t1``: ``steps`` if given, else
    ``ceil((t0 - t1) / step_size)`` (at least 1), else 1; 0 when ``t0 == t1``."""
    if float(t0) == t1:
        return 0
    if steps is not None:
        return int(steps)
    return 1 if step_size is None else max(num_steps(t0, step_size, t1), 1)


@dataclass(frozen=True)
class SolverSettings:
    """How an ODE model is solved: the one place for solver options, from the CLI to the reports.

    ``method`` (a registered one, :mod:`odesr.solvers`); fixed-step methods take ``steps`` or
    ``step_size`` (``steps`` wins; with neither, one step); ``dopri5`` uses ``rtol``/``atol``
    (``steps``/``step_size`` then only place the reported trajectory points). ``grid`` (in
    :meth:`replace` / :meth:`from_dict`)
    names one of :data:`SOLVER_GRIDS`. The default reads the paper's bare ``odeint(f, I, [t0, 1],
    method='rk4')``: torchdiffeq ``rk4`` (3/8 rule), one step from t0 to 1 (4 NFE at any scale).
    """

    method: str = "rk4"
    steps: int | None = 1
    step_size: float | None = None
    rtol: float = 1e-3
    atol: float = 1e-4

    def __post_init__(self) -> None:
        solver(self.method)  # a registered method, else ValueError naming them
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) < 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.step_size is not None and not (
            math.isfinite(float(self.step_size)) and float(self.step_size) > 0
        ):
            raise ValueError(f"step_size must be a positive finite number, got {self.step_size!r}")
        for name in ("rtol", "atol"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> SolverSettings:
        """Settings from a mapping of field names (missing ones: the defaults); unknown keys are
        refused with a message naming them."""
        return DEFAULT_SOLVER.replace(**dict(options or {}))

    def replace(self, **overrides: Any) -> SolverSettings:
        """These settings with ``overrides`` (``None`` values ignored). Giving ``steps`` clears
        ``step_size`` and vice versa, so the override is the one that counts."""
        overrides = grid_options(overrides)
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown solver option(s) {unknown}; known: {sorted(known)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "steps" in given and "step_size" not in given:
            given["step_size"] = None
        elif "step_size" in given and "steps" not in given:
            given["steps"] = None
        return replace(self, **given)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fixed(self) -> bool:
        """Whether the method is fixed-step (NFE known in advance, exact tiling possible)."""
        return is_fixed(self.method)

    def num_steps(self, t0: float) -> int | None:
        """Fixed steps taken from ``t0`` down to 1 (None for adaptive methods)."""
        return _grid_steps(t0, self.steps, self.step_size) if self.fixed else None

    def nfe(self, t0: float) -> int | None:
        """Function evaluations of a solve from ``t0`` (None for adaptive methods)."""
        steps = self.num_steps(t0)
        return None if steps is None else steps * int(stages(self.method))

    def label(self) -> str:
        """Compact text: ``rk4 h=0.1``, ``euler n=4``, ``dopri5 rtol=0.001 atol=0.0001``."""
        parts = [self.method]
        if self.steps is not None:
            parts.append(f"n={int(self.steps)}")
        elif self.step_size is not None:
            parts.append(f"h={float(self.step_size):g}")
        if not self.fixed:
            parts += [f"rtol={float(self.rtol):g}", f"atol={float(self.atol):g}"]
        return " ".join(parts)

    def columns(self, t0: float) -> dict[str, Any]:
        """Results columns ``solver, steps, step_size, rtol, atol`` of a solve from ``t0``
        (resolved: the step count is recorded even when a step size was given)."""
        return {
            "solver": self.method,
            "steps": self.num_steps(t0) if self.fixed else "",
            "step_size": (self.step_size or "") if self.fixed else "",
            "rtol": "" if self.fixed else self.rtol,
            "atol": "" if self.fixed else self.atol,
        }


DEFAULT_SOLVER = SolverSettings()
SOLVER_COLUMNS = ("solver", "steps", "step_size", "rtol", "atol")
NO_SOLVER_COLUMNS: dict[str, Any] = dict.fromkeys(SOLVER_COLUMNS, "")  # rows of non-ODE models


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
    steps = _grid_steps(t0, steps, step_size, t1)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > MAX_STEPS:
        given = f"steps={steps}" if step_size is None else f"step_size={step_size!r}"
        raise ValueError(
            f"{given} needs {steps} solver steps from t={t0:g} to {t1:g}; the limit is {MAX_STEPS}"
        )
    grid = torch.linspace(t0, t1, steps + 1, dtype=torch.float64).to(dtype)
    grid[0] = t0
    grid[-1] = t1
    if steps > 1 and not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(f"{steps} steps on [{t1}, {t0}] are too fine for {dtype}")
    return grid.to(device) if device is not None else grid


def rk4_classic_step(
    func: Callable, t0: torch.Tensor, t1: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One ``rk4-classic`` step (the classic Runge-Kutta method) from ``t0`` to ``t1``."""
    dt = t1 - t0
    half = dt * 0.5
    k1 = func(t0, y)
    k2 = func(t0 + half, y + half * k1)
    k3 = func(t0 + half, y + half * k2)
    k4 = func(t1, y + dt * k3)
    return y + (k1 + 2 * (k2 + k3) + k4) * (dt / 6)


def path_step(func: Callable, ta: torch.Tensor, tb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One ``path-step`` step: g = func(ta, y) ~ HR, then ``y - P_ta(g) + P_tb(g)``."""
    g = func(ta, y)
    return y - path_point(g, float(ta), pad=0) + path_point(g, float(tb), pad=0)


def _segment(
    func: Callable, method: str, y: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor
) -> torch.Tensor:
    """One fixed step from ``ta`` to ``tb`` (same arithmetic as the full-grid odeint call): the
    method's registered step function, or torchdiffeq's method of that name."""
    step = solver(method).step_function()
    if step is not None:
        return step(func, ta, tb, y)
    return odeint(func, y, torch.stack([ta, tb]), method=method)[-1]


def solve(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    *,
    method: str = DEFAULT_SOLVER.method,
    steps: int | None = None,
    step_size: float | None = None,
    rtol: float = DEFAULT_SOLVER.rtol,
    atol: float = DEFAULT_SOLVER.atol,
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
    big backbones such as the paper RDN. A 4-D state runs in ``CONV_MEMORY_FORMAT``.
    """
    entry = solver(method)  # a registered method, else ValueError naming them
    if checkpoint not in (False, True, "step", "eval", None):
        raise ValueError(f"checkpoint must be False, True, 'step' or 'eval', got {checkpoint!r}")
    counted = _Counted(func)
    rhs = _checkpointed_rhs(counted) if checkpoint == "eval" else counted
    per_step = checkpoint in (True, "step")
    if y0.dim() == 4:
        y0 = y0.contiguous(memory_format=CONV_MEMORY_FORMAT)
    grid = time_grid(t0, steps=steps, step_size=step_size, dtype=y0.dtype, device=y0.device)
    if len(grid) == 1:
        states = y0.unsqueeze(0)
    elif entry.adaptive:
        if per_step:
            raise ValueError("checkpoint=True needs a fixed-step method, not " + method)
        states = odeint(rhs, y0, grid, method=method, rtol=rtol, atol=atol)
    elif per_step or entry.step is not None:
        states = _stepwise(counted, rhs, method, y0, grid, per_step, return_trajectory)
    else:
        states = odeint(rhs, y0, grid, method=method)
    traj = states if return_trajectory else None
    return ODESolution(image=states[-1], nfe=counted.calls, times=grid, trajectory=traj)


def _checkpointed_rhs(counted: _Counted) -> Callable:
    """``counted`` with every evaluation wrapped in activation checkpointing (while grad is on)."""
    if not torch.is_grad_enabled():
        return counted

    def rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _checkpoint(counted, t, y, use_reentrant=False)

    return rhs


def _stepwise(
    counted: _Counted,
    rhs: Callable,
    method: str,
    y0: torch.Tensor,
    grid: torch.Tensor,
    per_step: bool,
    keep_all: bool,
) -> torch.Tensor:
    """Step through ``grid`` one segment at a time (``per_step``: each step checkpointed);
    returns the states, all of them (``keep_all``) or the last one only, stacked."""
    states = [y0]
    y = y0
    for ta, tb in zip(grid[:-1], grid[1:], strict=True):
        if per_step and torch.is_grad_enabled():
            y = _checkpoint(_segment, counted, method, y, ta, tb, use_reentrant=False)
        else:
            y = _segment(rhs, method, y, ta, tb)
        if keep_all:
            states.append(y)
    return torch.stack(states) if keep_all else y.unsqueeze(0)


def safe_overlap(
    receptive_radius: int,
    t0: float,
    method: str = DEFAULT_SOLVER.method,
    steps: int | None = None,
    step_size: float | None = None,
) -> int:
    """Tile overlap that makes a tiled solve (:func:`odesr.tiling.run_tiled`) exactly equal to
    the untiled one.

    Each function evaluation lets a zero-padded tile border leak ``receptive_radius`` pixels
    further in, so the overlap must be ``>= receptive_radius x NFE`` (fixed-step methods only;
    adaptive ones choose different steps per tile and are never exactly equal). In practice the
    leak decays quickly and a much smaller overlap is visually indistinguishable.
    """
    settings = SolverSettings(method, steps, step_size)
    nfe = settings.nfe(t0)
    if nfe is None:
        raise ValueError(f"no exact overlap for adaptive method {method!r}")
    return int(receptive_radius) * nfe
