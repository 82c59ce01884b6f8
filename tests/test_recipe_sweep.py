"""bench.recipe_sweep: the choosing criterion and the paper's gains it divides by."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.recipe_sweep import choose, paper_gains, published_weights, render

SPEC = {
    "scales": [1.1, 2.0],
    "b100_images": 0,
    "criterion": {"min_fraction": 0.35},
    "common": {"holdout": {"dataset": "BSD200", "n_images": 4}},
    "runs": [
        {"name": "a", "config": "cpu/vdsr-ode", "paper": "M"},
        {"name": "b", "config": "cpu/vdsr-ode", "paper": "M"},
        {"name": "c", "config": "cpu/vdsr-ode", "paper": "M"},
        {"name": "d", "config": "cpu/vdsr-ode", "paper": "M"},
    ],
}


def _rec(name: str, g11: float, g2: float) -> dict:
    return {
        "name": name,
        "config": "cpu/vdsr-ode",
        "delta": "",
        "steps": 1,
        "train_seconds": None,
        "solver": {},
        "held-out": {"1.1": g11, "2": g2},
    }


def test_paper_gains_are_method_minus_bicubic(tmp_path: Path) -> None:
    csv = tmp_path / "paper.csv"
    csv.write_text(
        "table,dataset,method,solver,scale,psnr\n"
        "table1,B100,bicubic,,1.1,36.00\ntable1,B100,bicubic,,2.0,29.50\n"
        "table1,B100,M,rk4,1.1,40.00\ntable1,B100,M,rk4,2.0,31.50\n"
        "table2,Set5,M,rk4,2.0,99.0\n"
    )
    gains = paper_gains(SPEC, csv)
    assert gains == {"M": {"1.1": pytest.approx(4.0), "2": pytest.approx(2.0)}}
    assert paper_gains(SPEC, tmp_path / "missing.csv") == {}


def test_choose_needs_the_floor_at_every_scale_then_the_best_mean() -> None:
    paper = {"M": {"1.1": 4.0, "2": 2.0}}
    # a: 10% at x1.1 (fails the floor) but 100% at x2; b: 40% / 50%; c: 50% / 40% (same mean)
    records = [_rec("a", 0.4, 2.0), _rec("b", 1.6, 1.0), _rec("c", 2.0, 0.8)]
    assert choose(records, SPEC, paper) == {"M": ("b", "criterion")}  # first of equal means
    records.append(_rec("d", 2.4, 1.0))  # 60% / 50%
    assert choose(records, SPEC, paper) == {"M": ("d", "criterion")}
    text = render(records, SPEC, paper)
    assert "- M: **d** (the highest mean" in text and "| a | M | 10% | 100% | 55% | no |" in text


def test_choose_falls_back_to_the_highest_smallest_fraction_and_skips_ablations() -> None:
    paper = {"M": {"1.1": 4.0, "2": 2.0}}
    # nobody reaches 35% at x1.1: a 10% (mean 55%), b 30% (mean 32%), c 30% (mean 40%)
    records = [_rec("a", 0.4, 2.0), _rec("b", 1.2, 0.68), _rec("c", 1.2, 1.0)]
    assert choose(records, SPEC, paper) == {"M": ("c", "maximin")}
    spec = {**SPEC, "runs": [*SPEC["runs"][:2], {**SPEC["runs"][2], "candidate": False}]}
    assert choose(records, spec, paper) == {"M": ("b", "maximin")}
    assert "no run reaches 35% at every scale" in render(records, spec, paper)


def test_reuse_names_the_published_weights_of_the_config(tmp_path: Path) -> None:
    from odesr.config import weights_hash
    from odesr.train import load_config

    cfg = load_config("cpu/vdsr-ode")
    run = {"name": "x", "config": "cpu/vdsr-ode", "reuse": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="no published weights"):
        published_weights(run, cfg)
    path = tmp_path / f"vdsr-ode-{weights_hash(cfg)}.pt"
    path.write_bytes(b"")
    assert published_weights(run, cfg) == path
