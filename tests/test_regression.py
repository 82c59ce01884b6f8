"""CI regression: the smoke profile end to end (train from scratch, evaluate) vs the committed
baseline bench/baselines/smoke.csv (psnr ±0.02 dB, ssim ±0.0005, nfe exact).

If a change moves the numbers on purpose: ``python -m bench.regress --update`` (or
``make regress-update``) and commit the new baseline with the change.
"""

from __future__ import annotations

import pytest

from bench.regress import BASELINE, compare, drift, main, read_baseline, run_smoke
from odesr.io import write_csv_atomic

# one result row as the CSVs hold it (strings)
_ROW = dict(
    model="m",
    solver_opts="-",
    dataset="d",
    image="i",
    scale="2.0",
    psnr="30.0",
    ssim="0.9",
    nfe="4",
    seen="True",
)


@pytest.mark.slow
def test_smoke_matches_baseline(data_root, tmp_path) -> None:
    rows = run_smoke("ci-smoke", str(data_root), workdir=str(tmp_path))
    problems = compare(rows, read_baseline(BASELINE))
    assert not problems, "\n".join(problems)


def test_compare_reports_moves() -> None:
    base = [dict(_ROW)]
    assert compare(base, base) == []
    moved = [dict(base[0], psnr="30.05")]
    msg = "\n".join(compare(moved, base))
    assert "psnr" in msg and "+0.0500" in msg
    assert any("missing row" in p for p in compare([], base))
    assert any("new row" in p for p in compare(base + [dict(base[0], image="j")], base))


def test_compare_two_results_files(tmp_path) -> None:
    row = dict(_ROW, weights="w1")
    a = [row, dict(row, image="j", psnr="31.0")]
    b = [dict(row, psnr="30.01"), dict(row, weights="w0", psnr="20.0")]  # w0: other weights
    assert compare(a, b, common_only=True) == []
    assert any("missing row" in p for p in compare(a, b))
    n, mean, worst = drift(a, b)[("all", "psnr")]
    assert set(drift(a, b, by="model")) >= {("m", "psnr"), ("m", "ssim")}
    assert n == 1 and abs(worst - 0.01) < 1e-9
    cols = list(row)

    write_csv_atomic(tmp_path / "a.csv", a, cols)
    write_csv_atomic(tmp_path / "b.csv", b, cols)
    args = ["--rows", str(tmp_path / "a.csv"), "--baseline", str(tmp_path / "b.csv")]
    assert main([*args, "--common"]) == 0
    assert main(args) == 1
    assert main(["--rows", str(tmp_path / "nope.csv")]) == 2
