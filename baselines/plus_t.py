"""VDSR+t / RDN+t ("vdsr+t", "rdn+t"): the ODE's backbone applied once, as a residual net.

Input I(t0) (bicubic at the output size) with the t0 plane as 4th channel; output
``I(t0) + net(cat[I(t0), t0])`` (paper section 4.3). One backbone evaluation (NFE 1).

``repeat: k`` (k > 1) is the depth control of the claims experiment: the same net applied k
times with tied weights, ``I <- I + net(cat[I, t0])`` (the t0 plane constant: depth without the
ODE's time stepping), NFE k, trained end to end through all k applications. A zero last conv
makes every application the identity, so it starts at its bicubic input like the +t net.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from odesr.models import SRModel, resolve_net
from odesr.nets import (
    CONV_MEMORY_FORMAT,
    build_backbone,
    grid_offset_planes,
    t_plane_value,
    with_t_plane,
)


class PlusT(SRModel):
    input_kind = "upscaled"
    nfe_per_call = 1
    backbone_name: ClassVar[str] = "vdsr"  # as odesr.models.ODESR: subclasses name theirs

    def __init__(
        self,
        preset: str = "paper",
        net: dict | None = None,
        t_plane: str = "raw",
        repeat: int = 1,
        pos: bool = False,
    ) -> None:
        super().__init__()
        backbone = self.backbone_name
        t_plane_value(1.0, t_plane)  # validates the mode
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"{backbone}+t: repeat must be a positive integer, got {repeat!r}")
        if not isinstance(pos, bool):
            raise ValueError(f"{backbone}+t: pos must be true or false, got {pos!r}")
        net_kwargs = resolve_net(backbone, preset, net, in_ch=4 + 2 * pos, out_ch=3)
        self.net = build_backbone(backbone, None, **net_kwargs)
        self.t_plane = t_plane
        self.repeat = repeat
        self.nfe_per_call = repeat  # backbone evaluations of one pass
        # older checkpoints' specs have no t_plane: they rebuild with the default, raw
        self.spec = {"name": f"{backbone}+t", "preset": preset, "net": net_kwargs}
        self.spec["t_plane"] = t_plane
        if repeat != 1:  # specs of single-pass nets stay as they were
            self.spec["repeat"] = repeat
        # two planes of the pixel's offset on the LR grid (odesr.nets.grid_offset_planes);
        # ``grid_origin`` (B, 2) is set per batch by training (None: whole images)
        self.pos = pos
        self.grid_origin: torch.Tensor | None = None
        if pos:
            self.spec["pos"] = True

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """``x`` = I(scale) (B, 3, H, W) -> restored image of the same size."""
        t = scale if torch.is_tensor(scale) else float(scale)  # (B,) when scales are mixed
        for _ in range(self.repeat):
            inp = with_t_plane(x, t, self.t_plane)
            if self.pos:
                inp = torch.cat([inp, grid_offset_planes(x, t, self.grid_origin)], dim=1)
            x = x + self.net(inp.contiguous(memory_format=CONV_MEMORY_FORMAT))
        return x


class VDSRPlusT(PlusT):
    """``vdsr+t``."""

    backbone_name = "vdsr"


class RDNPlusT(PlusT):
    """``rdn+t``."""

    backbone_name = "rdn"
