"""The optional native kernels (``odesr.native``) against the torch path they replace in the
bicubic evaluation. Without the built library these tests skip, except under ``CI=true``, where
they fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odesr import native
from odesr.evaluate import EvalSettings, _bicubic_pair, evaluate_images
from odesr.models import build
from odesr.resize import imresize

SCALES = [1.1, 1.5, 2.0, 2.7, 3.3, 4.0]


@pytest.fixture(scope="module")
def b100(data_root):
    from odesr.data import list_images, load_image

    return [load_image(f) for f in list_images("B100", data_root)[:3]]


def test_native_resize_matches_imresize_float64(kernels, b100):
    plane = b100[0].rgb[1, :120, :97].contiguous()
    for scale, size, border in [
        (1 / 2.7, None, "replicate"),
        (1 / 1.1, None, "symmetric"),
        (1 / 4.0, (31, 25), "replicate"),
        (2.7, None, "symmetric"),
        (1.1, (131, 107), "symmetric"),
    ]:
        want = imresize(plane.double(), scale=scale, size=size, border=border).numpy()
        got = kernels.resize(plane.numpy(), scale, size, border=border)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5, (scale, border)


def test_native_pair_matches_torch_float32_and_float64(kernels, b100):
    """Per image and scale: within 1e-4 dB / 1e-5 SSIM of the torch float32 path and 2e-4 dB /
    1e-5 of the float64 one (SR pixels on a quantisation boundary round differently)."""
    f32 = EvalSettings()
    f64 = EvalSettings(dtype=torch.float64, metric_dtype=torch.float64)
    for image in b100:
        for scale in SCALES:
            p, s, _ = kernels.bicubic_pair(image.rgb, scale, f32.protocol)
            p32, s32, _ = _bicubic_pair(image, image.rgb[None], scale, f32, False)
            p64, s64, _ = _bicubic_pair(image, image.rgb[None].double(), scale, f64, False)
            assert abs(p - p32) < 1e-4 and abs(s - s32) < 1e-5, (image.name, scale)
            assert abs(p - p64) < 2e-4 and abs(s - s64) < 1e-5, (image.name, scale)


def test_native_sr_is_the_torch_sr_up_to_boundary_pixels(kernels, b100):
    from odesr.degrade import make_case, upscale
    from odesr.metrics import shave_for

    image = b100[1]
    for scale in (1.1, 2.7, 4.0):
        _, lr, case = make_case(image.rgb[None].double(), scale)
        sr = upscale(lr, scale, case.sr_size)[0].numpy()
        sh = shave_for(scale)
        want = np.floor(np.clip(sr, 0, 1) * 255 + 0.5)[:, sh:-sh, sh:-sh]
        got = np.zeros(want.shape, np.uint8)
        kernels.bicubic_pair(image.rgb, scale, "metasr", got)
        diff = np.abs(got.astype(np.int64) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, scale


def test_evaluation_takes_native_path_and_env_switches_it_off(kernels, b100, monkeypatch):
    model = build({"name": "bicubic"})
    fast = evaluate_images(model, b100[:2], [1.1, 2.7, 4.0], EvalSettings(workers=2))
    monkeypatch.setenv(native.ENV, "0")
    assert not native.available()
    torch_rows = evaluate_images(model, b100[:2], [1.1, 2.7, 4.0], EvalSettings(workers=1))
    assert [(r["image"], r["scale"]) for r in fast] == [
        (r["image"], r["scale"]) for r in torch_rows
    ]
    assert any(a["psnr"] != b["psnr"] for a, b in zip(fast, torch_rows, strict=True))  # native ran
    for a, b in zip(fast, torch_rows, strict=True):
        assert abs(a["psnr"] - b["psnr"]) < 1e-4 and abs(a["ssim"] - b["ssim"]) < 1e-5
        assert a["seconds"] > 0


def test_native_resize_empty_planes_raise_and_empty_outputs_are_empty(kernels):
    """An empty plane has no pixel for the taps to read: with an explicit size and replicate
    borders the kernel used to read before the array (AddressSanitizer: heap-buffer-overflow).
    An empty output, asked for on a fresh thread (no scratch yet), used to be a MemoryError."""
    import threading

    empty = np.zeros((0, 5), np.float32)
    for border in ("replicate", "symmetric"):
        with pytest.raises(ValueError, match="empty plane"):
            kernels.resize(empty, 2.0, (3, 3), border=border)
    assert kernels.resize(empty, 2.0).shape == (0, 10)
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            kernels.resize(np.ones((5, 5), np.float32), scale)
    with pytest.raises(ValueError, match="negative"):
        kernels.resize(np.ones((5, 5), np.float32), 2.0, (-2, 3))
    got = {}

    def fresh_thread():
        try:
            got["shape"] = kernels.resize(np.ones((5, 5), np.float32), 2.0, (0, 3)).shape
        except Exception as exc:  # reported below
            got["shape"] = repr(exc)

    thread = threading.Thread(target=fresh_thread)
    thread.start()
    thread.join()
    assert got["shape"] == (0, 3)


def test_native_pair_refuses_sr_larger_than_hr_as_the_torch_path_does(kernels):
    """metasr above x5 can make the SR a pixel larger than the HR frame (41 rows at x6: crop 37,
    LR 7, SR 42); the torch path raises there and the native path used to return a score."""
    from pathlib import Path

    from odesr.data import LoadedImage

    rgb = torch.rand(3, 41, 41)
    image = LoadedImage(Path("x.png"), rgb, 3, 8)
    with pytest.raises(ValueError, match="does not fit"):
        _bicubic_pair(image, rgb[None], 6.0, EvalSettings(), False)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.bicubic_pair(rgb, 6.0, "metasr")
    kernels.bicubic_pair(rgb, 6.0, "floor")  # the same image where the SR fits


def test_native_taps_keep_their_arrays_and_hr_cache_follows_in_place_edits(kernels):
    """The taps struct holds raw pointers: bicubic_pair and resize keep only the struct, so the
    arrays must live as long as it does, not as long as the lru_cache entry (evicted by another
    thread's inserts during the call: use after free). The cached HR side is keyed by the
    tensor and its version, so an in-place edit of the image is not scored against stale
    statistics."""
    import gc
    import weakref

    t, arrays = kernels._taps(37, 11, 1 / 3.3, True, "replicate")
    refs = [weakref.ref(a) for a in arrays]
    del arrays
    kernels._taps.cache_clear()
    gc.collect()
    assert all(r() is not None for r in refs)
    del t
    gc.collect()
    assert all(r() is None for r in refs)

    rgb = torch.rand(3, 48, 40)
    kernels.bicubic_pair(rgb, 2.0, "metasr")
    rgb.mul_(0.5)
    edited = kernels.bicubic_pair(rgb, 2.0, "metasr")[:2]
    assert edited == kernels.bicubic_pair(rgb.clone(), 2.0, "metasr")[:2]


def test_native_kernel_refuses_taps_outside_the_image(kernels):
    """The C entry points check the taps before following them (a column outside the input, an
    output without taps, taps of one axis not chaining with the next): an error code, never a
    read outside the arrays."""
    import ctypes

    lib = kernels._lib()
    plane = np.ones((6, 5), np.float32)
    out = np.zeros((3, 3), np.float32)
    good = kernels._taps(5, 3, 0.5, True, "symmetric")[0]
    ptr = np.array([0, 1, 2, 3], np.int32)
    val = np.ones(3, np.float32)
    for cols, in_len, ptr_ in [
        ([0, 1, 5], 5, ptr),  # column past the input
        ([0, -1, 2], 5, ptr),  # column before it
        ([0, 1, 2], 5, np.array([0, 1, 1, 3], np.int32)),  # an output without taps
        ([0, 1, 2], 0, ptr),  # empty input
    ]:
        col = np.array(cols, np.int32)
        bad = kernels._Taps(in_len, 3, ptr_.ctypes.data, col.ctypes.data, val.ctypes.data)
        rc = lib.odesr_resize_plane(
            plane.ctypes.data, 5, ctypes.byref(bad), ctypes.byref(good), out.ctypes.data
        )
        assert rc == -3, cols
    rows = kernels._taps(6, 3, 0.5, True, "symmetric")[0]
    assert (
        lib.odesr_resize_plane(  # a row stride shorter than the taps' rows
            plane.ctypes.data, 4, ctypes.byref(rows), ctypes.byref(good), out.ctypes.data
        )
        == -3
    )
    assert (
        lib.odesr_resize_plane(
            plane.ctypes.data, 5, ctypes.byref(rows), ctypes.byref(good), out.ctypes.data
        )
        == 0
    )
