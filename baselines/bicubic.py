"""Bicubic baseline ("bicubic"): MATLAB bicubic enlargement I(t0); no parameters, NFE 0."""

from __future__ import annotations

from typing import Any

import torch

from odesr.models import SRModel


class Bicubic(SRModel):
    """``super_resolve`` is :func:`odesr.degrade.upscale`; ``forward`` (on I(t0)) is identity."""

    input_kind = "upscaled"
    nfe_per_call = 0

    def __init__(self) -> None:
        super().__init__()
        self.spec = {"name": "bicubic"}

    def forward(
        self, x: torch.Tensor, scale: float, size: tuple[int, int] | None = None, **opts: Any
    ) -> torch.Tensor:
        return x
