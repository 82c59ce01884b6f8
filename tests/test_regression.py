"""CI regression: the smoke profile end to end (train from scratch, evaluate) vs the committed
baseline bench/baselines/smoke.csv (psnr ±0.02 dB, ssim ±0.0005, nfe exact).

If a change moves the numbers on purpose: ``python -m bench.regress --update`` (or
``make regress-update``) and commit the new baseline with the change.
"""

from __future__ import annotations

from bench.regress import BASELINE, compare, read_baseline, run_smoke


def test_smoke_matches_baseline(data_root, tmp_path) -> None:
    rows = run_smoke("ci-smoke", str(data_root), workdir=str(tmp_path))
    problems = compare(rows, read_baseline(BASELINE))
    assert not problems, "\n".join(problems)


def test_compare_reports_moves() -> None:
    base = [
        dict(
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
    ]
    assert compare(base, base) == []
    moved = [dict(base[0], psnr="30.05")]
    msg = "\n".join(compare(moved, base))
    assert "psnr" in msg and "+0.0500" in msg
    assert any("missing row" in p for p in compare([], base))
    assert any("new row" in p for p in compare(base + [dict(base[0], image="j")], base))
