"""The ODE solver registry: every method name :func:`odesr.ode.solve` accepts, its stages per step
and, for methods torchdiffeq does not have, its step function. Torch-free, so ``--help`` texts
list the solvers without importing torch.

Solvers register themselves the way models do (:mod:`odesr.models`):

* fixed-step: ``register_solver(name, stages=k, step="module:function")`` (or as a decorator on
  the step function, ``@register_solver(name, stages=k)``); ``step(func, ta, tb, y)`` returns the
  state at ``tb`` from ``y`` at ``ta`` with ``k`` evaluations of ``func(t, y)``. Without ``step``
  the method is torchdiffeq's own of that name;
* adaptive: ``register_solver(name, adaptive=True)`` (torchdiffeq's method of that name, with
  ``rtol`` / ``atol``);
* other packages declare theirs in the ``odesr.solvers`` entry-point group
  (``name = "package.module:step_function"``, the function carrying ``stages``, or a module that
  registers on import), found on first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from odesr.plugins import load_entry_points

__all__ = [
    "Solver",
    "SOLVERS",
    "ENTRY_POINT_GROUP",
    "register_solver",
    "load_solver_plugins",
    "solver",
    "solver_names",
    "is_fixed",
    "stages",
]

ENTRY_POINT_GROUP = "odesr.solvers"


@dataclass(frozen=True)
class Solver:
    """A registered method: ``stages`` evaluations per step (None: adaptive) and ``step``, the
    step function or its ``"module:function"`` path (None: torchdiffeq's method ``name``)."""

    name: str
    stages: int | None
    step: Callable | str | None = None

    @property
    def adaptive(self) -> bool:
        return self.stages is None

    def step_function(self) -> Callable | None:
        """The step function, imported on first use (None: torchdiffeq runs the method)."""
        if isinstance(self.step, str):
            module, _, attr = self.step.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.step


SOLVERS: dict[str, Solver] = {}


def register_solver(
    name: str,
    stages: int | None = None,
    *,
    adaptive: bool = False,
    step: Callable | str | None = None,
) -> Callable[[Callable], Callable]:
    """Register the method ``name`` (see the module docstring); returns a decorator that registers
    the function it decorates as the step (and returns it unchanged)."""
    if adaptive == (stages is not None):
        raise ValueError(f"solver {name!r}: give stages (fixed-step) or adaptive=True, not both")
    if stages is not None and (isinstance(stages, bool) or int(stages) < 1):
        raise ValueError(f"solver {name!r}: stages must be an integer >= 1, got {stages!r}")

    def add(entry: Solver) -> None:
        if name in SOLVERS and SOLVERS[name] != entry:
            raise ValueError(f"solver name {name!r} is already registered")
        SOLVERS[name] = entry

    add(Solver(name, None if adaptive else int(stages), step))

    def deco(fn: Callable) -> Callable:
        del SOLVERS[name]
        add(Solver(name, None if adaptive else int(stages), fn))
        return fn

    return deco


def load_solver_plugins() -> None:
    """Register the solvers declared in the ``odesr.solvers`` entry-point group (a step function
    not registered by its module is registered under the entry point's name with its ``stages``
    attribute). A plugin that fails to load is skipped with a warning naming it."""
    for ep, obj in load_entry_points(ENTRY_POINT_GROUP, SOLVERS, "solver"):
        if ep.name not in SOLVERS and callable(obj) and getattr(obj, "stages", None):
            register_solver(ep.name, int(obj.stages))(obj)


def solver(name: str) -> Solver:
    """The registered method ``name`` (entry points are scanned once if unknown); ValueError
    naming the known ones otherwise."""
    if name not in SOLVERS:
        load_solver_plugins()
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown ODE method {name!r}; choose from {solver_names()}") from None


def solver_names() -> list[str]:
    """Every method name: the registered ones, fixed-step first, then the names the
    ``odesr.solvers`` entry points declare (not imported: cheap, for help texts)."""
    names = [n for n, s in SOLVERS.items() if not s.adaptive]
    names += [n for n, s in SOLVERS.items() if s.adaptive]
    names += [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in SOLVERS]
    return names


def is_fixed(name: str) -> bool:
    """Whether ``name`` is a registered fixed-step method (False for unknown names)."""
    entry = SOLVERS.get(name)
    if entry is None:
        try:
            entry = solver(name)
        except ValueError:
            return False
    return not entry.adaptive


def stages(name: str) -> int | None:
    """Evaluations per step of ``name`` (None: adaptive)."""
    return solver(name).stages


# The built-in methods (odesr.ode's docstring says what each does).
register_solver("euler", 1)
register_solver("midpoint", 2)
register_solver("rk4", 4)  # torchdiffeq's rk4: the 3/8 rule
register_solver("rk4-classic", 4, step="odesr.ode:rk4_classic_step")
register_solver("path-step", 1, step="odesr.ode:path_step")  # func predicts HR, not dI/dt
register_solver("dopri5", adaptive=True)
