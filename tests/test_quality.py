"""CI quality check (bench/quality.py): the bundled model must beat bicubic by a margin on Set5
x2/x4 and stay within 0.02 dB of bench/baselines/bundled-set5.csv; the smoke run
(tests/test_regression.py) stays the plumbing test."""

from __future__ import annotations

import csv

import pytest

from bench.quality import MARGIN_DB, TOL_DB, check, measure, read_baseline


@pytest.mark.slow
def test_bundled_model_beats_bicubic_and_matches_baseline(data_root, reference) -> None:
    rows = measure(str(data_root))
    problems = check(rows, read_baseline())
    assert not problems, "\n".join(problems)
    # the bicubic reference itself against the published Set5 bicubic PSNR (independent)
    with open(reference / "published_bicubic.csv", newline="") as fh:
        published = {
            float(r["scale"]): float(r["psnr"])
            for r in csv.DictReader(fh)
            if r["dataset"] == "Set5"
        }
    for row in rows:
        assert abs(row["bicubic_psnr"] - published[row["scale"]]) < 0.02


def test_check_catches_a_network_that_stops_helping() -> None:
    base = read_baseline()
    for scale, margin in MARGIN_DB.items():
        assert 0 < margin < base[scale]["gain"]  # the margin was set below the measured gain
    same = [dict(base[s]) for s in sorted(base)]
    assert check(same, base) == []
    # a zeroed ODE network returns its bicubic input: the gain vanishes
    zeroed = [dict(r, psnr=r["bicubic_psnr"]) for r in same]
    assert len(check(zeroed, base)) >= 2 * len(same)
    drift = [dict(r, psnr=r["psnr"] + 2 * TOL_DB) for r in same]
    assert all("moved" in p for p in check(drift, base))
