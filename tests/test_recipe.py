"""Issue 9: initialisation, t-plane modes, the training recipe (schedule, clipping, EMA, mixed
scales, held-out validation). References: the He-init formula, hand-computed schedules, explicit
per-sample solves, the bicubic input itself."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import odesr.train as tr
from odesr.batches import holdout_files, load_training_images
from odesr.checkpoints import load
from odesr.degrade import upscale
from odesr.models import build
from odesr.monitor import load_val_images
from odesr.nets import RDN, VDSR, t_plane_value, with_t_plane
from odesr.objectives import build_model, mixed_scales_ok, solve_per_sample
from odesr.train_state import lr_factor
from tests.test_train import _cfg, _data_root, _final, _log, _run, _same_state

REPO = Path(__file__).resolve().parents[1]
RESIDUAL_MODELS = ["vdsr-ode", "rdn-ode", "vdsr+t", "rdn+t"]
RECIPE_NET = {"init": "he", "zero_init_last": True}  # the cpu recipe 2's backbone settings


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
@pytest.mark.parametrize("t_plane", ["raw", "normalized"])
@pytest.mark.parametrize("name", RESIDUAL_MODELS)
def test_untrained_residual_model_returns_its_bicubic_input(name, t_plane, preset):
    torch.manual_seed(0)
    spec = {"name": name, "preset": preset, "t_plane": t_plane, "net": RECIPE_NET}
    model = build(spec).eval()
    lr = torch.rand(1, 3, 9, 11)
    for scale in (1.1, 2.0, 3.7):
        sr = model.super_resolve(lr, scale).image
        bicubic = upscale(lr, scale, sr.shape[-2:])
        assert (sr - bicubic).abs().max() <= 1e-6, (name, scale)


def test_he_init_matches_the_formula():
    """Kaiming normal, fan_in, ReLU gain: std = sqrt(2 / (9 * C_in)); biases zero."""
    torch.manual_seed(0)
    net = VDSR(depth=20, width=64, init="he")
    conv = net.body[4]
    assert abs(conv.weight.std().item() / math.sqrt(2 / (9 * 64)) - 1) < 0.03
    assert torch.all(conv.bias == 0)
    rdn = RDN(D=2, C=2, G0=32, G=16, zero_init_last=True, init="he")
    w = rdn.rdbs[0].lff.weight  # 1x1 over G0 + C*G = 64 channels
    assert abs(w.std().item() / math.sqrt(2 / 64) - 1) < 0.1
    assert torch.all(rdn.tail.weight == 0) and torch.all(rdn.tail.bias == 0)
    default = VDSR(depth=3, width=8).body[0].weight  # recipe 1: PyTorch's default
    assert default.abs().max() <= 1 / math.sqrt(4 * 9)  # PyTorch's kaiming_uniform(a=sqrt 5) bound
    with pytest.raises(ValueError, match="unknown init"):
        VDSR(3, 8, init="xavier")


def test_t_plane_values():
    assert t_plane_value(4.0, "raw") == 4.0
    assert t_plane_value(1.0, "normalized") == 0.0 and t_plane_value(4.0, "normalized") == 1.0
    plane = with_t_plane(torch.zeros(2, 3, 2, 2), torch.tensor([2.5, 1.6]), "normalized")[:, 3]
    assert torch.allclose(plane[:, 0, 0], torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="unknown t_plane"):
        build({"name": "vdsr+t", "preset": "smoke", "t_plane": "scaled"})


def test_spec_without_t_plane_rebuilds_raw():
    """Checkpoints from before t_plane (e.g. recipe-1 ones) have no such key in their spec: they
    rebuild raw, i.e. f = net(cat[I, t]); the bundled recipe-2 model stores `normalized`."""
    assert load(REPO / "odesr" / "weights" / "vdsr-ode-cpu.pt").spec["t_plane"] == "normalized"
    spec = {"name": "vdsr-ode", "preset": "smoke", "net": {"init": "he"}}
    model = build(spec)
    assert model.spec["t_plane"] == "raw"
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        got = model.func(torch.tensor(3.0), x)
        raw = model.func.net(torch.cat([x, torch.full((1, 1, 12, 12), 3.0)], dim=1))
        norm = model.func.net(torch.cat([x, torch.full((1, 1, 12, 12), 2 / 3)], dim=1))
    # the same up to channels_last rounding, and far from what a normalised plane gives
    torch.testing.assert_close(got, raw, atol=1e-5, rtol=1e-5)
    assert (got - norm).abs().max() > 1e-3


def test_lr_factor_warmup_then_cosine_or_step():
    cfg = {"warmup_steps": 4, "lr_schedule": "cosine", "max_steps": 14, "lr_halve_every": 3}
    assert [lr_factor(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, cfg) == 1.0
    assert lr_factor(9, cfg) == pytest.approx(0.5)  # halfway through the 10 cosine steps
    assert lr_factor(14, cfg) == pytest.approx(0.0)
    step = {**cfg, "lr_schedule": "step", "warmup_steps": 0}
    assert [lr_factor(s, step) for s in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_per_sample_solve_equals_separate_solves():
    torch.manual_seed(0)
    model = build({"name": "vdsr-ode", "preset": "smoke"})
    x = torch.rand(3, 3, 10, 10)
    scales = torch.tensor([1.3, 2.5, 4.0], dtype=torch.float64)
    for method, steps in (("rk4", 1), ("rk4", 3), ("euler", 2)):
        mixed = solve_per_sample(model.func, x, scales, method=method, steps=steps)
        for i, s in enumerate(scales.tolist()):
            alone = model(x[i : i + 1], s, method=method, steps=steps)
            torch.testing.assert_close(mixed[i : i + 1], alone, atol=5e-5, rtol=0)


def test_mixed_scales_need_a_fixed_step_count():
    ode = build({"name": "vdsr-ode", "preset": "smoke"})
    cfg = _cfg("smoke/vdsr-ode")
    assert not mixed_scales_ok(ode, {**cfg, "train_solver": {"method": "rk4", "step_size": 1}})
    assert mixed_scales_ok(ode, {**cfg, "train_solver": {"method": "rk4", "steps": 1}})
    assert mixed_scales_ok(build({"name": "vdsr+t", "preset": "smoke"}), cfg)
    assert not mixed_scales_ok(build({"name": "meta-rdn", "preset": "smoke"}), cfg)


def test_holdout_images_are_not_trained_on(tmp_path):
    root = str(_data_root())
    cfg = _cfg("smoke/vdsr+t", data=["Set5"], holdout={"dataset": "Set5", "n_images": 3})
    held = holdout_files(cfg, root)
    assert len(held) == 3
    everything = load_training_images(["Set5"], root)
    kept = load_training_images(["Set5"], root, exclude=held)
    assert len(kept) == len(everything) - 3
    cfg["val"] = {**cfg["val"], "dataset": "holdout", "every": 1, "n_images": 2}
    assert [img.path for img in load_val_images(cfg, root)] == held[:2]
    with pytest.raises(tr.TrainError, match="leaves no Set5 image"):
        holdout_files({**cfg, "holdout": {"dataset": "Set5", "n_images": 10_000}}, root)


def _recipe(**over) -> dict:
    recipe = dict(
        lr=1e-3,
        lr_schedule="cosine",
        warmup_steps=2,
        grad_clip=0.05,
        ema=0.9,
        mixed_scales=True,
        train_solver={"method": "rk4", "steps": 1, "step_size": None},
        model={"name": "vdsr-ode", "preset": "smoke", "t_plane": "normalized", "net": RECIPE_NET},
    )
    recipe.update(over)
    return recipe


def test_new_recipe_resumes_bitwise_and_final_holds_the_ema(tmp_path, monkeypatch):
    cfg = _cfg("smoke/vdsr-ode", max_steps=6, checkpoint_every=3, **_recipe())
    _run(cfg, tmp_path / "straight")
    real = tr._train_step

    def interrupted(run, *args):
        if run.step == 4:
            raise KeyboardInterrupt
        return real(run, *args)

    monkeypatch.setattr(tr, "_train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "split")
    monkeypatch.setattr(tr, "_train_step", real)
    with pytest.raises(tr.TrainError, match="different max_steps"):  # cosine ends at max_steps
        _run({**cfg, "max_steps": 8}, tmp_path / "split", resume=True)
    _run(cfg, tmp_path / "split", resume=True)
    (fa, ea), (fb, _) = _final(tmp_path / "straight"), _final(tmp_path / "split")
    assert _same_state(fa, fb) and ea["weights"] == "ema"
    raw, extra = _final(tmp_path / "straight", "last.pt")
    assert _same_state(extra["ema"], fa) and not _same_state(raw, fa)
    log = [r for r in _log(tmp_path / "straight") if "loss" in r and "done" not in r]
    assert len(log) == 6 and not any("scale" in r for r in log)  # mixed batches: no one scale
    assert all(r["grad_norm"] > 0 for r in log)
    lrs = [r["lr"] for r in log]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(0.0)


def test_recipe_config_errors():
    with pytest.raises(tr.TrainError, match="lr_schedule"):
        _cfg("smoke/vdsr+t", lr_schedule="linear")
    with pytest.raises(tr.TrainError, match="ema"):
        _cfg("smoke/vdsr+t", ema=1.5)
    cfg = _cfg("smoke/vdsr-ode", mixed_scales=True)  # step_size grid: not mixable
    with pytest.raises(tr.TrainError, match="mixed_scales"):
        build_model(cfg, torch.device("cpu"))


def test_named_solver_grids():
    from odesr.ode import grid_options

    model = build({"name": "vdsr-ode", "preset": "smoke"})
    assert model.spec["steps"] == 1 and model.spec["step_size"] is None  # bare odeint reading
    x = torch.rand(1, 3, 8, 8)
    nfe = {}
    for grid in ("one-step", "h0.1", "h0.25"):
        model.func.reset()
        model(x, 4.0, grid=grid)
        nfe[grid] = model.func.nfe
    assert nfe == {"one-step": 4, "h0.1": 4 * 30, "h0.25": 4 * 12}  # rk4: 4 stages per step
    assert grid_options({"method": "rk4", "grid": "h0.25"}) == {
        "method": "rk4",
        "steps": None,
        "step_size": 0.25,
    }
    with pytest.raises(ValueError, match="unknown solver grid"):
        grid_options({"grid": "h0.5"})
    with pytest.raises(ValueError, match="not both"):
        grid_options({"grid": "h0.1", "steps": 3})
