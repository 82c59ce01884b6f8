from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from odesr.degrade import make_case
from odesr.resize import DEVICE_BLOCK_ROWS, _band_blocks, imresize, resize_matrix


def _ramp(n: int) -> np.ndarray:
    return np.arange(n * n, dtype=np.float64).reshape(n, n)


def _golden_inputs(golden) -> dict[str, np.ndarray]:
    a = np.zeros((4, 4))
    a[0, 0], a[1, 0], a[0, 1], a[0, 3] = 100, 10, 1, 100
    b = np.zeros((4, 4))
    b[3, 3], b[2, 3], b[3, 2], b[3, 0] = 100, 10, 1, 100
    butterfly = np.asarray(Image.open(golden / "matlab_imresize" / "butterfly.png"), np.float64)
    return {
        "down_down_small": _ramp(4),
        "down_down": _ramp(8),
        "down_down_irregular": _ramp(8),
        "down_down_x2": _ramp(8),
        "down_down_x4": _ramp(8),
        "down_down_x3": _ramp(15),
        "down_down_x5": _ramp(15),
        "up_up_irregular": _ramp(8),
        "up_up_topleft": a,
        "up_up_bottomright": b,
        "down_down_butterfly_irregular": butterfly / 255.0,
    }


# measured: float64 7.8e-14 absolute, float32 1.9e-7 relative to the value range
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_matches_matlab_golden(golden, dtype, tol):
    inputs = _golden_inputs(golden)
    files = sorted((golden / "matlab_imresize").glob("*.npy"))
    assert len(files) >= 16
    for f in files:
        base, aa = f.stem.rsplit("_", 1)
        ref = np.load(f)
        x = torch.from_numpy(inputs[base]).to(dtype)
        if x.dim() == 3:
            x = x.permute(2, 0, 1)
        out = imresize(x, size=ref.shape[:2], antialias=(aa == "aa"))
        if out.dim() == 3:
            out = out.permute(1, 2, 0)
        err = np.abs(out.double().numpy() - ref).max()
        if dtype == torch.float32:  # float32: relative to the value range (ramps reach 224)
            err /= max(1.0, float(np.abs(ref).max()))
        assert err <= tol, (f.name, err)


def _png(path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float64)).permute(
        2, 0, 1
    )


def test_matches_matlab_made_lr_images(golden):
    root = golden / "metasr_matlab_lr"
    pairs = []
    for hr_path in sorted((root / "Set5" / "HR").glob("*.png")):
        for folder in sorted((root / "Set5" / "LR_bicubic").iterdir()):
            pairs.append((hr_path, folder / hr_path.name, float(folder.name[1:])))
    hr_one = root / "img_001_all_scales" / "HR" / "img_001_SRF.png"
    for folder in sorted((root / "img_001_all_scales" / "LR_bicubic").iterdir()):
        pairs.append((hr_one, folder / hr_one.name, float(folder.name[1:])))
    assert len(pairs) >= 60
    for hr_path, lr_path, scale in pairs:
        hr = _png(hr_path)[None] / 255.0
        ref = _png(lr_path)[None]
        _, lr, case = make_case(hr, scale, "metasr")
        assert tuple(ref.shape[-2:]) == case.lr_size, (lr_path, case)
        diff = (lr * 255.0 - ref).abs()
        mse = float((diff**2).mean())
        psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else np.inf
        assert psnr >= 55.0, (lr_path, psnr)
        assert diff.max() <= 4, (lr_path, float(diff.max()))


def test_shapes_batch_and_scale_semantics():
    x = torch.rand(2, 3, 5, 17, 23, dtype=torch.float64)
    assert imresize(x, scale=1.5).shape == (2, 3, 5, 26, 35)  # ceil(17*1.5), ceil(23*1.5)
    assert imresize(x, size=(9, 4)).shape == (2, 3, 5, 9, 4)
    assert imresize(x, scale=(2.0, 0.5)).shape == (2, 3, 5, 34, 12)
    # scale + size: the same pixels as the scale-only result, cropped
    full = imresize(x, scale=2.7)
    part = imresize(x, scale=2.7, size=(40, 50))
    torch.testing.assert_close(part, full[..., :40, :50])


def test_differentiable_and_dtype_preserving():
    x = torch.rand(1, 3, 12, 12, dtype=torch.float32, requires_grad=True)
    y = imresize(x, scale=1 / 2.3)
    assert y.dtype == torch.float32
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bad_arguments():
    x = torch.rand(4, 4)
    with pytest.raises(ValueError):
        imresize(x)
    with pytest.raises(ValueError):
        imresize(x, scale=float("nan"))
    with pytest.raises(TypeError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), scale=2)


@pytest.mark.parametrize("border", ["symmetric", "replicate"])
@pytest.mark.parametrize("scale", [1 / 3.7, 0.5, 1 / 1.1, 1.1, 2.5, 4.0])
def test_banded_product_equals_dense_matrix(scale, border):
    """The banded blocks hold the dense matrix's band (float64; rows or columns first)."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 37, 53, dtype=torch.float64, generator=g)
    out = imresize(x, scale=(scale, 1.7), border=border)
    h, w = out.shape[-2:]
    mh = resize_matrix(37, h, scale, border=border)
    mw = resize_matrix(53, w, 1.7, border=border)
    torch.testing.assert_close(out, mh @ x @ mw.T, rtol=0, atol=1e-12)


def test_banded_grad_path_equals_inference_path():
    x = torch.rand(1, 3, 29, 31, dtype=torch.float64)
    with torch.no_grad():
        fast = imresize(imresize(x, scale=1 / 2.3), scale=2.3)
    slow = imresize(imresize(x.requires_grad_(), scale=1 / 2.3), scale=2.3)
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [1 / 3.3, 0.5, 2.0, 3.7])
def test_band_blocks_on_the_cpu_equal_the_dense_product(scale):
    """Images big enough for the band blocks on the CPU (several GEMMs per dimension) give the
    dense matrix's product, which is what a non-CPU device computes in one GEMM."""
    x = torch.rand(2, 3, 300, 340, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h, w = math.ceil(300 * scale), math.ceil(340 * scale)
    assert len(_band_blocks((300, h, scale, True, "symmetric"), torch.float64, "cpu")) > 1
    out = imresize(x, scale=scale)
    dense = resize_matrix(300, h, scale) @ x @ resize_matrix(340, w, scale).T
    torch.testing.assert_close(out, dense, rtol=0, atol=1e-12)


def test_one_gemm_per_dimension_off_the_cpu():
    """Off the CPU a benchmark image's resize is one matrix product per dimension (each block
    is a kernel launch), a huge one a few of DEVICE_BLOCK_ROWS rows that still skip most
    zeros; shapes follow on the meta device."""
    weights = (481, 962, 2.0, True, "symmetric")
    assert len(_band_blocks(weights, torch.float32, "cpu")) > 10
    (block,) = _band_blocks(weights, torch.float32, "meta")
    assert block[2].shape == (962, 481)
    huge = _band_blocks((4000, 16000, 4.0, True, "symmetric"), torch.float32, "meta")
    assert len(huge) == math.ceil(16000 / DEVICE_BLOCK_ROWS)
    assert all(b[2].shape[0] <= DEVICE_BLOCK_ROWS and b[2].shape[1] < 300 for b in huge)
    out = imresize(torch.empty(4, 3, 321, 481, device="meta"), scale=2.0)
    assert out.shape == (4, 3, 642, 962)
