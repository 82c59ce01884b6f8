"""Table 1 and Table 2 layouts compare like with like: gains over bicubic on the same images
against the paper's gains over its bicubic row (bench/report.py). Reference values by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report import scales_table, solvers_table


def _summary(rows: list[tuple]) -> pd.DataFrame:
    cols = ["model", "paper", "subset", "scale", "psnr"]
    df = pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])
    return df.assign(dataset="B100", n=2)


REF = pd.DataFrame(
    [
        dict(table="t1", dataset="B100", method=m, solver="", scale=s, psnr=v)
        for m, s, v in [("bicubic", 2.0, 29.0), ("Net", 2.0, 31.5), ("Net", 3.0, 28.0)]
    ]
)


def test_scales_table_compares_gains_on_the_same_images() -> None:
    summary = _summary(
        [
            ("bicubic", "bicubic", "all", 2.0, 29.1),  # all images, as the paper: Δ = +0.10
            ("bicubic-subset", "", "first 2", 2.0, 30.0),
            ("net", "Net", "first 2", 2.0, 31.2),
            ("net", "Net", "first 2", 3.0, 28.5),
        ]
    )
    models = ["bicubic", "bicubic-subset", "net"]
    [(header, rows)] = scales_table(
        summary, REF, models, "B100", "t1", bicubic=["bicubic", "bicubic-subset"]
    )
    assert header == ["method", "", "×2", "×3"]
    table = {(r[0] or prev, r[1]): r[2:] for r, prev in _names(rows)}
    assert table["bicubic", "Δ"] == ["+0.10", "–"]
    assert ("bicubic-subset", "Δ") not in table  # a subset is no full-set mean
    net = "net (Net)"
    assert table[net, "ours"] == ["31.20", "28.50"] and table[net, "paper"] == ["31.50", "28.00"]
    assert ("net (Net)", "Δ") not in table  # ours - paper across image sets: not shown
    assert table[net, "gain"] == ["+1.20", "–"]  # 31.2 - 30.0 (bicubic on its 2 images)
    assert table[net, "paper gain"] == ["+2.50", "–"]  # 31.5 - 29.0
    assert table[net, "Δ gain"] == ["-1.30", "–"]


def _names(rows: list[list[str]]) -> list[tuple[list[str], str]]:
    """Each row with the model name of its block."""
    out, name = [], ""
    for r in rows:
        name = r[0] or name
        out.append((r, name))
    return out


def test_solvers_table_shows_bicubic_on_its_images_and_the_gain_gap() -> None:
    summary = _summary([("rk", "Net", "first 2", 2.0, 31.2), ("rk", "Net", "first 2", 3.0, 28.5)])
    ref = REF.assign(solver="rk4")
    header, rows = solvers_table(
        summary, ref, {"rk4": "rk"}, "t1", {("B100", 2.0): 30.0}, {("B100", 2.0): 29.0}
    )
    assert header[:4] == ["dataset", "scale", "bicubic ours", "bicubic paper"]
    assert header[4:] == ["rk4 paper", "rk4 ours", "rk4 Δ", "rk4 Δ gain"]
    # x2: (31.2 - 30.0) - (31.5 - 29.0) = -1.30; x3: no bicubic, no gain gap
    assert rows[0] == ["B100", "×2", "30.00", "29.00", "31.50", "31.20", "-0.30", "-1.30"]
    assert rows[1][2:4] == ["–", "–"] and rows[1][-1] == "–"
    assert float(rows[1][-2]) == pytest.approx(0.5)
