"""`python -m bench plan`: NFE and FLOPs checked against hand counts, hours against the stored
throughputs, and the printed plan of a small experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cost_model import Costs, flops_per_pixel, nfe_per_image
from bench.experiment import load_experiment
from bench.plan import format_plan, plan_experiment
from bench.profile import Profile


def _plan(exp_id: str, model: str, profile: str):
    return load_experiment(exp_id).model_plans(model, Profile(profile))[0]


def test_flops_per_pixel_match_a_hand_count() -> None:
    # paper VDSR+t: 20 3x3 convs, 4 -> 64, 18 x 64 -> 64, 64 -> 3; 2 FLOPs per MAC
    hand = 2 * 9 * (4 * 64 + 18 * 64 * 64 + 64 * 3)
    plan = _plan("table1", "vdsr+t", "paper")
    assert flops_per_pixel(plan, 2.0) == pytest.approx(hand, rel=1e-3)
    assert flops_per_pixel(plan, 3.7) == flops_per_pixel(plan, 2.0)  # runs at the output size
    ode = _plan("table1", "vdsr-ode", "paper")  # same backbone, one evaluation of f
    assert flops_per_pixel(ode, 4.0) == pytest.approx(hand, rel=1e-3)


def test_lr_size_models_fit_between_probes() -> None:
    from bench import cost_model

    meta = _plan("table1", "meta-rdn", "paper")
    fitted = flops_per_pixel(meta, 3.0)
    direct = cost_model._probe(meta.key, 3.0)  # an exact probe at x3 vs the x2/x4 fit
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
    train, evals = plan_experiment(exp, Profile("smoke"), str(data_root))
    assert sorted(r.model for r in train) == ["rdn-ode", "vdsr-ode"]  # rdn-ode+ shares weights
    assert sum(len(r.scales) for r in evals) == len(exp.units(Profile("smoke")))
    vdsr = next(r for r in train if r.model == "vdsr-ode")
    # smoke/vdsr-ode: 20 steps x batch 4 of 24 px, euler h=0.5 over scales 1.5, 2, 2.5, 3
    assert vdsr.nfe == pytest.approx((1 + 2 + 3 + 4) / 4)
    fpp = 2 * 9 * (4 * 8 + 1 * 8 * 8 + 8 * 3)  # smoke VDSR: depth 3, width 8
    assert vdsr.flops == pytest.approx(20 * 4 * 24**2 * 2.5 * fpp, rel=1e-3)
    costs = Costs.load()
    text = format_plan(exp, Profile("smoke"), costs, str(data_root))
    hours = Costs.seconds(costs.cpu, vdsr.flops, "vdsr", train=True) / 3600
    assert hours == pytest.approx(
        vdsr.flops * costs.cpu["train_factor"] / (costs.cpu["gflops"]["vdsr"] * 1e9) / 3600
    )
    assert "train: 2 checkpoints" in text
    assert f"evaluate: {len(exp.units(Profile('smoke')))} units" in text
    assert text.splitlines()[-1].startswith("total: ") and "h on this CPU" in text
    assert costs.gpu["name"] in text.splitlines()[-1]


def test_bench_plan_cli(data_root: Path, capsys) -> None:
    from bench.__main__ import main

    assert main(["plan", "ci-smoke", "--profile", "smoke", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "bench plan ci-smoke --profile smoke"
    assert out.splitlines()[-1].startswith("total: ")


# ----------------------------------------------------------------------------- calibrated prices


def _calibration() -> dict:
    """A made-up calibration: round numbers, so every price below is a hand sum."""
    return {
        "kind": "test-cpu-torch0",
        "threads": 1,
        "startup_s": 3.0,
        "decode_s_per_mpx": {"train": 0.1, "eval": 0.2},
        "train": {
            "run_s": 2.0,
            "vdsr": {"step_s": 0.05, "s_per_gflop": 0.04},
            "rdn": {"step_s": 0.05, "s_per_gflop": 0.08},
        },
        "eval": {
            "vdsr": {"s_per_mpx": 1.5, "s_per_gflop": 0.02},
            "rdn": {"s_per_mpx": 1.5, "s_per_gflop": 0.03},
        },
    }


def test_parse_command_uses_odesr_parser() -> None:
    from bench.price import parse_command

    args = parse_command(["odesr", "train", "smoke/vdsr-ode", "--max-steps", "7", "--no-progress"])
    assert (args.command, args.config, args.max_steps, args.no_progress) == (
        "train",
        "smoke/vdsr-ode",
        7,
        True,
    )
    args = parse_command(
        ["OMP_NUM_THREADS=1", "python", "-m", "odesr", "eval", "--model", "bicubic"]
        + ["--dataset", "Set5", "--scales", "2,4"]
    )
    assert args.command == "eval" and args.out  # --out is optional when pricing
    with pytest.raises(ValueError, match="--price"):
        parse_command(["odesr", "upscale", "a.png", "--scale", "2", "--out", "b.png"])
    with pytest.raises(SystemExit):  # an option odesr train refuses
        parse_command(["odesr", "train", "smoke/vdsr-ode", "--max-stepz", "7"])


def test_price_of_training_is_the_sum_of_its_parts(data_root: Path) -> None:
    from bench.cost_model import dataset_sizes, step_flops
    from bench.price import price_command
    from odesr.train import load_config

    cal = _calibration()
    argv = ["odesr", "train", "smoke/vdsr-ode", "--max-steps", "30", "--set", "val.every=0"]
    est = price_command(argv, cal, str(data_root))
    cfg = load_config("smoke/vdsr-ode", ["val.every=0", "max_steps=30"])
    mpx = sum(h * w for h, w in dataset_sizes("T91", str(data_root))) / 1e6
    per_step = 0.05 + 0.04 * step_flops(cfg) / 1e9
    assert est.seconds == pytest.approx(3.0 + 0.1 * mpx + 2.0 + 30 * per_step)
    assert [label.split(" ")[0] for label, _ in est.parts] == ["start-up", "decode", "model,", "30"]


def test_price_of_evaluation_is_the_sum_of_its_parts(data_root: Path) -> None:
    from bench.cost_model import dataset_sizes, spec_flops_per_pixel
    from bench.price import price_command
    from odesr.checkpoints import load
    from odesr.degrade import protocol_case

    cal = _calibration()
    ckpt = "odesr/weights/vdsr-ode-cpu.pt"
    argv = ["odesr", "eval", "--checkpoint", ckpt, "--dataset", "Set5", "--limit", "2"]
    argv += ["--scales", "2,4", "--solver", "euler", "--steps", "3"]
    est = price_command(argv, cal, str(data_root))
    sizes = dataset_sizes("Set5", str(data_root))[:2]
    spec = load(ckpt).spec
    want = 3.0 + 0.2 * sum(h * w for h, w in sizes) / 1e6
    for scale in (2.0, 4.0):
        for h, w in sizes:
            sh, sw = protocol_case(h, w, scale).sr_size
            gflop = 3 * sh * sw * spec_flops_per_pixel(spec, scale) / 1e9  # euler: 3 NFE
            want += 1.5 * sh * sw / 1e6 + 0.02 * gflop
    assert est.seconds == pytest.approx(want)


def test_price_cli_ends_with_the_estimate(data_root: Path, capsys) -> None:
    import re

    from bench.__main__ import main

    argv = ["plan", "--data-root", str(data_root), "--price", "--"]
    argv += ["odesr", "train", "smoke/vdsr-ode", "--max-steps", "5", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("price: odesr train smoke/vdsr-ode")
    assert re.fullmatch(r"estimate: \d+\.\d s", out[-1])


def test_calibration_file_per_device_kind(tmp_path: Path, monkeypatch, data_root: Path) -> None:
    """Stored as bench/calibration/<cpu>-torch<version>.json; a plan uses this machine's file
    when there is one and says so, else the FLOP model and how to calibrate."""
    import torch

    from bench import calibrate as C
    from bench import plan as P

    monkeypatch.setattr(C, "CALIBRATION_DIR", tmp_path / "bench" / "calibration")
    kind = C.device_kind()
    assert kind.endswith(f"-torch{C._slug(str(torch.__version__))}")
    assert kind == kind.lower() and " " not in kind and "/" not in kind
    exp = load_experiment("ci-smoke")
    assert C.load_calibration() is None
    text = P.format_plan(exp, Profile("smoke"), Costs.load(), str(data_root))
    assert "--calibrate" in text and "FLOP model" in text.splitlines()[-1]
    path = C.save_calibration({**_calibration(), "kind": kind, "measured": "now", "loadavg": [2]})
    assert path == C.CALIBRATION_DIR / f"{kind}.json"
    assert C.load_calibration()["train"]["run_s"] == 2.0
    text = P.format_plan(exp, Profile("smoke"), Costs.load(), str(data_root))
    assert "calibrated" in text.splitlines()[-1] and f"{kind}.json" in text


def test_fit_line_keeps_costs_non_negative() -> None:
    from bench.calibrate import fit_line

    assert fit_line([(2.0, 0.3), (8.0, 0.9)]) == pytest.approx((0.1, 0.1))
    assert fit_line([(2.0, 0.1), (8.0, 0.9)]) == pytest.approx((0.0, 7.4 / 68))  # through 0
    assert fit_line([(2.0, 0.5), (8.0, 0.4)]) == pytest.approx((0.45, 0.0))  # flat


def test_checkpoints_record_training_speed(tmp_path: Path, data_root: Path) -> None:
    """Every save updates the current trained_on segment with threads, steps, seconds,
    steps_per_s and load averages; a resume on the same machine adds to them."""
    import torch

    import odesr.train as tr
    from odesr.train_state import read_checkpoint

    cfg = tr.load_config("smoke/vdsr-ode", {"data": ["Set5"], "val": {"every": 0}})
    kw = dict(device="cpu", data_root=str(data_root), progress=False)
    tr.train({**cfg, "max_steps": 3}, tmp_path, **kw)
    seg = read_checkpoint(tmp_path / "final.pt")[1]["trained_on"][-1]
    assert seg["threads"] == torch.get_num_threads() and seg["steps"] == 3
    # seconds is stored to the millisecond: steps_per_s (from the unrounded seconds) agrees
    # with 3 / seconds to within that rounding
    assert seg["seconds"] > 0
    assert seg["steps_per_s"] == pytest.approx(3 / seg["seconds"], rel=6e-4 / seg["seconds"])
    assert seg["loadavg"] is None or len(seg["loadavg"]) == 3
    tr.train({**cfg, "max_steps": 5}, tmp_path, resume=True, **kw)
    segs = read_checkpoint(tmp_path / "final.pt")[1]["trained_on"]
    assert len(segs) == 1 and segs[0]["steps"] == 5 and segs[0]["seconds"] > seg["seconds"]
    from bench.publish import publish, training_log

    publish(tmp_path / "final.pt", tmp_path / "weights" / "vdsr-ode-k.pt")
    (row,) = training_log(tmp_path / "weights")
    assert (row["weights"], row["model"], row["steps"]) == ("vdsr-ode-k", "vdsr-ode", 5)
    assert row["steps_per_s"] == segs[0]["steps_per_s"] and row["threads"] == seg["threads"]


def test_core_share_is_a_fraction_of_a_core() -> None:
    from bench.calibrate import core_share

    assert 0.0 < core_share(0.2) <= 1.0


def test_price_of_seeds_trained_together(data_root: Path) -> None:
    from bench.price import price_command

    argv = ["odesr", "train", "smoke/vdsr-ode", "--max-steps", "30", "--set", "val.every=0"]
    one = price_command(argv, _calibration(), str(data_root))
    three = price_command([*argv, "--seeds", "0,1,2"], _calibration(), str(data_root))
    assert three.seconds - one.seconds == pytest.approx(2 * one.parts[-1][1])


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_calibrated_plan_of_table1_prices_every_model(data_root: Path, profile: str) -> None:
    """The calibrated plan prices one-scale networks' validation at their own scale (rdn-fixed-x2
    is never asked for x3) and a training set that is not here (DIV2K for the paper profile)
    without failing."""
    from bench.price import price_training

    exp = load_experiment("table1")
    cal = _calibration()
    for plan in exp.all_plans(Profile(profile)):
        if plan.train_cfg is not None:
            est = price_training(plan.train_cfg, cal, str(data_root))
            assert est.seconds > 0, plan.id
            if "DIV2K" in plan.train_cfg["data"] and not (data_root / "DIV2K").is_dir():
                assert any("DIV2K" in note for note in est.notes), plan.id


def test_validation_scales_one_rule_for_training_and_the_plan() -> None:
    """odesr.monitor.validate and bench.plan price the same scales: the configured ones the
    model supports, else all it supports, every configured one for an any-scale model."""
    from odesr.monitor import validation_scales

    assert validation_scales([2, 3, 5], (2.0, 3.0, 4.0)) == [2.0, 3.0]
    assert validation_scales([5], (2.0, 4.0)) == [2.0, 4.0]  # a fixed-scale net: its own
    assert validation_scales(["1.5", 2], None) == [1.5, 2.0]
    assert validation_scales(None, None) == []


def test_step_key_leaves_out_what_a_step_does_not_cost() -> None:
    from bench.cost_model import RUN_ONLY_KEYS, step_key
    from bench.device_check import paper_train_config
    from odesr.train import load_config

    paper = load_config("paper/vdsr-ode", [])
    checked = paper_train_config("vdsr-ode", 30)
    assert set(k for k in paper if paper[k] != checked[k]) <= set(RUN_ONLY_KEYS)
    assert step_key(checked) == step_key(paper | {"seed": 3, "max_steps": 10})
    assert step_key(paper | {"patch_size": 96}) != step_key(paper)
    assert step_key(paper | {"checkpoint_recompute": False}) != step_key(paper)


def test_plan_prices_gpu_training_from_a_float32_device_check(tmp_path: Path, data_root: Path):
    """A device-check file's float32 runs price the GPU training of their configs (the best run
    of each: 600k steps at 5 steps/s = 33.3 h); TF32 and failed runs count for nothing, and the
    other checkpoints keep the FLOP model's hours."""
    import json

    from bench.cost_model import measured_gpu_steps, step_key
    from bench.device_check import paper_train_config

    key = step_key(paper_train_config("vdsr-ode", 30))
    rdn = step_key(paper_train_config("rdn-ode", 8))
    runs = [
        {"model": "vdsr-ode", "step_key": key, "math": "float32", "steps_per_s": 4.0},
        {"model": "vdsr-ode", "step_key": key, "math": "float32", "steps_per_s": 5.0},
        {"model": "rdn-ode", "step_key": rdn, "math": "tf32", "steps_per_s": 1.0},
        {"model": "rdn+t", "workers": 12, "error": "RuntimeError('out of memory')"},
    ]
    (tmp_path / "device-check.json").write_text(json.dumps({"train": runs}))
    measured = measured_gpu_steps(tmp_path / "device-check.json")
    assert measured == {key: 5.0}
    base = Costs.load()
    costs = Costs(base.cpu, base.gpu, base.busy, measured)
    exp = load_experiment("table1")
    rows = {
        line.split()[0]: line.split()[-1]
        for line in format_plan(exp, Profile("paper"), costs, str(data_root)).splitlines()
        if line.startswith("  ") and "600000" in line
    }
    plain = {
        line.split()[0]: line.split()[-1]
        for line in format_plan(exp, Profile("paper"), base, str(data_root)).splitlines()
        if line.startswith("  ") and "600000" in line
    }
    assert rows["vdsr-ode"] == "33.3" and plain["vdsr-ode"] != "33.3"
    assert {k: v for k, v in rows.items() if k != "vdsr-ode"} == {
        k: v for k, v in plain.items() if k != "vdsr-ode"
    }
    assert base.gpu_steps == {}  # the committed device check measured TF32 training only
