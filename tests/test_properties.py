"""Property tests (hypothesis) for :mod:`odesr.resize` and :mod:`odesr.metrics`.

Tolerances: everything runs in float64. The resize weights of one output pixel are normalised to
sum to 1 and an output is a sum of at most ~4 * max(1, 1/scale) * 2 products per axis, so
constants and linear combinations are exact up to a few ulps: 1e-9 leaves ample room.

Mean preservation: for an integer factor k and lengths divisible by k, MATLAB bicubic (Keys
a = -0.5, antialiased shrink, symmetric half-sample reflection) has *every* column of the shrink
matrix summing to exactly 1/k and every column of the enlarge matrix summing to exactly k (the
Keys kernel is a partition of unity, the k sampling phases each contribute 1, and the half-sample
reflection folds the overhanging taps back onto columns symmetrically). So the shrink and the
shrink-then-enlarge round trip keep the image mean exactly in exact arithmetic; we allow 1e-12
for float64 rounding. This is false for non-integer factors or lengths not divisible by k (e.g. a
random 12x18 image shrunk by 2.5 moves its mean by ~7e-3), so those are not tested.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odesr.metrics import psnr, ssim
from odesr.resize import imresize, resize_matrix

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.integers(min_value=2, max_value=12)
scales = st.floats(min_value=0.2, max_value=4.0, allow_nan=False, allow_infinity=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def _img(seed: int, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=gen, dtype=torch.float64)


@SETTINGS
@given(h=sides, w=sides, s=scales, antialias=st.booleans())
def test_scale_gives_ceil_size(h: int, w: int, s: float, antialias: bool) -> None:
    x = torch.zeros(2, h, w, dtype=torch.float64)
    y = imresize(x, scale=s, antialias=antialias)
    assert y.shape == (2, math.ceil(h * s), math.ceil(w * s))


@SETTINGS
@given(h=sides, w=sides, H=st.integers(1, 30), W=st.integers(1, 30))
def test_size_is_exact(h: int, w: int, H: int, W: int) -> None:
    y = imresize(torch.zeros(h, w, dtype=torch.float64), size=(H, W))
    assert y.shape == (H, W)


@SETTINGS
@given(
    h=sides,
    w=sides,
    s=scales,
    c=st.floats(-5, 5, allow_nan=False),
    border=st.sampled_from(["symmetric", "replicate"]),
)
def test_constant_stays_constant(h: int, w: int, s: float, c: float, border: str) -> None:
    x = torch.full((1, h, w), c, dtype=torch.float64)
    y = imresize(x, scale=s, border=border)
    assert torch.allclose(y, torch.full_like(y, c), atol=1e-9, rtol=0)


@SETTINGS
@given(
    h=sides,
    w=sides,
    s=scales,
    a=st.floats(-3, 3, allow_nan=False),
    b=st.floats(-3, 3, allow_nan=False),
    seed=seeds,
)
def test_resize_is_linear(h: int, w: int, s: float, a: float, b: float, seed: int) -> None:
    x = _img(seed, 3, h, w, low=-1.0)
    y = _img(seed + 1, 3, h, w, low=-1.0)
    left = imresize(a * x + b * y, scale=s)
    right = a * imresize(x, scale=s) + b * imresize(y, scale=s)
    assert torch.allclose(left, right, atol=1e-9, rtol=0)


@SETTINGS
@given(k=st.integers(2, 5), m=st.integers(1, 6))
def test_integer_shrink_and_enlarge_weight_columns(k: int, m: int) -> None:
    n = k * m
    shrink = resize_matrix(n, m, 1.0 / k).numpy()
    enlarge = resize_matrix(m, n, float(k)).numpy()
    np.testing.assert_allclose(shrink.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(shrink.sum(axis=0), 1.0 / k, atol=1e-12)
    np.testing.assert_allclose(enlarge.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(enlarge.sum(axis=0), float(k), atol=1e-12)


@SETTINGS
@given(k=st.integers(2, 4), mh=st.integers(1, 5), mw=st.integers(1, 5), seed=seeds)
def test_integer_shrink_then_enlarge_keeps_mean(k: int, mh: int, mw: int, seed: int) -> None:
    x = _img(seed, 3, k * mh, k * mw)
    small = imresize(x, scale=1.0 / k)
    back = imresize(small, scale=float(k))
    assert back.shape == x.shape
    mean = x.mean(dim=(-2, -1))
    assert torch.allclose(small.mean(dim=(-2, -1)), mean, atol=1e-12, rtol=0)
    assert torch.allclose(back.mean(dim=(-2, -1)), mean, atol=1e-12, rtol=0)


def _grid(seed: int, c: int, h: int, w: int) -> torch.Tensor:
    """An image on the 8-bit grid (as stored images are)."""
    return torch.floor(_img(seed, c, h, w) * 255 + 0.5) / 255


@SETTINGS
@given(
    c=st.sampled_from([1, 3]),
    h=st.integers(1, 16),
    w=st.integers(1, 16),
    seed=seeds,
    y=st.booleans(),
)
def test_psnr_of_identical_images_is_inf(c: int, h: int, w: int, seed: int, y: bool) -> None:
    x = _grid(seed, c, h, w)
    value = psnr(x, x.clone(), test_y_channel=y)
    assert value.shape == (1,) and math.isinf(value.item()) and value.item() > 0


@SETTINGS
@given(
    c=st.sampled_from([1, 3]),
    h=st.integers(3, 16),
    w=st.integers(3, 16),
    seed=seeds,
    y=st.booleans(),
    rounding=st.sampled_from(["matlab", "float"]),
    border=st.integers(0, 1),
)
def test_psnr_is_symmetric(
    c: int, h: int, w: int, seed: int, y: bool, rounding: str, border: int
) -> None:
    a, b = _grid(seed, c, h, w), _grid(seed + 7, c, h, w)
    kw = dict(test_y_channel=y, y_rounding=rounding, crop_border=border)
    pab, pba = psnr(a, b, **kw), psnr(b, a, **kw)
    assert torch.equal(pab, pba) or torch.allclose(pab, pba, atol=1e-12, rtol=0)


@SETTINGS
@given(
    c=st.sampled_from([1, 3]),
    h=st.integers(11, 20),
    w=st.integers(11, 20),
    seed=seeds,
    y=st.booleans(),
    relation=st.sampled_from(["random", "inverted", "shifted", "constant"]),
)
def test_ssim_bounded_and_one_for_identical(
    c: int, h: int, w: int, seed: int, y: bool, relation: str
) -> None:
    a = _grid(seed, c, h, w)
    if relation == "random":
        b = _grid(seed + 3, c, h, w)
    elif relation == "inverted":
        b = 1.0 - a
    elif relation == "shifted":
        b = torch.roll(a, shifts=1, dims=-1)
    else:
        b = torch.full_like(a, 128 / 255)  # on the 8-bit grid: SR is quantised
    value = ssim(a, b, test_y_channel=y)
    assert torch.isfinite(value).all()
    assert (value >= -1.0 - 1e-12).all() and (value <= 1.0 + 1e-12).all()
    same = ssim(a, a.clone(), test_y_channel=y)
    assert torch.allclose(same, torch.ones_like(same), atol=1e-12, rtol=0)
    assert torch.allclose(value, ssim(b, a, test_y_channel=y), atol=1e-12, rtol=0)
