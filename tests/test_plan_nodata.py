"""``bench plan`` without the datasets: image sizes from ``bench/image_sizes.tsv``, same plan."""

from __future__ import annotations

from pathlib import Path

from bench.cost_model import Costs
from bench.experiment import load_experiment
from bench.plan import format_plan
from bench.profile import Profile


def test_shipped_image_sizes_are_the_data(data_root: Path) -> None:
    from bench.image_sizes import measure_sizes, shipped_sizes

    shipped = shipped_sizes()
    assert set(shipped) == {"B100", "BSD200", "Set5", "T91"}
    for dataset, rows in shipped.items():
        assert list(rows) == measure_sizes(dataset, str(data_root)), dataset


def test_plan_without_the_data_is_the_plan_with_it(data_root: Path, tmp_path: Path) -> None:
    exp = load_experiment("extrapolation")
    with_data = format_plan(exp, Profile("smoke"), Costs.load(), str(data_root))
    without = format_plan(exp, Profile("smoke"), Costs.load(), str(tmp_path / "no-data"))
    assert with_data == without


def test_plan_cli_without_data(tmp_path: Path, monkeypatch, capsys) -> None:
    from bench.__main__ import main

    monkeypatch.delenv("ODESR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # ./data does not exist here
    assert main(["plan", "ci-smoke", "--profile", "smoke"]) == 0
    assert "total:" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
