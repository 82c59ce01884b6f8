"""Backbone CNNs: VDSR (Kim et al. 2016) and RDN (Zhang et al. 2018).

Conventions:

* Inputs are float tensors ``(B, in_ch, H, W)``. For the ODE method and the ``+t`` baselines
  ``in_ch = 4``: RGB plus a constant plane holding ``t`` (paper section 4.1); the caller builds
  that plane (see :func:`with_t_plane`).
* VDSR returns the *residual* (the caller adds it to its input); same spatial size as the input.
* RDN returns an image of ``out_ch`` channels at the input size (``upscale=None``), at ``upscale``
  times the input size (``upscale`` in 2/3/4, sub-pixel upsampler as in the RDN paper), or its
  ``G0``-channel global features (``upsampler=False``, used by Meta-RDN).
* ``t`` plane value (:data:`T_PLANES`): ``raw`` holds t itself (t in [1.1, 4] beside pixels in
  [0, 1]; what older checkpoints used), ``normalized`` holds ``(t - 1) / 3`` (0 at t = 1, 1 at
  t = 4). An affine map of the plane is absorbed by the first conv: it changes optimisation, not
  the model class.
* Initialisation (``init``): ``he`` = Kaiming normal, fan_in, ReLU gain, zero biases (as in
  VDSR; the cpu recipe 2); ``torch`` (default, what recipe-1 checkpoints were trained with) =
  PyTorch's default. ``zero_init_last`` zeroes the output conv so a residual predictor starts at
  exactly its input.
* ``receptive_radius``: how many pixels away from a pixel an output can look (number of 3x3 convs
  on the longest path); used to choose a safe overlap for tiled inference.
* Presets per backbone: ``paper`` (as published), ``cpu`` (small, trains quickly on a laptop CPU),
  ``smoke`` (tiny, for tests). :func:`preset` returns the constructor keyword arguments.
* Registry: backbones register themselves with :func:`register_backbone` (name, presets) as
  models do in :mod:`odesr.models`; other packages declare theirs in the ``odesr.backbones``
  entry-point group. A registered backbone ``b`` is all the ODE model ``b-ode`` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from odesr.plugins import load_entry_points

__all__ = [
    "VDSR",
    "RDN",
    "RDB",
    "PRESETS",
    "BACKBONES",
    "ENTRY_POINT_GROUP",
    "register_backbone",
    "load_backbone_plugins",
    "backbone_names",
    "backbone_class",
    "preset",
    "build_backbone",
    "with_t_plane",
    "grid_offset_planes",
    "t_plane_value",
    "T_PLANES",
    "INITS",
    "init_convs",
    "count_params",
]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {}  # backbone -> preset name -> kwargs
BACKBONES: dict[str, type[nn.Module]] = {}  # backbone name -> class (register_backbone)
ENTRY_POINT_GROUP = "odesr.backbones"


def register_backbone(
    name: str, presets: dict[str, dict[str, Any]] | None = None
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a backbone as ``name`` with its ``presets`` (preset name ->
    constructor kwargs; ``paper``, ``cpu``, ``smoke`` by convention).

    A backbone is an ``nn.Module`` class taking its preset kwargs plus ``in_ch`` and ``out_ch``
    (keyword) and mapping (B, in_ch, H, W) to (B, out_ch, H, W); ``receptive_radius`` (pixels)
    makes tiled inference exact. Registering one also makes the ODE model ``<name>-ode``
    (:func:`odesr.models.model_class`). Other packages declare theirs as entry points of the group
    :data:`ENTRY_POINT_GROUP` (``name = "package.module:Class"``), found on first lookup."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in BACKBONES and BACKBONES[name] is not cls:
            raise ValueError(f"backbone name {name!r} is already registered")
        BACKBONES[name] = cls
        PRESETS[name] = {k: dict(v) for k, v in (presets or {}).items()}
        return cls

    return deco


def load_backbone_plugins() -> None:
    """Register the backbones declared in the ``odesr.backbones`` entry-point group (importing a
    plugin registers it; a class not registered by its module is registered under the entry
    point's name with its ``presets`` attribute). A plugin that fails to load is skipped with a
    warning naming it."""
    for ep, obj in load_entry_points(ENTRY_POINT_GROUP, BACKBONES, "backbone"):
        if ep.name not in BACKBONES and isinstance(obj, type):
            register_backbone(ep.name, getattr(obj, "presets", None))(obj)


def backbone_names() -> list[str]:
    """The registered backbones, plugins included, sorted."""
    load_backbone_plugins()
    return sorted(BACKBONES)


def backbone_class(name: str) -> type[nn.Module]:
    """The registered class of backbone ``name`` (entry points are scanned once if unknown)."""
    if name not in BACKBONES:
        load_backbone_plugins()
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None


def preset(backbone: str, name: str) -> dict:
    """Constructor kwargs (a fresh dict) of the preset ``name`` ('paper', 'cpu', 'smoke')."""
    backbone_class(backbone)
    table = PRESETS[backbone]
    try:
        return dict(table[name])
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r} for {backbone}; choose from {sorted(table)}"
        ) from None


T_PLANES = ("raw", "normalized")
INITS = ("he", "torch")


# Memory layout of a backbone's input (the ODE's state, a +t net's input): conv backbones on the
# CPU (oneDNN) run about 1.3-2x faster on channels_last inputs (same results to float rounding;
# tested to 1e-3 dB).
CONV_MEMORY_FORMAT = torch.channels_last


def t_plane_value(t: float | torch.Tensor, mode: str = "raw") -> float | torch.Tensor:
    """The t plane's value at scale ``t``: ``t`` (``raw``) or ``(t - 1) / 3`` (``normalized``)."""
    if mode == "raw":
        return t
    if mode == "normalized":
        return (t - 1.0) / 3.0
    raise ValueError(f"unknown t_plane {mode!r}; choose from {list(T_PLANES)}")


def grid_offset_planes(
    x: torch.Tensor, t: float | torch.Tensor, origin: torch.Tensor | None = None
) -> torch.Tensor:
    """Where each pixel of ``x`` (B, C, H, W) sits on the LR sampling grid at scale ``t``: two
    planes (rows, columns) holding ``frac(u) - 0.5`` in [-0.5, 0.5), where
    ``u = (y + 0.5) / t - 0.5`` is the LR coordinate (0-based, MATLAB ``imresize``'s mapping)
    that output pixel ``y`` samples; 0 at -0.5 means on an LR sample. ``t``: a number or a (B,)
    tensor. ``origin`` (B, 2) integers: the row and column of ``x``'s first pixel in the frame
    whose corner anchors the LR grid (a training patch's offset in its crop; None: 0, a whole
    image). This is the per-axis offset Meta-SR's position projection takes."""
    b, _, h, w = x.shape
    t64 = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1).expand(b, 1)
    if origin is None:
        origin = torch.zeros(b, 2, dtype=torch.float64)
    origin = origin.to(torch.float64).reshape(b, 2)
    rows = origin[:, :1] + torch.arange(h, dtype=torch.float64)  # (B, H)
    cols = origin[:, 1:] + torch.arange(w, dtype=torch.float64)  # (B, W)
    u_r = (rows + 0.5) / t64 - 0.5
    u_c = (cols + 0.5) / t64 - 0.5
    f_r = (u_r - torch.floor(u_r) - 0.5).to(device=x.device, dtype=x.dtype)
    f_c = (u_c - torch.floor(u_c) - 0.5).to(device=x.device, dtype=x.dtype)
    return torch.stack([f_r[:, :, None].expand(b, h, w), f_c[:, None, :].expand(b, h, w)], dim=1)


def with_t_plane(x: torch.Tensor, t: float | torch.Tensor, mode: str = "raw") -> torch.Tensor:
    """Concatenate a constant plane holding ``t_plane_value(t, mode)`` to ``x`` (B, C, H, W)
    -> (B, C+1, H, W). ``t`` may be a number, a 0-d tensor, or a (B,) tensor (one per sample).
    """
    t = t_plane_value(t, mode)
    b, _, h, w = x.shape
    if torch.is_tensor(t):
        t = t.to(device=x.device, dtype=x.dtype)
        plane = t.reshape(-1, 1, 1, 1).expand(b, 1, h, w)
    else:
        plane = x.new_full((b, 1, h, w), float(t))
    return torch.cat([x, plane], dim=1)


def count_params(module: nn.Module) -> int:
    """Number of parameters (works on the 'meta' device too)."""
    return sum(p.numel() for p in module.parameters())


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def init_convs(module: nn.Module, init: str, last: nn.Conv2d | None = None) -> None:
    """Initialise every conv of ``module`` per ``init`` (see module docstring); zero ``last``."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {list(INITS)}")
    if init == "he":
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    if last is not None:
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)


@register_backbone(
    "vdsr",
    presets={
        "paper": {"depth": 20, "width": 64},
        "cpu": {"depth": 8, "width": 32},
        "smoke": {"depth": 3, "width": 8},
    },
)
class VDSR(nn.Module):
    """VDSR: ``depth`` 3x3 convs (``width`` channels, ReLU between); returns the residual."""

    def __init__(
        self,
        depth: int = 20,
        width: int = 64,
        in_ch: int = 4,
        out_ch: int = 3,
        zero_init_last: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"VDSR needs depth >= 2, got {depth}")
        layers: list[nn.Module] = [_conv3(in_ch, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [_conv3(width, width), nn.ReLU(inplace=True)]
        last = _conv3(width, out_ch)
        layers.append(last)
        self.body = nn.Sequential(*layers)
        init_convs(self, init, last if zero_init_last else None)
        self.in_ch, self.out_ch = in_ch, out_ch
        self.receptive_radius = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RDB(nn.Module):
    """Residual dense block: C densely connected conv+ReLU layers, 1x1 local fusion, local skip."""

    def __init__(self, G0: int, G: int, C: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(_conv3(G0 + c * G, G), nn.ReLU(inplace=True)) for c in range(C)
        )
        self.lff = nn.Conv2d(G0 + C * G, G0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, dim=1)))
        return x + self.lff(torch.cat(feats, dim=1))


@register_backbone(
    "rdn",
    presets={
        "paper": {"D": 16, "C": 8, "G0": 64, "G": 64},
        "cpu": {"D": 4, "C": 3, "G0": 32, "G": 16},
        "smoke": {"D": 1, "C": 2, "G0": 8, "G": 8},
    },
)
class RDN(nn.Module):
    """Residual dense network (D blocks of C layers, G0 / G channels).

    Shallow feature extraction (two 3x3 convs), D RDBs, global feature fusion (1x1 over the
    concatenated block outputs then 3x3), global residual from the first shallow features, then:
    ``upscale=None`` -> 3x3 conv to ``out_ch`` (same size; the ODE / +t variant, which removes the
    upsampler); ``upscale`` in {2, 3, 4} -> sub-pixel upsampler then 3x3 conv (fixed-scale RDN);
    ``upsampler=False`` -> the ``G0``-channel features (Meta-RDN).
    """

    def __init__(
        self,
        D: int = 16,
        C: int = 8,
        G0: int = 64,
        G: int = 64,
        in_ch: int = 4,
        out_ch: int = 3,
        upscale: int | None = None,
        upsampler: bool = True,
        zero_init_last: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        self.sfe1 = _conv3(in_ch, G0)
        self.sfe2 = _conv3(G0, G0)
        self.rdbs = nn.ModuleList(RDB(G0, G, C) for _ in range(D))
        self.gff = nn.Sequential(nn.Conv2d(D * G0, G0, 1), _conv3(G0, G0))
        self.in_ch = in_ch
        self.upscale = upscale
        radius = 2 + D * C + 1
        if not upsampler:
            if upscale is not None:
                raise ValueError("upscale must be None when upsampler=False")
            self.tail: nn.Module = nn.Identity()
            self.out_ch = G0
        else:
            if upscale is None:
                self.tail = _conv3(G0, out_ch)
                radius += 1
            elif upscale in (2, 3):
                self.tail = nn.Sequential(
                    _conv3(G0, G * upscale * upscale), nn.PixelShuffle(upscale), _conv3(G, out_ch)
                )
            elif upscale == 4:
                self.tail = nn.Sequential(
                    _conv3(G0, G * 4),
                    nn.PixelShuffle(2),
                    _conv3(G, G * 4),
                    nn.PixelShuffle(2),
                    _conv3(G, out_ch),
                )
            else:
                raise ValueError(f"RDN upscale must be None, 2, 3 or 4, got {upscale!r}")
            self.out_ch = out_ch
        last = None
        if zero_init_last and upsampler:
            last = self.tail if isinstance(self.tail, nn.Conv2d) else self.tail[-1]
        init_convs(self, init, last)
        # in input pixels; only meaningful for same-size outputs
        self.receptive_radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.sfe1(x)
        h = self.sfe2(f1)
        outs = []
        for block in self.rdbs:
            h = block(h)
            outs.append(h)
        h = self.gff(torch.cat(outs, dim=1)) + f1
        return self.tail(h)


def build_backbone(backbone: str, preset_name: str | None = "paper", **overrides) -> nn.Module:
    """Build the registered ``backbone`` ('vdsr', 'rdn', ...) from a preset, with keyword
    overrides on top."""
    cls = backbone_class(backbone)
    kwargs = preset(backbone, preset_name) if preset_name is not None else {}
    kwargs.update(overrides)
    return cls(**kwargs)
