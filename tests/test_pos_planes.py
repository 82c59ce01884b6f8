"""Position planes (odesr.nets.grid_offset_planes): the pixel's offset on the LR grid."""

from __future__ import annotations

import math

import pytest
import torch

from odesr.batches import patch_origin, path_patch
from odesr.degrade import path_pad, path_point, quantize, upscale
from odesr.models import ModelError, build, set_grid_origin
from odesr.nets import grid_offset_planes
from odesr.resize import imresize


def test_planes_by_hand() -> None:
    x = torch.zeros(1, 3, 4, 5)
    p = grid_offset_planes(x, 2.0)
    # x2: u = (y + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> frac 0.75, 0.25, 0.75, 0.25
    assert p.shape == (1, 2, 4, 5)
    assert p[0, 0, :, 0].tolist() == [0.25, -0.25, 0.25, -0.25]
    assert p[0, 1, 0, :].tolist() == [0.25, -0.25, 0.25, -0.25, 0.25]
    # an origin shifts the frame; per-sample t
    q = grid_offset_planes(
        torch.zeros(2, 3, 1, 1), torch.tensor([1.1, 4.0]), torch.tensor([[3, 0], [0, 5]])
    )
    u = (3 + 0.5) / 1.1 - 0.5
    assert math.isclose(float(q[0, 0, 0, 0]), u - math.floor(u) - 0.5, abs_tol=1e-6)
    v = (5 + 0.5) / 4.0 - 0.5
    assert math.isclose(float(q[1, 1, 0, 0]), v - math.floor(v) - 0.5, abs_tol=1e-6)


@pytest.mark.parametrize("t", [1.1, 2.0, 2.5, 3.0])
def test_training_patch_planes_equal_the_whole_image_planes(t: float) -> None:
    """A training patch's I(t) is the same crop of the whole image's I(t) (``path_point``,
    whose LR grid starts at the padded corner, ``path_pad(t)`` pixels out), so its planes, from
    :func:`patch_origin`, equal the whole image's at the same pixels in that frame."""
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(3, 90, 100, generator=gen)
    top, left, size = 33, 41, 24
    x, _ = path_patch(img, top, left, size, t)
    full = path_point(img, t, quantize_lr=True)
    assert torch.allclose(x, full[..., top : top + size, left : left + size], atol=1e-5)
    origin = torch.tensor([patch_origin(top, left, t)])
    pad = torch.tensor([[path_pad(t), path_pad(t)]])
    patch_planes = grid_offset_planes(x[None], t, origin)
    full_planes = grid_offset_planes(full[None], t, pad)[..., top : top + size, left : left + size]
    assert torch.allclose(patch_planes, full_planes, atol=1e-9)


def _on_grid_values_are_lr_samples(image: torch.Tensor, planes: torch.Tensor) -> None:
    """Bicubic enlargement interpolates: a pixel whose planes say 'on an LR sample' in both
    axes (-0.5) holds that 8-bit LR sample exactly; the others mostly do not."""
    on = (planes[0, 0].abs() - 0.5).abs().lt(1e-9) & (planes[0, 1].abs() - 0.5).abs().lt(1e-9)
    assert on.any() and (~on).any()
    levels = image * 255
    on_err = (levels[:, on] - levels[:, on].round()).abs().max()
    off_err = (levels[:, ~on] - levels[:, ~on].round()).abs()
    assert on_err < 1e-3
    assert (off_err > 1e-3).float().mean() > 0.9


def test_planes_mark_the_lr_samples_of_a_training_patch_and_of_a_whole_image() -> None:
    """An independent check of the convention: at x3 every third pixel sits on an LR sample."""
    gen = torch.Generator().manual_seed(1)
    img = torch.rand(3, 60, 66, generator=gen)
    t = 3.0
    x, _ = path_patch(img, 17, 29, 24, t, quantize_lr=True)
    _on_grid_values_are_lr_samples(
        x, grid_offset_planes(x[None], t, torch.tensor([patch_origin(17, 29, t)]))
    )
    lr = quantize(imresize(img[None], scale=1 / t))
    whole = upscale(lr, t, (60, 66))[0]
    _on_grid_values_are_lr_samples(whole, grid_offset_planes(whole[None], t))


@pytest.mark.parametrize("name", ["vdsr+t", "vdsr-ode"])
def test_pos_models_take_two_more_channels_and_refuse_tiles(name: str) -> None:
    model = build({"name": name, "preset": "smoke", "pos": True})
    assert model.spec["pos"] is True and "pos" not in build({"name": name, "preset": "smoke"}).spec
    lr = torch.rand(1, 3, 12, 12)
    set_grid_origin(model, torch.zeros(8, 2))  # a stale training origin is reset
    out = model.super_resolve(lr, 2.0).image
    assert out.shape == (1, 3, 24, 24)
    with pytest.raises(ModelError, match="whole images"):
        model.super_resolve(lr, 2.0, tile=8)
    with pytest.raises((ValueError, ModelError)):
        build({"name": name, "preset": "smoke", "pos": "yes"})


@pytest.mark.parametrize("name", ["smoke/vdsr+t-pos", "smoke/vdsr-ode-pos"])
def test_pos_models_train_and_load(tmp_path, data_root, name: str) -> None:
    """Mixed-scale training feeds each sample's origin; the saved model evaluates whole images."""
    from odesr.checkpoints import load
    from odesr.train import load_config, read_checkpoint, train

    over = {"data": ["Set5"], "val": {"every": 0}, "max_steps": 3, "mixed_scales": True}
    if name.endswith("ode-pos"):
        over["train_solver"] = {"method": "euler", "steps": 1, "step_size": None}
    cfg = load_config(name, over)
    train(cfg, tmp_path, device="cpu", data_root=str(data_root), progress=False)
    state, extra = read_checkpoint(tmp_path / "final.pt")
    assert extra["config"]["model"]["pos"] is True and extra["step"] == 3
    model = load(tmp_path / "final.pt")
    assert model.super_resolve(torch.rand(1, 3, 10, 10), 2.5).image.shape == (1, 3, 25, 25)
