"""Scale-balanced loss weights (odesr.scale_weight) and their use in training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from odesr.objectives import bicubic_residuals, loss_weights
from odesr.scale_weight import scale_weights, weight_of, weighted_l1
from odesr.train import TrainError

SCALES = [round(1.1 + 0.1 * k, 1) for k in range(30)]


def test_inv_span_is_proportional_to_one_over_span_with_mean_one():
    w = scale_weights("inv_span", SCALES)
    assert math.isclose(sum(w.values()) / len(w), 1.0, rel_tol=1e-12)
    # by hand: sum_k 10/k over k = 1..30, mean 1 => w(1.1) = 10 / (sum / 30)
    harmonic = sum(10.0 / k for k in range(1, 31))
    assert math.isclose(w[1.1], 10.0 / (harmonic / 30), rel_tol=1e-12)
    assert math.isclose(w[1.1] / w[4.0], 30.0, rel_tol=1e-12)


def test_inv_sqrt_span_ratio_and_none():
    w = scale_weights("inv_sqrt_span", SCALES)
    assert math.isclose(w[1.1] / w[4.0], math.sqrt(30.0), rel_tol=1e-12)
    assert set(scale_weights("none", SCALES).values()) == {1.0}


def test_inv_residual_uses_the_table_and_refuses_gaps():
    residuals = {1.5: 0.01, 2.0: 0.02, 4.0: 0.04}
    w = scale_weights("inv_residual", [1.5, 2.0, 4.0], residuals)
    assert math.isclose(w[1.5] / w[4.0], 4.0) and math.isclose(sum(w.values()), 3.0)
    with pytest.raises(ValueError, match="no residual"):
        scale_weights("inv_residual", [1.5, 3.0], residuals)
    with pytest.raises(ValueError, match="one of"):
        scale_weights("sqrt", SCALES)
    with pytest.raises(ValueError, match="> 1"):
        scale_weights("inv_span", [1.0, 2.0])


def test_weighted_l1_reduces_to_l1_and_weights_samples():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(4, 3, 5, 5, generator=gen), torch.rand(4, 3, 5, 5, generator=gen)
    assert torch.equal(weighted_l1(pred, target, None), F.l1_loss(pred, target))
    ones = torch.ones(4, dtype=torch.float64)
    assert torch.allclose(weighted_l1(pred, target, ones), F.l1_loss(pred, target))
    w = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    expected = 2.0 * (pred[0] - target[0]).abs().mean() / 4
    assert torch.allclose(weighted_l1(pred, target, w), expected)
    table = {1.5: 3.0, 2.0: 0.5}
    assert weight_of(table, 1.5) == 3.0
    got = weight_of(table, torch.tensor([2.0, 1.5], dtype=torch.float64))
    assert got.tolist() == [0.5, 3.0]


def test_bicubic_residuals_grow_with_scale_and_are_seed_free():
    gen = torch.Generator().manual_seed(1)
    # a smooth image plus texture: bicubic loses more of it at larger scales
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    img = (0.5 + 0.25 * torch.sin(xx / 2.3) * torch.cos(yy / 3.1)).expand(3, -1, -1).clone()
    img = img + 0.05 * torch.rand(3, 96, 96, generator=gen)
    cfg = {"patch_size": 32, "scales": [1.1, 2.0, 4.0], "align_grid": True}
    table = bicubic_residuals([img], cfg, n_patches=4)
    assert table[1.1] < table[2.0] < table[4.0]
    assert table == bicubic_residuals([img], cfg, n_patches=4)  # its own generator
    w = loss_weights({**cfg, "scale_weight": "inv_residual"}, [img], cfg["scales"])
    assert w[1.1] > w[2.0] > w[4.0]
    assert loss_weights({**cfg, "scale_weight": "none"}, [img], cfg["scales"]) is None
    with pytest.raises(TrainError, match="> 1"):
        loss_weights({**cfg, "scale_weight": "inv_span"}, [img], [1.0, 2.0])
