"""Single-network baselines without a t input.

* "vdsr-fixed": VDSR (in_ch 3) on the bicubic-enlarged image, residual output; one network for
  every scale (as the original multi-scale VDSR). Takes the LR image and enlarges it itself.
* "rdn-fixed": RDN with a sub-pixel upsampler for the one integer ``scale`` of its spec; other
  scales raise ValueError. Output size is exactly ``scale x`` the LR size.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from odesr.degrade import upscale
from odesr.models import SRModel, default_size, resolve_net
from odesr.nets import build_backbone


class VDSRFixed(SRModel):
    input_kind = "lr"
    nfe_per_call = 1
    backbone_name = "vdsr"
    supported_scales = (2.0, 3.0, 4.0)  # trained like the original multi-scale VDSR

    def __init__(self, preset: str = "paper", net: dict | None = None) -> None:
        super().__init__()
        net_kwargs = resolve_net(self.backbone_name, preset, net, in_ch=3, out_ch=3)
        self.net = build_backbone(self.backbone_name, None, **net_kwargs)
        self.spec = {"name": "vdsr-fixed", "preset": preset, "net": net_kwargs}

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """``x``: LR (B, 3, h, w) -> (B, 3, *size) (default MATLAB ``ceil(h * scale)``)."""
        size = tuple(size) if size is not None else default_size(x, scale)
        up = upscale(x, scale, size)
        return up + self.net(up)


class RDNFixed(SRModel):
    input_kind = "lr"
    nfe_per_call = 1
    backbone_name = "rdn"

    def __init__(self, scale: int = 2, preset: str = "paper", net: dict | None = None) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"rdn-fixed supports scale 2, 3 or 4, got {scale!r}")
        net_kwargs = resolve_net(self.backbone_name, preset, net, in_ch=3, out_ch=3, upscale=scale)
        self.scale = int(scale)
        self.net = build_backbone(self.backbone_name, None, **net_kwargs)
        self.spec = {"name": "rdn-fixed", "scale": self.scale, "preset": preset, "net": net_kwargs}

    @property
    def supported_scales(self) -> tuple[float, ...]:
        return (float(self.scale),)

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """``x``: LR (B, 3, h, w) -> (B, 3, h*s, w*s); ``scale`` must be this net's scale."""
        if not math.isclose(float(scale), self.scale, abs_tol=1e-9):
            raise ValueError(f"this rdn-fixed model is for x{self.scale}, got scale {scale}")
        want = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if size is not None and tuple(size) != want:
            raise ValueError(f"rdn-fixed x{self.scale} outputs {want}, asked for {tuple(size)}")
        return self.net(x)
