"""Model registry and the ODE super-resolution model (LIIF-style API; checkpoints:
:mod:`odesr.checkpoints`).

Every model is an ``nn.Module`` (subclass of :class:`SRModel`) with

* ``spec``: a JSON-able dict ``{"name": ..., **kwargs}``; ``build(model.spec)`` rebuilds it;
* declared traits (:class:`SRModel`): ``input_kind`` (``"upscaled"``: ``forward`` takes I(t0),
  the bicubic image at the output size; ``"lr"``: it takes the LR image and returns ``size``),
  ``is_ode``, ``supported_scales``, ``receptive_radius``;
* ``forward(x, scale, size=None, **opts)``: the differentiable pass used for training;
* ``super_resolve(lr, scale, size, solver=..., tile=...) -> SRResult``: inference (no grad) from
  an LR image (B, 3, h, w) to exactly ``size`` = (H, W), optionally in tiles. Outputs are not
  clipped or quantised.

Registered names: ``vdsr-ode``, ``rdn-ode`` (this file) and whatever installed packages declare
in the ``odesr.models`` entry-point group (this distribution declares its baselines there:
``bicubic``, ``vdsr+t``, ``rdn+t``, ``meta-rdn``, ``vdsr-fixed``, ``rdn-fixed``).
:func:`odesr.checkpoints.load_model` gets a model by name or checkpoint path.
Backbone sizes: ``preset`` ('paper', 'cpu', 'smoke') plus ``net`` overrides, stored resolved in
the spec so a checkpoint never depends on the preset table.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any, ClassVar

import torch
import torch.nn as nn

from odesr.degrade import upscale
from odesr.nets import backbone_names, build_backbone, preset, t_plane_value
from odesr.ode import (
    DEFAULT_SOLVER,
    PATH_STEP,
    ODEFunc,
    ODESolution,
    SolverSettings,
    safe_overlap,
    solve,
)
from odesr.plugins import load_entry_points
from odesr.resize import output_size
from odesr.tiling import Sink, bicubic_window, run_tiled

__all__ = [
    "set_grid_origin",
    "MODELS",
    "ENTRY_POINT_GROUP",
    "DEFAULT_OVERLAP",
    "ModelError",
    "SRModel",
    "SRResult",
    "ODESR",
    "register",
    "load_plugins",
    "model_class",
    "backbone_of",
    "is_ode",
    "build",
    "MAX_PARAMS",
    "default_size",
    "resolve_net",
]

MODELS: dict[str, Callable[..., nn.Module]] = {}
ENTRY_POINT_GROUP = "odesr.models"
ODE_SUFFIX = "-ode"  # <backbone>-ode: the ODE model on a registered backbone
PREDICTS = ("derivative", "hr")  # what an ODE model's net predicts (ODESR)
DEFAULT_OVERLAP = 32  # tile context when no exact overlap exists (adaptive solvers)


class ModelError(ValueError):
    """A model cannot be found, built or loaded; the message names the model or file."""


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``MODELS[name] = constructor`` (the constructor takes the spec's kwargs).

    Core models register here; other packages declare theirs as entry points of the group
    :data:`ENTRY_POINT_GROUP` (``name = "package.module:Class"``), found by :func:`load_plugins`.
    """

    def deco(ctor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS and MODELS[name] is not ctor:
            raise ValueError(f"model name {name!r} is already registered")
        MODELS[name] = ctor
        return ctor

    return deco


def load_plugins() -> None:
    """Register every model declared in the ``odesr.models`` entry-point group of the installed
    packages (names already registered are kept). A plugin that fails to import is skipped with
    a warning naming it, so one broken package does not disable the others."""
    for ep, ctor in load_entry_points(ENTRY_POINT_GROUP, MODELS, "model", skip=_importing):
        MODELS.setdefault(ep.name, ctor)


def _importing(ep: EntryPoint) -> bool:
    """Whether the plugin's module is being imported right now (it imported this module first:
    its models are found on the next lookup)."""
    spec = getattr(sys.modules.get(ep.module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def model_class(name: str) -> Callable[..., nn.Module]:
    """The registered constructor of ``name`` (entry points are re-scanned once if unknown).
    ``<backbone>-ode`` of any registered backbone (:func:`odesr.nets.register_backbone`) is the
    ODE model on it, registered on first lookup."""
    if name not in MODELS:
        load_plugins()
    if name not in MODELS and name.endswith(ODE_SUFFIX):
        backbone = name[: -len(ODE_SUFFIX)]
        if backbone in backbone_names():
            attrs = {"backbone_name": backbone, "__doc__": f"ODESR on the {backbone} backbone."}
            register(name)(type(f"ODESR_{backbone}", (ODESR,), attrs))
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None


def backbone_of(spec: dict | None) -> str | None:
    """The registered backbone a model spec's network is built on (``backbone_name`` of its
    class, or the spec's own ``backbone``); None for models without one (bicubic)."""
    name = (spec or {}).get("name")
    if not name:
        return None
    return (spec or {}).get("backbone") or getattr(model_class(str(name)), "backbone_name", None)


def is_ode(model: nn.Module | str) -> bool:
    """Whether a model (instance or registered name) is solved as an ODE."""
    if isinstance(model, str):
        return bool(getattr(model_class(model), "is_ode", False))
    return bool(getattr(model, "is_ode", False))


@dataclass
class SRResult:
    """Inference result: ``image`` (B, 3, H, W), not quantised (None when a ``sink`` took the
    tiles); ``nfe`` backbone evaluations per pixel; ``trajectory`` (T, B, 3, H, W) with
    ``times`` (T,) for ODE models when requested."""

    image: torch.Tensor | None
    nfe: int
    trajectory: torch.Tensor | None = None
    times: torch.Tensor | None = None


def set_grid_origin(model: nn.Module, origin: torch.Tensor | None) -> None:
    """Tell a model with position planes (``pos``) where its input's first pixel sits: (B, 2)
    row/column offsets in the frame anchoring the LR grid (training patches), None for whole
    images. A no-op for other models."""
    if not getattr(model, "pos", False):
        return
    holder = getattr(model, "func", model)  # ODE models keep it on their right-hand side
    holder.grid_origin = origin


def default_size(lr: torch.Tensor, scale: float) -> tuple[int, int]:
    """MATLAB output size ``ceil(h * scale), ceil(w * scale)`` of an LR image."""
    return output_size(lr.shape[-2], scale), output_size(lr.shape[-1], scale)


def resolve_net(backbone: str, preset_name: str, net: dict | None, **fixed: Any) -> dict:
    """Backbone kwargs: the preset, then ``net`` overrides, then ``fixed`` (e.g. in_ch)."""
    kwargs = preset(backbone, preset_name)
    kwargs.update(net or {})
    kwargs.update(fixed)
    return kwargs


class SRModel(nn.Module):
    """Base class of every model. What callers need to know is declared, never guessed:

    * ``input_kind``: ``"upscaled"`` (works on I(t0), the bicubic image at the output size, so
      it can run on tiles) or ``"lr"`` (takes the LR image, runs on the whole image);
    * ``is_ode``: solved as an ODE (solver settings, trajectories apply);
    * ``supported_scales``: the scales it is trained for and runs at (None: any scale > 1);
    * ``receptive_radius``: pixels of context one evaluation reads (None: unknown);
    * ``nfe_per_call``: backbone evaluations of one pass (non-ODE models);
    * ``backbone_name``: the registered backbone (:mod:`odesr.nets`) its network is built on
      (None: none, e.g. bicubic); what costs are looked up by.
    """

    input_kind: ClassVar[str] = "upscaled"
    is_ode: ClassVar[bool] = False
    backbone_name: ClassVar[str | None] = None
    nfe_per_call: ClassVar[int] = 1
    supported_scales: tuple[float, ...] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.spec: dict[str, Any] = {}

    @property
    def receptive_radius(self) -> int | None:
        net = getattr(self, "net", None)
        return getattr(net, "receptive_radius", None)

    def solver_settings(self, solver: SolverSettings | dict | None = None) -> SolverSettings | None:
        """Resolved solver settings (ODE models); None for the others."""
        return None

    def restore(
        self, x: torch.Tensor, scale: float, solver: SolverSettings | None, trajectory: bool
    ) -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]:
        """I(t0) window ``x`` -> ``(image, nfe, trajectory, times)`` (``upscaled`` models)."""
        return self(x, scale, tuple(x.shape[-2:])), self.nfe_per_call, None, None

    def exact_overlap(self, scale: float, solver: SolverSettings | None = None) -> int | None:
        """Tile overlap making tiled inference exact: receptive radius x evaluations per pixel
        (None when unknown, e.g. adaptive solvers)."""
        radius = self.receptive_radius
        if radius is None:
            return 0 if self.nfe_per_call == 0 else None
        return int(radius) * self.nfe_per_call

    @torch.no_grad()
    def super_resolve(
        self,
        lr: torch.Tensor,
        scale: float,
        size: tuple[int, int] | None = None,
        *,
        solver: SolverSettings | dict | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        return_trajectory: bool = False,
        sink: Sink | None = None,
        on_tile: Callable[[], None] | None = None,
        **solver_options: Any,
    ) -> SRResult:
        """LR (B, 3, h, w) -> SR of ``size`` (default ``ceil(h * scale)``): the one inference
        path (eval, upscale, the runner).

        ``solver`` / ``solver_options`` (method, steps, step_size, rtol, atol) override the
        model's own settings (ODE models only). ``tile``: side of the tiles the output is
        computed in (``upscaled`` models; None: one piece), each with ``overlap`` pixels of
        context, by default :meth:`exact_overlap` (tiled == untiled) or :data:`DEFAULT_OVERLAP`
        where no exact one exists. ``sink(core, (rows, cols))`` receives finished tiles instead
        of them being kept.
        """
        size = tuple(size) if size is not None else default_size(lr, scale)
        if getattr(self, "pos", False):
            set_grid_origin(self, None)  # whole images: the LR grid starts at pixel 0
            if tile is not None and max(size) > int(tile):
                raise ModelError(
                    f"model {self.spec.get('name')!r} with position planes runs on whole "
                    f"images: no tiles of {tile} (its LR grid is anchored at the image origin)"
                )
            tile = None
        settings = self._resolve_solver(solver, solver_options, return_trajectory)
        if self.input_kind != "upscaled":
            if tile is not None:
                raise ModelError(f"model {self.spec.get('name')!r} takes the LR image: no tiles")
            image = self(lr, scale, size)
            if tuple(image.shape[-2:]) != size:
                raise ModelError(
                    f"model {self.spec.get('name')!r} returned {tuple(image.shape[-2:])}, "
                    f"expected {size} at scale {scale:g}"
                )
            if sink is not None:
                sink(image, (slice(0, size[0]), slice(0, size[1])))
            if on_tile is not None:
                on_tile()
            return SRResult(None if sink is not None else image, self.nfe_per_call)
        if tile is not None and overlap is None:
            exact = self.exact_overlap(scale, settings)
            overlap = DEFAULT_OVERLAP if exact is None else exact

        def window(rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
            if tile is None:
                return upscale(lr, scale, size)
            return bicubic_window(lr, scale, size, rows, cols)

        def restore(x: torch.Tensor):
            return self.restore(x, scale, settings, return_trajectory)

        res = run_tiled(restore, window, size, tile, overlap or 0, sink=sink, on_tile=on_tile)
        return SRResult(res.image, res.nfe, res.trajectory, res.times)

    def _resolve_solver(
        self, solver: SolverSettings | dict | None, options: dict, trajectory: bool
    ) -> SolverSettings | None:
        given = {k: v for k, v in options.items() if v is not None}
        if not self.is_ode and (given or solver or trajectory):
            what = "a trajectory" if trajectory and not (given or solver) else "solver options"
            raise ModelError(
                f"model {self.spec.get('name')!r} is not an ODE model: {what} do not apply"
            )
        if not self.is_ode:
            return None
        return self.solver_settings(self.solver_settings(solver).replace(**given))


class ODESR(SRModel):
    """The paper's method: solve dI/dt = f(I, t) from I(t0) (bicubic) to I(1), f a VDSR or RDN
    with a t plane as 4th input channel (registered as ``vdsr-ode`` and ``rdn-ode``).

    The spec carries the solver the model is evaluated with (``method``, ``steps``,
    ``step_size``, ``rtol``, ``atol``; default :data:`odesr.ode.DEFAULT_SOLVER`: torchdiffeq's
    RK4 = 3/8 rule with ``steps=1``, one step from t0 to 1, 4 NFE at any scale, which is what the
    paper's bare ``odeint(f, I, [t0, 1], method='rk4')`` does; it does not state a step count.
    ``step_size=h`` gives ``ceil((t0 - 1) / h)`` steps instead; ``grid`` names one of
    :data:`odesr.ode.SOLVER_GRIDS`) and ``train_solver``, the one it was trained with (None:
    simulation-free path objective or unknown). Per-call overrides win; ``steps`` (if set)
    overrides ``step_size``. Checkpoints store both, so older ones keep their grid.
    ``t_plane`` (``raw`` | ``normalized``, see :func:`odesr.nets.t_plane_value`; older specs
    have none and mean ``raw``).
    ``predicts``: ``derivative`` (the paper: the net is f ~ dI/dt; older specs have none) or
    ``hr`` (beyond the paper, objective ``hr``: the net is g(I, t) = I + backbone ~ HR and the
    model is solved with ``method: path-step``, see :mod:`odesr.ode`; the two go together).
    A ``path-step`` model runs on whole images only (P_t anchors the LR grid at the image origin,
    which a tile does not share).
    """

    input_kind = "upscaled"
    is_ode = True
    backbone_name: ClassVar[str] = "vdsr"

    def __init__(
        self,
        preset: str = "paper",
        net: dict | None = None,
        method: str = DEFAULT_SOLVER.method,
        steps: int | None = None,  # None and None: DEFAULT_SOLVER's grid
        step_size: float | None = None,
        rtol: float = DEFAULT_SOLVER.rtol,
        atol: float = DEFAULT_SOLVER.atol,
        train_solver: dict | None = None,
        backbone: str | None = None,
        t_plane: str = "raw",
        predicts: str = "derivative",
        pos: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone or self.backbone_name
        solver = DEFAULT_SOLVER.replace(
            method=method, steps=steps, step_size=step_size, rtol=rtol, atol=atol
        )
        if predicts not in PREDICTS:
            raise ValueError(f"predicts must be one of {list(PREDICTS)}, got {predicts!r}")
        self.predicts = predicts
        self._check_method(solver.method)
        if train_solver is not None:
            train_solver = SolverSettings.from_dict(train_solver).as_dict()
        t_plane_value(1.0, t_plane)  # validates the mode
        if not isinstance(pos, bool):
            raise ValueError(f"pos must be true or false, got {pos!r}")
        net_kwargs = resolve_net(self.backbone, preset, net, in_ch=4 + 2 * pos, out_ch=3)
        net = build_backbone(self.backbone, None, **net_kwargs)
        self.func = ODEFunc(net, t_plane=t_plane, residual=predicts == "hr", pos=pos)
        self.pos = pos
        self.spec = {
            "name": f"{self.backbone}-ode",
            "preset": preset,
            "net": net_kwargs,
            "t_plane": t_plane,
            **solver.as_dict(),
            "train_solver": train_solver,
        }
        if predicts != "derivative":  # older specs and the paper's models carry no such key
            self.spec["predicts"] = predicts
        if pos:  # likewise: only position-plane models carry it
            self.spec["pos"] = True

    def _check_method(self, method: str) -> None:
        """``path-step`` steps an HR predictor, every other method integrates a derivative."""
        if (method == PATH_STEP) != (self.predicts == "hr"):
            raise ModelError(
                f"solver {method!r} does not apply to a {self.backbone}-ode model whose net "
                f"predicts {self.predicts!r} (path-step goes with predicts: hr, and only it)"
            )

    @property
    def receptive_radius(self) -> int | None:
        return self.func.receptive_radius

    @property
    def solver(self) -> SolverSettings:
        """The settings this model is evaluated with (from its spec)."""
        return SolverSettings.from_dict({k: self.spec[k] for k in SolverSettings().as_dict()})

    def solver_settings(self, solver: SolverSettings | dict | None = None) -> SolverSettings:
        if not isinstance(solver, SolverSettings):
            solver = self.solver.replace(**dict(solver or {}))
        self._check_method(solver.method)
        return solver

    def super_resolve(
        self, lr: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **kwargs: Any
    ) -> SRResult:
        tile = kwargs.get("tile")
        if tile is not None and self.predicts == "hr":
            if max(size or default_size(lr, scale)) > int(tile):
                raise ModelError(
                    f"{self.spec['name']} with predicts 'hr' (path-step) runs on whole images: "
                    f"no tiles of {tile} (P_t anchors the LR grid at the image origin)"
                )
            kwargs["tile"] = None  # one tile holds the whole output: the same computation
        return super().super_resolve(lr, scale, size, **kwargs)

    def solver_options(self, **overrides: Any) -> dict[str, Any]:
        """The spec's solver settings with per-call ``overrides`` (``None`` values ignored)."""
        return self.solver_settings(self.solver.replace(**overrides)).as_dict()

    def solve(self, x: torch.Tensor, scale: float, **opts: Any) -> ODESolution:
        """Solve from ``x`` = I(scale) to t = 1 (untiled). ``opts``: method, steps, step_size,
        rtol, atol (default: the spec's), checkpoint, return_trajectory."""
        extra = {k: opts.pop(k) for k in ("checkpoint", "return_trajectory") if k in opts}
        kwargs = {**self.solver_options(**opts), **extra}
        return solve(self.func, x, float(scale), **kwargs)

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """Differentiable solve: ``x`` = I(t0) (B, 3, H, W) with t0 = ``scale`` -> I(1).

        ``opts``: ``method``, ``steps``, ``step_size``, ``rtol``, ``atol`` (default: the spec's),
        ``checkpoint`` (False / True = per step / ``"eval"`` = per function evaluation; see
        :func:`odesr.ode.solve`). Backbone NFE counters: ``self.func``.
        """
        if size is not None and tuple(size) != tuple(x.shape[-2:]):
            raise ValueError(f"x has size {tuple(x.shape[-2:])} but size={tuple(size)}")
        return self.solve(x, scale, **opts).image

    def restore(
        self, x: torch.Tensor, scale: float, solver: SolverSettings | None, trajectory: bool
    ) -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None]:
        settings = solver or self.solver
        sol = solve(self.func, x, float(scale), **settings.as_dict(), return_trajectory=trajectory)
        return sol.image, sol.nfe, sol.trajectory, sol.times if trajectory else None

    def exact_overlap(self, scale: float, solver: SolverSettings | None = None) -> int | None:
        settings = solver or self.solver
        radius = self.receptive_radius
        if radius is None or not settings.fixed:
            return None
        return int(radius) * int(settings.nfe(scale))

    def safe_overlap(self, scale: float, **opts: Any) -> int:
        """Overlap making tiled inference exact for this model and solver settings."""
        o = self.solver_options(**opts)
        return safe_overlap(
            self.func.receptive_radius, scale, o["method"], o["steps"], o["step_size"]
        )


@register("vdsr-ode")
class VDSRODE(ODESR):
    backbone_name = "vdsr"


@register("rdn-ode")
class RDNODE(ODESR):
    backbone_name = "rdn"


@contextlib.contextmanager
def compiled_backbone(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Run ``model``'s backbone (``net``; ``func.net`` for ODE models) through
    ``torch.compile(dynamic=True)`` inside the block, then put the plain module back.

    On the 2-core CPU it ran the cpu-profile RDN backbones 1.35x (RDN+t) and 1.5x (RDN-ODE)
    faster and VDSR no faster, PSNRs bit for bit the same for those and within 2e-5 dB for
    Meta-RDN (float rounding of fused kernels; bench/README.md); a process pays the
    compilation once (seconds to a minute; a C++ compiler is needed on the CPU). Models without
    such a backbone (bicubic) run as they are."""
    holder = model.func if isinstance(getattr(model, "func", None), nn.Module) else model
    net = getattr(holder, "net", None)
    if not enabled or not isinstance(net, nn.Module):
        yield
        return
    from torch._dynamo.exc import TorchDynamoException

    holder.net = torch.compile(net, dynamic=True)
    try:
        yield
    except TorchDynamoException as exc:  # e.g. no C++ compiler: one line, not torch's pages
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"--compile: torch.compile failed ({first[:200]}); evaluate without --compile"
        ) from None
    finally:
        holder.net = net


MAX_PARAMS = 200_000_000  # the paper's RDN has 22 M; 200 M float32 weights are 800 MB
MAX_SPEC_INT = 65_536  # any whole number in a spec (widths, depths, block counts, steps)
MAX_SPEC_DEPTH = 6  # nested mappings/lists in a spec (``net``, ``train_solver``: 2)


def _check_spec_values(value: Any, where: str, depth: int = 0) -> None:
    """Refuse spec values that could only exhaust memory or time: deep nesting, long lists,
    whole numbers beyond :data:`MAX_SPEC_INT`, non-finite numbers."""
    if depth > MAX_SPEC_DEPTH:
        raise ModelError(f"model spec: {where} is nested more than {MAX_SPEC_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_spec_values(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list | tuple):
        if len(value) > 64:
            raise ModelError(f"model spec: {where} holds {len(value)} items (at most 64)")
        for k, item in enumerate(value):
            _check_spec_values(item, f"{where}[{k}]", depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_SPEC_INT:
            raise ModelError(
                f"model spec: {where}={value} is out of range (at most {MAX_SPEC_INT})"
            )
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ModelError(f"model spec: {where}={value} is not a finite number")


def build(spec: dict[str, Any]) -> nn.Module:
    """Build a model from ``{"name": ..., **kwargs}`` (e.g. a model's own ``spec``).

    The spec is checked before any weight is allocated: values bounded
    (:data:`MAX_SPEC_INT`, :data:`MAX_SPEC_DEPTH`), keys the model (and its ``net``) takes, and
    the parameter count, counted on the ``meta`` device, at most :data:`MAX_PARAMS`.
    :class:`ModelError` (a ValueError) names the key or value."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a model spec is a dict with a 'name', got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    _check_spec_values(kwargs, "")
    ctor = model_class(name)
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in ctor(**kwargs).parameters())
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelError(
            f"model spec {name!r} cannot be built ({exc.__class__.__name__}: {text})"
        ) from None
    if params > MAX_PARAMS:
        raise ModelError(
            f"model spec {name!r}: {params} parameters, more than the limit of {MAX_PARAMS}"
        )
    return ctor(**kwargs)


load_plugins()
