"""`python -m bench plan`: NFE and FLOPs checked against hand counts, hours against the stored
throughputs, and the printed plan of a small experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.experiment import load_experiment
from bench.plan import Costs, flops_per_pixel, format_plan, nfe_per_image, plan_experiment


def _plan(exp_id: str, model: str, profile: str):
    return load_experiment(exp_id).model_plans(model, profile)[0]


def test_flops_per_pixel_match_a_hand_count() -> None:
    # paper VDSR+t: 20 3x3 convs, 4 -> 64, 18 x 64 -> 64, 64 -> 3; 2 FLOPs per MAC
    hand = 2 * 9 * (4 * 64 + 18 * 64 * 64 + 64 * 3)
    plan = _plan("table1", "vdsr+t", "paper")
    assert flops_per_pixel(plan, 2.0) == pytest.approx(hand, rel=1e-3)
    assert flops_per_pixel(plan, 3.7) == flops_per_pixel(plan, 2.0)  # runs at the output size
    ode = _plan("table1", "vdsr-ode", "paper")  # same backbone, one evaluation of f
    assert flops_per_pixel(ode, 4.0) == pytest.approx(hand, rel=1e-3)


def test_lr_size_models_fit_between_probes() -> None:
    from bench import plan as P

    meta = _plan("table1", "meta-rdn", "paper")
    fitted = flops_per_pixel(meta, 3.0)
    direct = P._probe(meta.key, 3.0)  # an exact probe at x3 vs the x2/x4 fit
    assert fitted == pytest.approx(direct[0] / direct[1], rel=1e-6)
    assert flops_per_pixel(meta, 2.0) > flops_per_pixel(meta, 4.0)  # LR convs spread thinner


def test_nfe_per_image_by_hand() -> None:
    ode = _plan("table1", "vdsr-ode", "paper")  # rk4 (4 stages), h = 0.1
    solver = {"method": "rk4", "step_size": 0.1}
    assert nfe_per_image(ode, solver, 4.0) == (120.0, True)  # 30 steps x 4
    assert nfe_per_image(ode, solver, 1.1) == (4.0, True)
    assert nfe_per_image(ode, {"method": "euler", "steps": 3}, 2.5) == (3.0, True)
    ens = _plan("table1", "rdn-ode+", "paper")
    assert nfe_per_image(ens, solver, 2.0) == (8 * 40.0, True)  # x8 self-ensemble
    assert nfe_per_image(_plan("table1", "bicubic", "paper"), {}, 2.0) == (0.0, True)
    assert nfe_per_image(_plan("table1", "vdsr+t", "paper"), {}, 2.0) == (1.0, True)


def test_plan_rows_and_hours(data_root: Path) -> None:
    exp = load_experiment("ci-smoke")
    train, evals = plan_experiment(exp, "smoke", str(data_root))
    assert sorted(r.model for r in train) == ["rdn-ode", "vdsr-ode"]  # rdn-ode+ shares weights
    assert sum(len(r.scales) for r in evals) == len(exp.units("smoke"))
    vdsr = next(r for r in train if r.model == "vdsr-ode")
    # smoke/vdsr-ode: 20 steps x batch 4 of 24 px, euler h=0.5 over scales 1.5, 2, 2.5, 3
    assert vdsr.nfe == pytest.approx((1 + 2 + 3 + 4) / 4)
    fpp = 2 * 9 * (4 * 8 + 1 * 8 * 8 + 8 * 3)  # smoke VDSR: depth 3, width 8
    assert vdsr.flops == pytest.approx(20 * 4 * 24**2 * 2.5 * fpp, rel=1e-3)
    costs = Costs.load()
    text = format_plan(exp, "smoke", costs, str(data_root))
    hours = Costs.seconds(costs.cpu, vdsr.flops, "vdsr", train=True) / 3600
    assert hours == pytest.approx(
        vdsr.flops * costs.cpu["train_factor"] / (costs.cpu["gflops"]["vdsr"] * 1e9) / 3600
    )
    assert "train: 2 checkpoints" in text
    assert f"evaluate: {len(exp.units('smoke'))} units" in text
    assert text.splitlines()[-1].startswith("total: ") and "h on this CPU" in text
    assert costs.gpu["name"] in text.splitlines()[-1]


def test_bench_plan_cli(data_root: Path, capsys) -> None:
    from bench.__main__ import main

    assert main(["plan", "ci-smoke", "--profile", "smoke", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "bench plan ci-smoke --profile smoke"
    assert out.splitlines()[-1].startswith("total: ")
