"""``bench plan EXPERIMENT --status``: units done, to copy, to evaluate, checkpoints to train,
and the hours left."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.experiment import load_experiment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder holding the committed table1 rows and the published weights."""
    cpu = tmp_path / "results" / "cpu"
    cpu.mkdir(parents=True)
    (cpu / "table1.csv").write_bytes((REPO / "results" / "cpu" / "table1.csv").read_bytes())
    (cpu / "weights").symlink_to(REPO / "results" / "cpu" / "weights")
    return tmp_path / "results"


def test_status_counts_done_copy_and_evaluate(results: Path, tmp_path: Path) -> None:
    """extrapolation on cpu with only table1's rows: its units at table1's scales on the same
    images are copied, the others evaluated; nothing to train (published weights); table1's
    own units are done."""
    from bench.plan_status import status
    from bench.profile import Profile

    exp = load_experiment("extrapolation")
    profile = Profile("cpu", results, tmp_path / "no-checkpoints")
    train, groups, csv = status(exp, profile, str(tmp_path / "no-data"))
    assert csv == results / "cpu" / "extrapolation.csv" and not csv.exists()
    assert train == []
    assert sum(g.done for g in groups) == 0
    vdsr = next(g for g in groups if g.model == "vdsr-ode")
    assert vdsr.copy == 30  # table1's 1.1..4.0 on its first 20 images cover the first 10
    table1 = {round(1 + k / 10, 6) for k in range(1, 31)}
    assert len(vdsr.evaluate) == 71 - 30 and not table1 & set(vdsr.evaluate)
    assert vdsr.seconds > 0
    assert all(g.seconds == 0 for g in groups if not g.evaluate)
    _, t1, _ = status(load_experiment("table1"), profile, str(tmp_path / "no-data"))
    assert next(g for g in t1 if g.model == "vdsr-ode").done == 30


def test_status_lists_checkpoints_to_train(tmp_path: Path, capsys) -> None:
    from bench.__main__ import main

    argv = ["plan", "ci-smoke", "--profile", "smoke", "--status"]
    argv += ["--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c")]
    assert main([*argv, "--data-root", str(tmp_path / "no-data")]) == 0
    out = capsys.readouterr().out
    assert "train: 2 checkpoints" in out and "left: " in out
    assert "units: 0 of " in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()
