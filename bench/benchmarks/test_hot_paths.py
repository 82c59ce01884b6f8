"""Hot paths: resize, metrics, a bicubic evaluation pair, one ODE solve per model, one
training step (see conftest.py for the ratios)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.benchmarks.conftest import best_seconds, data_root
from bench.inference_speed import conv_macs
from bench.peer import peer_imresize, peer_pair
from odesr.data import list_images, load_image
from odesr.degrade import make_case, upscale
from odesr.metrics import prepare_reference, score
from odesr.resize import imresize

SCALE = 2.7


@pytest.fixture(scope="module")
def image():
    return load_image(list_images("B100", data_root())[0])


def test_resize_down_up(benchmark, record_ratio, image):
    hr = image.rgb[None]
    h, w = hr.shape[-2:]
    benchmark(lambda: imresize(imresize(hr, scale=1 / SCALE), scale=SCALE, size=(h, w)))
    arr = image.rgb.permute(1, 2, 0).numpy()
    peer = best_seconds(lambda: peer_imresize(peer_imresize(arr, 1 / SCALE), SCALE), 1)
    record_ratio(peer / benchmark.stats.stats.min, "peer imresize time / ours (x2.7 down+up)")


def test_metrics_psnr_ssim(benchmark, record_ratio, image):
    hr = image.rgb[None]
    _, lr, case = make_case(hr, SCALE)
    sr = upscale(lr, SCALE, case.sr_size)
    ref = prepare_reference(image.rgb, dtype=torch.float32)
    benchmark(lambda: score(sr, None, SCALE, reference=ref))
    q = torch.floor(sr.clamp(0, 1) * 255 + 0.5)[0].permute(1, 2, 0).numpy()
    crop = image.rgb[:, : case.sr_size[0], : case.sr_size[1]].permute(1, 2, 0).numpy() * 255
    luma = [65.481 / 255, 128.553 / 255, 24.966 / 255]
    y_sr, y_hr = (np.floor(a @ luma + 16.5)[3:-3, 3:-3] for a in (q, crop))

    def peer():
        peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
        structural_similarity(
            y_hr,
            y_sr,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )

    record_ratio(best_seconds(peer, 2) / benchmark.stats.stats.min, "skimage PSNR+SSIM / ours")


def test_bicubic_pair(benchmark, record_ratio, image):
    """One (image, scale) pair end to end: LR, bicubic SR, PSNR + SSIM (HR side prepared)."""
    hr = image.rgb[None]
    ref = prepare_reference(image.rgb, dtype=torch.float32)

    def ours():
        _, lr, case = make_case(hr, SCALE)
        return score(upscale(lr, SCALE, case.sr_size), None, SCALE, reference=ref)

    benchmark(ours)
    u8 = np.asarray(Image.open(image.path).convert("RGB"))
    peer = best_seconds(lambda: peer_pair(u8, SCALE), 1)
    record_ratio(peer / benchmark.stats.stats.min, "peer pipeline pair time / ours")


def test_bicubic_pair_native(benchmark, record_ratio, image):
    """The same pair through the native kernels (odesr.native; what `odesr eval --model bicubic`
    runs when they are built), HR side prepared."""
    from odesr import native

    if not native.available():
        pytest.skip(f"native kernels unavailable: {native.load_error() or native.ENV + '=0'}")
    benchmark(lambda: native.bicubic_pair(image.rgb, SCALE, "metasr"))
    u8 = np.asarray(Image.open(image.path).convert("RGB"))
    peer = best_seconds(lambda: peer_pair(u8, SCALE), 1)
    record_ratio(peer / benchmark.stats.stats.min, "peer pipeline pair time / ours (native)")


@pytest.mark.parametrize("name", ["vdsr-ode", "rdn-ode"])
def test_ode_solve(benchmark, record_ratio, matmul_gflops, name):
    """rk4 (3/8 rule) at step 1 from t0 = 2 (4 NFE), cpu presets, 96x128 image."""
    from odesr.models import build

    torch.manual_seed(0)
    model = build({"name": name, "preset": "cpu"}).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        benchmark.pedantic(
            lambda: model.solve(x, 2.0, method="rk4", step_size=1.0), rounds=3, warmup_rounds=1
        )
    flops = 2 * conv_macs(model.func.net, 96, 128) * 4
    rate = flops / benchmark.stats.stats.min / 1e9
    record_ratio(rate / matmul_gflops, "GFLOP/s / float32 matmul peak (1 thread)")


@pytest.mark.parametrize("name", ["vdsr-ode", "rdn-ode"])
def test_training_step(benchmark, record_ratio, matmul_gflops, name):
    """One endpoint training step of the cpu recipe's shape (batch 8 of 48 px, rk4 at step 1)
    from t0 = 3 (8 NFE): L1, backward, Adam."""
    from odesr.models import build

    torch.manual_seed(0)
    model = build({"name": name, "preset": "cpu"}).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, target = torch.rand(8, 3, 48, 48), torch.rand(8, 3, 48, 48)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(x, 3.0, method="rk4", step_size=1.0), target)
        loss.backward()
        opt.step()

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    flops = 3 * 2 * conv_macs(model.func.net, 48, 48) * 8 * 8  # forward + 2x backward
    rate = flops / benchmark.stats.stats.min / 1e9
    record_ratio(rate / matmul_gflops, "GFLOP/s (fwd+bwd) / float32 matmul peak (1 thread)")
