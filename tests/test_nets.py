"""Backbones: shapes, the t plane, presets and parameter counts."""

from __future__ import annotations

import pytest
import torch

from odesr.nets import PRESETS, RDN, VDSR, build_backbone, count_params, preset, with_t_plane

pytestmark = pytest.mark.usefixtures("one_thread")


def test_t_plane_scalar_and_per_sample():
    x = torch.rand(2, 3, 5, 6)
    y = with_t_plane(x, 2.5)
    assert y.shape == (2, 4, 5, 6)
    assert torch.equal(y[:, :3], x)
    assert torch.all(y[:, 3] == 2.5)
    z = with_t_plane(x, torch.tensor([1.5, 3.0]))
    assert torch.all(z[0, 3] == 1.5) and torch.all(z[1, 3] == 3.0)


@pytest.mark.parametrize("backbone", ["vdsr", "rdn"])
def test_same_size_output(backbone):
    net = build_backbone(backbone, "smoke")
    x = torch.rand(2, 4, 9, 11)
    assert net(x).shape == (2, 3, 9, 11)


def test_t_plane_changes_output():
    torch.manual_seed(0)
    net = build_backbone("vdsr", "smoke")
    x = torch.rand(1, 3, 8, 8)
    assert not torch.allclose(net(with_t_plane(x, 1.5)), net(with_t_plane(x, 3.5)))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rdn_subpixel_upsampler(scale):
    net = RDN(**preset("rdn", "smoke"), in_ch=3, upscale=scale)
    assert net(torch.rand(1, 3, 5, 7)).shape == (1, 3, 5 * scale, 7 * scale)


def test_rdn_features_and_bad_scale():
    net = RDN(**preset("rdn", "smoke"), in_ch=3, upsampler=False)
    assert net(torch.rand(1, 3, 5, 7)).shape == (1, 8, 5, 7)
    with pytest.raises(ValueError):
        RDN(**preset("rdn", "smoke"), upscale=5)


def test_presets_and_errors():
    assert set(PRESETS["vdsr"]) == set(PRESETS["rdn"]) == {"paper", "cpu", "smoke"}
    p = preset("vdsr", "paper")
    p["depth"] = 1  # a fresh copy
    assert preset("vdsr", "paper")["depth"] == 20
    with pytest.raises(ValueError):
        preset("vdsr", "huge")
    with pytest.raises(ValueError):
        preset("srcnn", "paper")


def test_paper_param_counts():
    with torch.device("meta"):
        vdsr = build_backbone("vdsr", "paper")
        rdn = build_backbone("rdn", "paper")
    assert count_params(vdsr) == 668_803  # ~0.67M (4 input channels)
    assert 21.5e6 < count_params(rdn) < 22.5e6  # ~22M
    assert vdsr.receptive_radius == 20
    assert rdn.receptive_radius == 2 + 16 * 8 + 2


def test_receptive_radius_is_tight():
    torch.manual_seed(0)
    for net in (build_backbone("vdsr", "smoke"), build_backbone("rdn", "smoke")):
        r = net.receptive_radius
        n = 2 * r + 9
        x = torch.rand(1, 4, n, n)
        x2 = x.clone()
        x2[..., 0, 0] += 1.0
        diff = (net(x) - net(x2)).abs().sum(1)[0]
        changed = (diff > 0).nonzero()
        assert changed[:, 0].max() <= r and changed[:, 1].max() <= r


def test_vdsr_zero_init_last():
    net = VDSR(3, 8, zero_init_last=True)
    assert torch.all(net(torch.rand(1, 4, 6, 6)) == 0)
