"""Several seeds in one process (odesr.multiseed): the same weights, EMA, optimiser state and
logs as separate ``odesr.train.train`` runs (float tolerance), ordinary run directories, resume,
and the refusals. Smoke preset on Set5, a few steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import odesr.train as tr
from odesr import multiseed
from odesr.checkpoints import load
from odesr.train_state import read_checkpoint
from tests.test_train import _cfg, _data_root, _run

SEEDS = [0, 1, 2]
# every per-seed mechanism on: cosine schedule with warm-up, a clip that bites, EMA
RECIPE = dict(
    max_steps=6, checkpoint_every=3, grad_clip=0.05, ema=0.9, lr_schedule="cosine", warmup_steps=2
)


def _train_seeds(cfg: dict, dirs: list[Path], resume: bool = False) -> list[dict]:
    return multiseed.train_seeds(
        cfg, SEEDS, dirs, resume=resume, device="cpu", data_root=str(_data_root()), progress=False
    )


def _close(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(
            a[k], b[k], rtol=rtol, atol=1e-7 + rtol * float(b[k].abs().max())
        )


def _same_checkpoints(multi: Path, single: Path) -> None:
    for name in ("last.pt", "final.pt"):
        (sa, ea), (sb, eb) = read_checkpoint(multi / name), read_checkpoint(single / name)
        _close(sa, sb)
        assert ea.keys() == eb.keys() and ea["step"] == eb["step"]
        assert ea["config"] == eb["config"] and ea["weights"] == eb["weights"]
        assert ea["scheduler"] == eb["scheduler"]
        if "ema" in eb:
            _close(ea["ema"], eb["ema"])
        oa, ob = ea["optimizer"], eb["optimizer"]
        assert oa["param_groups"] == ob["param_groups"]
        for i, state in ob["state"].items():
            assert torch.equal(oa["state"][i]["step"], state["step"])
            _close({"m": oa["state"][i]["exp_avg"]}, {"m": state["exp_avg"]})
        for x, y in zip(ea["rng"]["samplers"], eb["rng"]["samplers"], strict=True):
            assert torch.equal(x["gen"], y["gen"]) and torch.equal(x["scale_gen"], y["scale_gen"])
        assert ea["trained_on"][-1]["seeds_together"] == len(SEEDS)


def _records(path: Path) -> list[dict]:
    keep = ("step", "loss", "lr", "scale", "grad_norm", "done")
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    out = []
    for r in rows:
        row = {k: r[k] for k in keep if k in r}
        row.update({f"val_psnr_x{s}": v for s, v in r.get("val_psnr", {}).items()})
        out.append(row)
    return out


@pytest.mark.parametrize(
    "name, over",
    [
        ("smoke/vdsr+t", {}),  # one scale per batch: seeds at the same scale share a pass
        ("smoke/vdsr-ode", {}),  # Euler step_size grid: one pass per drawn scale
        # recomputed activations of a pass that holds some of the seeds
        ("smoke/vdsr-ode", {"scales": [2.0, 3.0], "checkpoint_recompute": True}),
        # all seeds in one pass, float scale; validation of each seed's EMA
        ("smoke/vdsr+t", {"scales": [2.0], "val": {"every": 3, "dataset": "Set5", "max_size": 48}}),
        # one scale per sample: all seeds in one pass through solve_per_sample
        ("smoke/vdsr-ode", {"mixed_scales": True, "train_solver": {"method": "rk4", "steps": 1}}),
    ],
)
def test_seeds_together_equal_separate_runs(tmp_path: Path, name: str, over: dict) -> None:
    cfg = _cfg(name, **RECIPE, **over)
    dirs = multiseed.seed_dirs(tmp_path / "multi", SEEDS)
    results = _train_seeds(cfg, dirs)
    assert [r["step"] for r in results] == [6] * len(SEEDS)
    for seed, d in zip(SEEDS, dirs, strict=True):
        single = tmp_path / f"single{seed}"
        _run({**cfg, "seed": seed}, single)
        _same_checkpoints(d, single)
        ra, rb = _records(d), _records(single)
        assert [r.keys() for r in ra] == [r.keys() for r in rb]
        for x, y in zip(ra, rb, strict=True):
            assert x == pytest.approx(y, rel=1e-5)
        assert load(d / "final.pt").spec == load(single / "final.pt").spec


def test_resume_all_seeds_and_singly(tmp_path: Path) -> None:
    """Stopped at step 3, the three seeds resume together; an ordinary run resumes one of them
    too (a new trained_on segment)."""
    cfg = _cfg("smoke/vdsr-ode", **{**RECIPE, "lr_schedule": "step"})  # cosine: no resume
    straight = multiseed.seed_dirs(tmp_path / "straight", SEEDS)
    split = multiseed.seed_dirs(tmp_path / "split", SEEDS)
    _train_seeds(cfg, straight)
    _train_seeds({**cfg, "max_steps": 3}, split)
    alone = tmp_path / "alone"
    shutil.copytree(split[0], alone)
    _train_seeds(cfg, split, resume=True)
    _run({**cfg, "seed": SEEDS[0]}, alone, resume=True)
    for a, b in [*zip(straight, split, strict=True), (straight[0], alone)]:
        (sa, ea), (sb, eb) = read_checkpoint(a / "final.pt"), read_checkpoint(b / "final.pt")
        assert ea["step"] == eb["step"] == 6
        _close(sa, sb)
    _, extra = read_checkpoint(alone / "final.pt")
    assert [s.get("seeds_together") for s in extra["trained_on"]] == [len(SEEDS), None]
    assert [s["from_step"] for s in extra["trained_on"]] == [0, 3]


def test_resume_refuses_missing_or_uneven_seeds(tmp_path: Path) -> None:
    cfg = _cfg("smoke/vdsr+t", max_steps=2, checkpoint_every=1)
    dirs = multiseed.seed_dirs(tmp_path, SEEDS)
    _train_seeds(cfg, dirs[:2] + [tmp_path / "elsewhere"])
    with pytest.raises(tr.TrainError, match="no last.pt for seed"):
        _train_seeds({**cfg, "max_steps": 4}, dirs, resume=True)
    _run({**cfg, "seed": SEEDS[2], "max_steps": 1}, dirs[2])
    with pytest.raises(tr.TrainError, match="different steps"):
        _train_seeds({**cfg, "max_steps": 4}, dirs, resume=True)


@pytest.mark.parametrize("name", ["smoke/meta-rdn", "smoke/rdn-fixed-x2", "smoke/vdsr-fixed"])
def test_lr_input_models_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(tr.TrainError, match="takes the LR image"):
        _train_seeds(_cfg(name, max_steps=1), multiseed.seed_dirs(tmp_path, SEEDS))


def test_adaptive_train_solver_is_refused(tmp_path: Path) -> None:
    cfg = _cfg("smoke/vdsr-ode", max_steps=1, train_solver={"method": "dopri5"})
    with pytest.raises(tr.TrainError, match="adaptive"):
        _train_seeds(cfg, multiseed.seed_dirs(tmp_path, SEEDS))


def test_stacked_conv_matches_its_convs() -> None:
    gen = torch.Generator().manual_seed(0)
    convs = [torch.nn.Conv2d(4, 6, 3, padding=1, groups=2) for _ in range(3)]
    stacked = multiseed.StackedConv2d(convs)
    x = torch.rand(3 * 2, 4, 9, 7, generator=gen)
    y = stacked(x)
    for k, conv in enumerate(convs):
        torch.testing.assert_close(y[2 * k : 2 * k + 2], conv(x[2 * k : 2 * k + 2]))
    stacked.active = torch.tensor([2, 0])
    y = stacked(torch.cat([x[4:], x[:2]]))
    torch.testing.assert_close(y[:2], convs[2](x[4:]))
    torch.testing.assert_close(y[2:], convs[0](x[:2]))


def test_clip_per_seed_is_each_seeds_clip_grad_norm() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 5, 4, generator=gen), torch.randn(3, 7, generator=gen) * 3]
    stacked = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(stacked, grads, strict=True):
        p.grad = g.clone()
    norms = multiseed.clip_per_seed(stacked, 2.0)
    for k in range(3):
        single = [torch.nn.Parameter(torch.zeros_like(g[k])) for g in grads]
        for p, g in zip(single, grads, strict=True):
            p.grad = g[k].clone()
        norm = torch.nn.utils.clip_grad_norm_(single, 2.0)
        torch.testing.assert_close(norms[k], norm)
        for p, q in zip(single, stacked, strict=True):
            torch.testing.assert_close(q.grad[k], p.grad)


def test_cli_seeds_writes_one_run_per_seed(tmp_path: Path, capsys) -> None:
    argv = ["smoke/vdsr+t", "--seeds", "3,5", "--out", str(tmp_path), "--no-progress"]
    argv += ["--max-steps", "2", "--data-root", str(_data_root()), "--set", "data=[Set5]"]
    assert tr.main(argv) == 0
    assert "seed 5 done at step 2" in capsys.readouterr().out
    for seed in (3, 5):
        _, extra = read_checkpoint(tmp_path / f"seed{seed}" / "final.pt")
        assert extra["config"]["seed"] == seed
    assert tr.main([*argv, "--seed", "1"]) == tr.EXIT_USAGE
    assert tr.main(["smoke/vdsr+t", "--seeds", "1,1", "--out", str(tmp_path)]) == tr.EXIT_USAGE
