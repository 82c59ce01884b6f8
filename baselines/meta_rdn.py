"""Meta-RDN ("meta-rdn", Hu et al. 2019, Meta-SR): RDN features + Meta-Upscale, any scale/size.

RDN (in_ch 3, no upsampler) gives G0-channel features of the LR image (B, G0, h, w). Output pixel
(i, j) (0-based) reads the 3x3 feature neighbourhood of source pixel
``(floor(i / r), floor(j / r))`` (clamped to the image) through a per-pixel filter predicted by a
2-layer MLP from ``(i/r - floor(i/r), j/r - floor(j/r), 1/r)``: ``3 -> hidden -> 3*3*G0*out_ch``
(hidden 256, ReLU). Computed in chunks of output rows with ``unfold`` (no per-pixel loops), so
memory stays bounded for any output size.

``skip: bicubic`` (not in Meta-SR) adds the MATLAB-bicubic upscale of the LR image to the output
and zeroes the MLP's last layer, so the untrained model returns bicubic and the network learns a
residual, as the +t and ODE models do; ``skip: none`` (default) is Meta-SR's architecture.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from odesr.degrade import upscale
from odesr.models import SRModel, default_size, resolve_net
from odesr.nets import build_backbone


class MetaUpscale(nn.Module):
    """Meta-Upscale module: per-output-pixel 3x3 filters predicted from position and scale."""

    def __init__(self, G0: int, out_ch: int = 3, hidden: int = 256, kernel: int = 3) -> None:
        super().__init__()
        self.G0, self.out_ch, self.kernel = G0, out_ch, kernel
        self.k = G0 * kernel * kernel
        self.mlp = nn.Sequential(
            nn.Linear(3, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, self.k * out_ch)
        )

    @staticmethod
    def _coords(n_out: int, n_in: int, scale: float, device: torch.device):
        pos = torch.arange(n_out, dtype=torch.float64) / scale
        src = torch.floor(pos)
        offset = pos - src
        src = src.long().clamp_(0, n_in - 1)
        return src.to(device), offset

    def forward(
        self,
        feat: torch.Tensor,
        scale: float,
        size: tuple[int, int],
        max_elems: int = 1 << 25,
    ) -> torch.Tensor:
        b, c, h, w = feat.shape
        H, W = int(size[0]), int(size[1])
        pad = self.kernel // 2
        cols = F.unfold(feat, self.kernel, padding=pad).view(b, self.k, h, w)
        si, oi = self._coords(H, h, scale, feat.device)
        sj, oj = self._coords(W, w, scale, feat.device)
        oi = oi.to(device=feat.device, dtype=feat.dtype)
        oj = oj.to(device=feat.device, dtype=feat.dtype)
        inv = feat.new_full((1,), 1.0 / scale)
        rows = max(1, max_elems // max(1, W * self.k * (self.out_ch + b)))
        out = []
        cols_w = cols[:, :, :, sj]  # (B, K, h, W)
        for r0 in range(0, H, rows):
            r1 = min(r0 + rows, H)
            n = r1 - r0
            pos = torch.stack(
                [
                    oi[r0:r1, None].expand(n, W),
                    oj[None, :].expand(n, W),
                    inv.expand(n, W),
                ],
                dim=-1,
            )
            weight = self.mlp(pos).view(n, W, self.k, self.out_ch)
            src = cols_w[:, :, si[r0:r1]]  # (B, K, n, W)
            out.append(torch.einsum("bknw,nwkc->bcnw", src, weight))
        return torch.cat(out, dim=2)


class MetaRDN(SRModel):
    """RDN features of the LR image + Meta-Upscale: ``forward(lr, scale, size)`` -> (B, 3, H, W)."""

    input_kind = "lr"
    nfe_per_call = 1
    backbone_name = "rdn"

    SKIPS = ("none", "bicubic")

    def __init__(
        self, preset: str = "paper", net: dict | None = None, hidden: int = 256, skip: str = "none"
    ) -> None:
        super().__init__()
        if skip not in self.SKIPS:
            raise ValueError(f"meta-rdn: skip must be one of {list(self.SKIPS)}, got {skip!r}")
        net_kwargs = resolve_net(self.backbone_name, preset, net, in_ch=3, upsampler=False)
        net_kwargs.pop("upscale", None)
        net_kwargs.pop("out_ch", None)
        self.net = build_backbone(self.backbone_name, None, **net_kwargs)
        self.upsample = MetaUpscale(net_kwargs["G0"], out_ch=3, hidden=hidden)
        self.spec = {"name": "meta-rdn", "preset": preset, "net": net_kwargs, "hidden": hidden}
        self.skip = skip
        if skip != "none":  # specs without a skip stay as they were (same checkpoint keys)
            self.spec["skip"] = skip
            last = self.upsample.mlp[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        """``x``: LR (B, 3, h, w) -> (B, 3, *size) (default MATLAB ``ceil(h * scale)``)."""
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        size = tuple(size) if size is not None else default_size(x, scale)
        out = self.upsample(self.net(x), scale, size, **opts)
        return out + upscale(x, scale, size) if self.skip == "bicubic" else out
