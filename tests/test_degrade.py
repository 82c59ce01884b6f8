from __future__ import annotations

import pytest
import torch

from odesr.degrade import make_case, path_point, protocol_case, quantize


@pytest.mark.parametrize(
    "hw,scale,lr",
    [((512, 512), 1.5, (339, 339)), ((512, 512), 3.5, (146, 146)), ((228, 344), 3.5, (64, 98))],
)
def test_metasr_protocol_sizes(hw, scale, lr):
    case = protocol_case(*hw, scale, "metasr")
    assert case.lr_size == lr
    assert case.sr_size == tuple(int(n * scale + 1e-9) for n in lr)


def test_metasr_keeps_divisible_sides_and_modcrop_crops():
    case = protocol_case(321, 480, 3.0, "metasr")
    assert case.hr_crop == (321, 480) and case.lr_size == (107, 160)
    case = protocol_case(321, 481, 3.0, "modcrop")
    assert case.hr_crop == (321, 480) and case.lr_size == (107, 160) and case.sr_size == (321, 480)
    with pytest.raises(ValueError, match="integer"):
        protocol_case(321, 481, 2.5, "modcrop")


def test_protocol_errors():
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_case(64, 64, 2.0, "nope")
    with pytest.raises(ValueError, match="too small"):
        protocol_case(3, 64, 2.0, "metasr")
    with pytest.raises(ValueError):
        protocol_case(64, 64, float("nan"))


def test_make_case_quantises_lr_and_crops_hr():
    hr = torch.rand(2, 3, 40, 50, dtype=torch.float64)
    hr_ref, lr, case = make_case(hr, 2.7, "metasr")
    assert tuple(lr.shape[-2:]) == case.lr_size
    assert tuple(hr_ref.shape[-2:]) == case.sr_size
    torch.testing.assert_close(lr, quantize(lr))
    torch.testing.assert_close(hr_ref, hr[..., : case.sr_size[0], : case.sr_size[1]])


def test_path_point_endpoints_and_locality():
    hr = torch.rand(1, 3, 48, 48, dtype=torch.float64)
    assert torch.equal(path_point(hr, 1.0), hr)
    # I(t) moves away from HR as t grows
    errs = [float((path_point(hr, t) - hr).abs().mean()) for t in (1.1, 2.0, 4.0)]
    assert errs[0] < errs[1] < errs[2]
    # interior pixels do not depend on far-away content: a crop whose offset is a whole number of
    # LR pixels (23 = 10 x 2.3) gives the same I(t) away from its borders
    big = torch.rand(1, 3, 96, 96, dtype=torch.float64)
    t = 2.3
    full = path_point(big, t, pad=0)
    part = path_point(big[..., 23:, 23:], t, pad=0)
    torch.testing.assert_close(part[..., 20:50, 20:50], full[..., 43:73, 43:73])
    with pytest.raises(ValueError):
        path_point(hr, 0.5)
