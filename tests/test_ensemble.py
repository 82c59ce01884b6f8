from __future__ import annotations

import pytest
import torch

from odesr.degrade import make_case
from odesr.ensemble import SelfEnsemble, aligned_extension
from odesr.models import build


@pytest.mark.parametrize("scale", [1.1, 2.0, 2.7, 3.3])
def test_ensemble_of_bicubic_is_bicubic_at_any_scale(scale):
    # bicubic is flip/rotation-equivariant once the grids line up: the ensemble must not move
    # pixels (a misaligned ensemble lost ~5 dB at x1.1 before the grid alignment)
    hr = torch.rand(1, 3, 61, 47, dtype=torch.float64)
    _, lr, case = make_case(hr, scale)
    base = build({"name": "bicubic"})
    plain = base.super_resolve(lr, scale, case.sr_size).image
    ens = SelfEnsemble(base).super_resolve(lr, scale, case.sr_size).image
    interior = (slice(None), slice(None), slice(4, -8), slice(4, -8))
    torch.testing.assert_close(ens[interior], plain[interior], atol=1e-9, rtol=0)


def test_aligned_extension():
    assert aligned_extension(20, 2.0) == 0
    assert aligned_extension(21, 1.1) == 9  # 30 * 1.1 = 33
    assert aligned_extension(7, 2.5) == 1
