"""Objective ``hr`` + solver ``path-step`` (issue 10, item 4) and the path-following analysis
(item 3). References are computed here with ``imresize`` directly (shrink by 1/t, enlarge back
to the image size), never with the stepper or ``path_point``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from odesr.data import list_images, load_image
from odesr.degrade import make_case
from odesr.evaluate import EvalSettings, evaluate_images
from odesr.models import ModelError, build
from odesr.objectives import solve_per_sample
from odesr.ode import solve
from odesr.path_following import path_following
from odesr.resize import imresize
from odesr.train import TrainError, load_config, train


def _down_up(hr: torch.Tensor, t: float) -> torch.Tensor:
    """I(t) by hand: MATLAB bicubic by 1/t, then by t back to hr's size (grid at pixel 0)."""
    if t == 1:
        return hr
    return imresize(imresize(hr, scale=1.0 / t), scale=t, size=hr.shape[-2:])


def _image(h: int = 37, w: int = 41) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    return torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(
    "t0,grid",
    [
        (2.0, {"steps": 1}),
        (3.0, {"step_size": 0.5}),
        (4.0, {"step_size": 0.25}),
        (2.5, {"step_size": 0.1}),
        (3.35, {"steps": 3}),
    ],
)
def test_identity_on_hr_reproduces_the_path_on_the_grid(one_thread, t0, grid) -> None:
    hr = _image()
    calls = []

    def g(t, y):  # the perfect HR predictor
        calls.append(float(t))
        return hr

    sol = solve(g, _down_up(hr, t0), t0, method="path-step", return_trajectory=True, **grid)
    assert sol.nfe == len(sol.times) - 1 == len(calls)
    for t, state in zip(sol.times.tolist(), sol.trajectory, strict=True):
        assert (state - _down_up(hr, float(t))).abs().max().item() < 1e-9, t
    assert (sol.image - hr).abs().max().item() < 1e-9


def test_path_step_telescopes_for_a_fixed_prediction(one_thread) -> None:
    # g constant = G: I_1 = I0 - P_t0(G) + G on any grid (the intermediate terms cancel)
    gen = torch.Generator().manual_seed(1)
    big_g = torch.rand(1, 3, 30, 33, generator=gen, dtype=torch.float64)
    y0 = torch.rand(1, 3, 30, 33, generator=gen, dtype=torch.float64)
    expected = y0 - _down_up(big_g, 3.0) + big_g
    for grid in ({"steps": 1}, {"step_size": 0.3}, {"steps": 7}):
        out = solve(lambda t, y: big_g, y0, 3.0, method="path-step", **grid).image
        assert (out - expected).abs().max().item() < 1e-9


def test_path_step_is_differentiable(one_thread) -> None:
    y0 = _image(20, 22).float().requires_grad_(True)
    w = torch.tensor(0.7, requires_grad=True)
    out = solve(lambda t, y: w * y, y0, 2.0, method="path-step", step_size=0.5).image
    out.sum().backward()
    assert y0.grad is not None and w.grad is not None and math.isfinite(float(w.grad))


def _hr_model(**kw):
    spec = dict(name="vdsr-ode", preset="smoke", predicts="hr", method="path-step", steps=1)
    return build({**spec, **kw})


def test_hr_model_pairs_predicts_with_path_step() -> None:
    model = _hr_model()
    assert model.spec["predicts"] == "hr" and model.solver.label() == "path-step n=1"
    assert "predicts" not in build({"name": "vdsr-ode", "preset": "smoke"}).spec  # old specs
    with pytest.raises(ValueError, match="path-step"):
        _hr_model(method="rk4")
    with pytest.raises(ValueError, match="path-step"):
        build({"name": "vdsr-ode", "preset": "smoke", "method": "path-step"})
    with pytest.raises(ValueError, match="predicts"):
        _hr_model(predicts="noise")
    lr = torch.rand(1, 3, 12, 12)
    with pytest.raises(ModelError, match="path-step"):
        model.super_resolve(lr, 2.0, solver={"method": "euler"})
    with pytest.raises(ModelError, match="tiles"):
        model.super_resolve(lr, 2.0, tile=16)
    whole = model.super_resolve(lr, 2.0).image  # a tile holding the whole output is no tile
    assert torch.equal(model.super_resolve(lr, 2.0, tile=24).image, whole)
    with pytest.raises(TrainError, match="path-step"):
        solve_per_sample(model.func, lr, torch.tensor([2.0]), method="path-step", steps=1)


def test_hr_model_net_is_a_residual_hr_predictor(one_thread) -> None:
    model = _hr_model(net={"zero_init_last": True})  # untrained: g(I, t) = I exactly
    x = torch.rand(2, 3, 10, 10)
    assert torch.equal(model.func(torch.tensor(2.0), x), x)


def test_objective_hr_needs_an_hr_model(tmp_path: Path) -> None:
    for name, objective in (("smoke/vdsr-ode", "hr"), ("smoke/vdsr-ode-hr", "endpoint")):
        cfg = load_config(name, {"objective": objective, "max_steps": 1, "data": ["T91"]})
        with pytest.raises(TrainError, match="do not go together"):
            train(cfg, tmp_path / name.replace("/", "-"), progress=False)


def test_smoke_hr_training_and_evaluation(tmp_path: Path, data_root: Path, one_thread) -> None:
    over = {"max_steps": 6, "checkpoint_every": 0, "data": ["Set5"]}  # 5 images load fast
    cfg = load_config("smoke/vdsr-ode-hr", over)
    assert cfg["objective"] == "hr" and cfg["mixed_scales"] is False
    res = train(cfg, tmp_path / "run", data_root=str(data_root), progress=False)
    assert res["step"] == 6 and math.isfinite(res["loss"])
    from odesr.checkpoints import load

    model = load(tmp_path / "run" / "final.pt")
    assert model.spec["predicts"] == "hr" and model.spec["train_solver"] is None
    images = [load_image(f) for f in list_images("Set5", data_root)[:1]]
    rows = evaluate_images(model, images, [2.0, 2.5], EvalSettings())
    assert [r["nfe"] for r in rows] == [1, 1] and all(math.isfinite(r["psnr"]) for r in rows)


@pytest.fixture(scope="module")
def small_image(data_root: Path):
    img = load_image(list_images("Set5", data_root)[2])  # butterfly, 256 x 256
    return dataclasses.replace(img, rgb=img.rgb[:, :96, :90].contiguous())


def test_path_following_of_a_perfect_predictor(small_image, one_thread) -> None:
    # g = the evaluation's HR region: the states are I(t_i) up to the LR's 8-bit rounding
    model = _hr_model()
    scale = 3.0
    ref, _, _ = make_case(small_image.rgb[None], scale)
    model.func.forward = lambda t, y: ref.to(y.dtype)
    rows = path_following(model, [small_image], [scale], {"h0.5": {"step_size": 0.5}})
    assert [r["t"] for r in rows] == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert all(r["psnr_path"] > 45 for r in rows), [r["psnr_path"] for r in rows]
    assert rows[-1]["psnr_path"] == rows[-1]["psnr_hr"] > 45
    assert rows[-1]["psnr_path_hr"] == math.inf  # I(1) is HR


def test_path_following_of_a_still_flow_is_bicubic(small_image, one_thread) -> None:
    # f = 0 (zero last conv): the state stays the bicubic input; its endpoint score is bicubic's
    model = build({"name": "vdsr-ode", "preset": "smoke", "net": {"zero_init_last": True}})
    rows = path_following(model, [small_image], [2.0], {"h0.25": {"step_size": 0.25}})
    bicubic = build({"name": "bicubic"})
    settings = EvalSettings(metric_dtype=torch.float64, workers=1)
    expected = evaluate_images(bicubic, [small_image], [2.0], settings)[0]["psnr"]
    assert rows[-1]["t"] == 1.0 and rows[-1]["psnr_hr"] == pytest.approx(expected, abs=1e-6)
    assert rows[-1]["psnr_path"] == rows[-1]["psnr_hr"]
    # the bicubic input is I(t0): from the LR's 8-bit rounding only, far above its score vs HR
    assert rows[0]["psnr_path"] > 45 > rows[0]["psnr_path_hr"]
    path = [r["psnr_path"] for r in rows]  # a still state drifts away from I(t) as t -> 1
    assert path == sorted(path, reverse=True)


def test_grid_names_parse() -> None:
    from bench.path_following import parse_grids

    assert parse_grids("one-step, h0.5,h0.1") == {
        "one-step": {"steps": 1},
        "h0.5": {"step_size": 0.5},
        "h0.1": {"step_size": 0.1},
    }
    for bad in ("h0", "x0.5", "h-1", ","):
        with pytest.raises(ValueError):
            parse_grids(bad)


def test_compare_rows_pairs_by_image(tmp_path: Path) -> None:
    from bench.compare_rows import main

    def write(name: str, model: str, values: dict) -> str:
        lines = ["model,dataset,image,scale,psnr"]
        lines += [f"{model},B100,{img},{s},{p}" for (img, s), p in values.items()]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return str(tmp_path / name)

    ref = write("ref.csv", "bicubic", {("a", 2.0): 30.0, ("b", 2.0): 20.0, ("c", 2.0): 10.0})
    new = write("new.csv", "mine", {("a", 2.0): 31.0, ("b", 2.0): 19.5})  # c missing: unpaired
    out = tmp_path / "cmp.md"
    assert main([ref, new, "--out", str(out)]) == 0
    # paired over a, b only: means 25.00 and 25.25, difference +0.25 mean, -0.5 worst
    assert "| x2 | 2 | 25.00 | 25.25 | +0.250 / -0.500 |" in out.read_text()
    assert main([ref, "--out", str(out)]) == 2


@pytest.mark.parametrize("scale", [2.0, 2.5, 3.0, 4.0])
def test_path_step_projection_shares_the_evaluation_lr_grid(small_image, scale) -> None:
    # P_t = path_point(., t, pad=0) puts the LR grid where the evaluation's LR has it (pixel 0),
    # so P_t0(HR) is the bicubic input up to 8-bit rounding and borders; the default margin of
    # path_point shifts the grid by (ceil(4t) + 2) mod t pixels (2 at x4) and does not
    from odesr.degrade import path_point, upscale
    from odesr.metrics import psnr

    ref, lr, case = make_case(small_image.rgb[None].double(), scale)
    bicubic_input = upscale(lr, scale, case.sr_size)
    aligned = float(psnr(path_point(ref, scale, pad=0), bicubic_input, 8)[0])
    assert aligned > 48
    if scale != 2.0:  # pad 10 is a multiple of 2: the one scale where both agree
        assert float(psnr(path_point(ref, scale), bicubic_input, 8)[0]) < aligned - 8
