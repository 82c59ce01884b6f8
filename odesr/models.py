"""Model registry, the ODE super-resolution model and checkpoints (LIIF-style API).

Every model is an ``nn.Module`` (subclass of :class:`SRModel`) with

* ``spec``: a JSON-able dict ``{"name": ..., **kwargs}``; ``build(model.spec)`` rebuilds it;
* ``input_kind``: ``"upscaled"`` (``forward`` takes I(t0), the bicubic image at the output size)
  or ``"lr"`` (``forward`` takes the LR image and returns ``size``);
* ``forward(x, scale, size=None, **opts)``: the differentiable pass used for training;
* ``super_resolve(lr, scale, size, **opts) -> SRResult``: inference (no grad) from an LR image
  (B, 3, h, w) to exactly ``size`` = (H, W). Outputs are not clipped or quantised.

Registered names: ``vdsr-ode``, ``rdn-ode`` (this file), ``bicubic``, ``vdsr+t``, ``rdn+t``,
``meta-rdn``, ``vdsr-fixed``, ``rdn-fixed`` (package ``baselines``, loaded on import).
Backbone sizes: ``preset`` ('paper', 'cpu', 'smoke') plus ``net`` overrides, stored resolved in
the spec so a checkpoint never depends on the preset table.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from odesr.degrade import upscale
from odesr.nets import build_backbone, preset
from odesr.ode import FIXED_METHODS, METHODS, ODEFunc, ODESolution, solve, solve_tiled
from odesr.resize import output_size

__all__ = [
    "MODELS",
    "SRModel",
    "SRResult",
    "ODESR",
    "register",
    "build",
    "save_checkpoint",
    "load",
    "load_checkpoint",
    "default_size",
    "resolve_net",
    "CHECKPOINT_FORMAT",
]

MODELS: dict[str, Callable[..., nn.Module]] = {}
CHECKPOINT_FORMAT = "odesr-checkpoint-v1"


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``MODELS[name] = constructor`` (the constructor takes the spec's kwargs)."""

    def deco(ctor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS and MODELS[name] is not ctor:
            raise ValueError(f"model name {name!r} is already registered")
        MODELS[name] = ctor
        return ctor

    return deco


@dataclass
class SRResult:
    """Inference result: ``image`` (B, 3, H, W), not quantised; ``nfe`` backbone evaluations;
    ``trajectory`` (T, B, 3, H, W) with ``times`` (T,) for ODE models when requested."""

    image: torch.Tensor
    nfe: int
    trajectory: torch.Tensor | None = None
    times: torch.Tensor | None = None


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
    """Base class: ``spec``, ``input_kind`` and a default ``super_resolve``."""

    input_kind: str = "upscaled"
    nfe_per_call: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.spec: dict[str, Any] = {}

    @torch.no_grad()
    def super_resolve(
        self, lr: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> SRResult:
        size = tuple(size) if size is not None else default_size(lr, scale)
        if self.input_kind == "upscaled":
            x = upscale(lr, scale, size)
            return SRResult(self(x, scale, size, **opts), self.nfe_per_call)
        return SRResult(self(lr, scale, size, **opts), self.nfe_per_call)


class ODESR(SRModel):
    """The paper's method: solve dI/dt = f(I, t) from I(t0) (bicubic) to I(1), f a VDSR or RDN
    with a t plane as 4th input channel (registered as ``vdsr-ode`` and ``rdn-ode``).

    Solver defaults (stored in the spec, overridable per call): ``method='rk4'`` (torchdiffeq's
    RK4 = 3/8 rule, as in the paper) with ``step_size=0.1`` -> ``ceil((t0 - 1) / 0.1)`` steps,
    i.e. one step per training-scale stride (the paper does not state its step count; note that a
    bare ``odeint(f, I, [t0, 1], method='rk4')`` would take a single step -- pass ``steps=1`` for
    that). ``steps`` (if set) overrides ``step_size``.
    """

    input_kind = "upscaled"

    def __init__(
        self,
        backbone: str = "vdsr",
        preset: str = "paper",
        net: dict | None = None,
        method: str = "rk4",
        steps: int | None = None,
        step_size: float | None = 0.1,
        rtol: float = 1e-3,
        atol: float = 1e-4,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if method not in METHODS:
            raise ValueError(f"unknown ODE method {method!r}; choose from {list(METHODS)}")
        net_kwargs = resolve_net(backbone, preset, net, in_ch=4, out_ch=3)
        self.func = ODEFunc(build_backbone(backbone, None, **net_kwargs))
        self.spec = {
            "name": f"{backbone}-ode",
            "preset": preset,
            "net": net_kwargs,
            "method": method,
            "steps": steps,
            "step_size": step_size,
            "rtol": rtol,
            "atol": atol,
        }

    def solver_options(self, **overrides: Any) -> dict[str, Any]:
        """The spec's solver defaults with per-call ``overrides`` (``None`` values ignored)."""
        opts = {k: self.spec[k] for k in ("method", "steps", "step_size", "rtol", "atol")}
        given = {k: v for k, v in overrides.items() if v is not None}
        if "steps" in given:
            opts["step_size"] = None
        elif "step_size" in given:
            opts["steps"] = None
        opts.update(given)
        return opts

    def solve(
        self,
        x: torch.Tensor,
        scale: float,
        *,
        tile: int | None = None,
        overlap: int = 32,
        **opts: Any,
    ) -> ODESolution:
        """Solve from ``x`` = I(scale) to t = 1. ``opts``: method, steps, step_size, rtol, atol,
        checkpoint, return_trajectory. ``tile``: see :func:`odesr.ode.solve_tiled`."""
        extra = {k: opts.pop(k) for k in ("checkpoint", "return_trajectory") if k in opts}
        kwargs = {**self.solver_options(**opts), **extra}
        if tile is not None:
            return solve_tiled(self.func, x, float(scale), tile=tile, overlap=overlap, **kwargs)
        return solve(self.func, x, float(scale), **kwargs)

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """Differentiable solve: ``x`` = I(t0) (B, 3, H, W) with t0 = ``scale`` -> I(1).

        ``opts``: ``method``, ``steps``, ``step_size``, ``rtol``, ``atol`` (default: the spec's),
        ``checkpoint`` (False / True = per step / ``"eval"`` = per function evaluation; see
        :func:`odesr.ode.solve`), ``tile``/``overlap``. Backbone NFE counters: ``self.func``.
        """
        if size is not None and tuple(size) != tuple(x.shape[-2:]):
            raise ValueError(f"x has size {tuple(x.shape[-2:])} but size={tuple(size)}")
        return self.solve(x, scale, **opts).image

    @torch.no_grad()
    def super_resolve(
        self, lr: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> SRResult:
        size = tuple(size) if size is not None else default_size(lr, scale)
        sol = self.solve(upscale(lr, scale, size), scale, **opts)
        return SRResult(sol.image, sol.nfe, sol.trajectory, sol.times)

    def safe_overlap(self, scale: float, **opts: Any) -> int:
        """Overlap making tiled inference exact for this model and solver settings."""
        o = self.solver_options(**opts)
        if o["method"] not in FIXED_METHODS:
            raise ValueError(f"no exact overlap for adaptive method {o['method']!r}")
        from odesr.ode import safe_overlap

        return safe_overlap(
            self.func.receptive_radius, scale, o["method"], o["steps"], o["step_size"]
        )


@register("vdsr-ode")
def _vdsr_ode(**kwargs: Any) -> ODESR:
    return ODESR(backbone="vdsr", **kwargs)


@register("rdn-ode")
def _rdn_ode(**kwargs: Any) -> ODESR:
    return ODESR(backbone="rdn", **kwargs)


def build(spec: dict[str, Any]) -> nn.Module:
    """Build a model from ``{"name": ..., **kwargs}`` (e.g. a model's own ``spec``)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a model spec is a dict with a 'name', got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    try:
        ctor = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    return ctor(**kwargs)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Write ``{format, spec, state_dict, extra}`` to ``path`` atomically (tmp + os.replace).

    ``extra`` holds anything else to keep (optimizer/scheduler state dicts, step, config); it must
    be plain Python containers, numbers, strings and tensors (loaded with ``weights_only=True``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": model.spec,
        "state_dict": model.state_dict(),
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _kind_matches(model: nn.Module, expected: str | Iterable[str]) -> bool:
    wanted = {expected} if isinstance(expected, str) else set(expected)
    return bool(wanted & {model.spec.get("name"), getattr(model, "input_kind", None)})


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected_kind: str | Iterable[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (from its spec) and return ``(model, extra)``.

    Raises ValueError naming the file when it is unreadable, not an odesr checkpoint, its weights
    do not fit its spec, or (``expected_kind`` given: model name(s) or input kind) the model is of
    another kind. The model is returned in eval mode.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable odesr checkpoint ({exc})") from exc
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or not isinstance(payload.get("spec"), dict)
        or not isinstance(payload.get("state_dict"), dict)
    ):
        raise ValueError(f"{path}: not an odesr checkpoint (missing format/spec/state_dict)")
    try:
        model = build(payload["spec"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: cannot rebuild model from its spec ({exc})") from exc
    if expected_kind is not None and not _kind_matches(model, expected_kind):
        raise ValueError(
            f"{path}: holds a {model.spec.get('name')!r} model ({model.input_kind} input), "
            f"expected {expected_kind!r}"
        )
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored spec ({exc})") from exc
    model.to(map_location).eval()
    return model, payload.get("extra") or {}


def load(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected_kind: str | Iterable[str] | None = None,
) -> nn.Module:
    """The model stored at ``path`` (see :func:`load_checkpoint`), in eval mode."""
    return load_checkpoint(path, map_location, expected_kind)[0]


def _load_builtin() -> None:
    """Register the baselines (they import this module, so load them after it is defined)."""
    for mod in ("baselines.bicubic", "baselines.plus_t", "baselines.meta_rdn", "baselines.fixed"):
        importlib.import_module(mod)


_load_builtin()
