from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import structural_similarity

from odesr.metrics import prepare_reference, psnr, rgb_to_y, score, shave_for, ssim


def _pair(seed: int = 0, shape=(2, 3, 40, 52)):
    g = torch.Generator().manual_seed(seed)
    hr = torch.floor(torch.rand(shape, generator=g, dtype=torch.float64) * 255) / 255
    sr = (hr + 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return sr, hr


def _y_skimage(x: torch.Tensor, rounding: str) -> np.ndarray:
    """Independent luma: skimage's rgb2ycbcr (ITU-R BT.601, [16, 235]); MATLAB rounds uint8
    output half up."""
    y = rgb2ycbcr(x.permute(0, 2, 3, 1).numpy())[..., 0]
    return np.floor(y + 0.5) if rounding == "matlab" else y


def test_y_matches_matlab_by_hand_and_skimage():
    # MATLAB rgb2ycbcr(uint8(...)) by hand: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
    # (10, 200, 30): 16 + (654.81 + 25710.6 + 748.98) / 255 = 122.33 -> 122
    pixels = [
        (255, 0, 0, 81),
        (0, 255, 0, 145),
        (0, 0, 255, 41),
        (255, 255, 255, 235),
        (0, 0, 0, 16),
        (10, 200, 30, 122),
    ]
    rgb = torch.tensor([p[:3] for p in pixels], dtype=torch.float64).T.reshape(1, 3, 1, -1) / 255
    want = [16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 for r, g, b, _ in pixels]
    got = rgb_to_y(rgb, "float")[0, 0, 0].tolist()
    assert got == pytest.approx(want, abs=1e-12)
    assert rgb_to_y(rgb, "matlab")[0, 0, 0].tolist() == [p[3] for p in pixels]
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for rounding in ("float", "matlab"):
        np.testing.assert_allclose(
            rgb_to_y(x, rounding)[:, 0].numpy(), _y_skimage(x, rounding), rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("rounding", ["matlab", "float"])
def test_ssim_matches_skimage(rounding):
    sr, hr = _pair()
    ours = ssim(sr, hr, crop_border=3, y_rounding=rounding)
    ysr = _y_skimage(torch.floor(sr * 255 + 0.5) / 255, rounding)[..., 3:-3, 3:-3]
    yhr = _y_skimage(hr, rounding)[..., 3:-3, 3:-3]
    for i in range(sr.shape[0]):
        ref = structural_similarity(
            ysr[i],
            yhr[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert abs(float(ours[i]) - ref) < 1e-6


def test_psnr_by_hand_and_identical_is_inf():
    sr, hr = _pair(1)
    q = torch.floor(sr * 255 + 0.5) / 255
    y1, y2 = torch.from_numpy(_y_skimage(q, "matlab")), torch.from_numpy(_y_skimage(hr, "matlab"))
    mse = ((y1 - y2)[..., 2:-2, 2:-2] ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(psnr(sr, hr, crop_border=2), 10 * torch.log10(255**2 / mse))
    assert math.isinf(float(psnr(hr, hr)[0]))
    assert float(ssim(hr, hr)[0]) == pytest.approx(1.0)


def test_y_conventions():
    white = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    black = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    assert float(rgb_to_y(white).max()) == 235 and float(rgb_to_y(black).max()) == 16
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    assert torch.equal(rgb_to_y(x, "matlab"), torch.floor(rgb_to_y(x, "float") + 0.5))
    with pytest.raises(ValueError):
        rgb_to_y(x, "nope")


def test_grey_channel_scored_on_its_own_and_shapes_checked():
    sr, hr = _pair(2, (1, 1, 30, 30))
    p = psnr(sr, hr, test_y_channel=True)  # one channel: never converted to Y
    q = torch.floor(sr * 255 + 0.5)
    ref = 10 * np.log10(255**2 / float(((q - hr * 255) ** 2).mean()))
    assert float(p[0]) == pytest.approx(ref)
    with pytest.raises(ValueError, match="differ"):
        psnr(sr, hr[..., :20])


def test_shave_rule_and_score():
    assert [shave_for(s) for s in (1.1, 2.0, 2.5, 4.0)] == [2, 2, 3, 4]
    sr, hr = _pair(3)
    p, s = score(sr, hr, 2.5)
    torch.testing.assert_close(p, psnr(sr, hr, crop_border=3))
    torch.testing.assert_close(s, ssim(sr, hr, crop_border=3))


def test_prepared_reference_equals_direct_score_in_float64():
    """Scoring against the whole HR frame's prepared statistics (windows) gives the numbers of
    scoring against the cropped HR, bit for bit in float64 (same arithmetic per pixel)."""
    g = torch.Generator().manual_seed(4)
    hr = torch.floor(torch.rand(1, 3, 61, 75, generator=g, dtype=torch.float64) * 255) / 255
    ref = prepare_reference(hr)
    for scale, (h, w) in ((2.5, (58, 70)), (1.3, (61, 75)), (4.0, (52, 72))):
        sr = (hr[..., :h, :w] + 0.03 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1)
        direct = score(sr, hr[..., :h, :w], scale)
        cached = score(sr, None, scale, reference=ref)
        assert torch.equal(direct[0], cached[0]) and torch.equal(direct[1], cached[1])
    with pytest.raises(ValueError, match="does not fit"):
        score(torch.rand(1, 3, 62, 75), None, 2.0, reference=ref)


@pytest.mark.parametrize("rounding", ["matlab", "float"])
def test_float32_fast_path_agrees_with_float64(rounding):
    """The float32 reference path (evaluation's default) against the float64 path."""
    g = torch.Generator().manual_seed(5)
    hr = torch.floor(torch.rand(2, 3, 90, 120, generator=g, dtype=torch.float64) * 255) / 255
    smooth = torch.nn.functional.avg_pool2d(hr, 5, 1, 2)  # flat regions: float32's worst case
    ref32 = prepare_reference(smooth.float(), y_rounding=rounding, dtype=torch.float32)
    for scale in (1.5, 3.0):
        sr = smooth + 0.02 * torch.randn(smooth.shape, generator=g, dtype=torch.float64)
        p64, s64 = score(sr.clamp(0, 1), smooth, scale, y_rounding=rounding)
        p32, s32 = score(sr.float(), None, scale, reference=ref32)
        assert (p32 - p64).abs().max() < 1e-3 and (s32 - s64).abs().max() < 1e-5
