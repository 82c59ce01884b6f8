"""Figures: every legend entry is drawn, the bicubic reference is on top, the Pareto plot gives
a diverging model its own panel, log ticks label the NFE values plotted."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench import figures


@pytest.fixture
def saved(monkeypatch):
    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, path, caption=None: figs.append(fig))
    return figs


def _legend_texts(fig) -> list[str]:
    out = []
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return out


def test_psnr_vs_scale_reference_on_top_and_no_undrawn_marker(saved) -> None:
    rows = [
        dict(model=m, scale=s, psnr=p + (0.5 if m == "net" else 0), seen=True)
        for m in ("bicubic", "net")
        for s, p in ((2.0, 33.0), (3.0, 30.0))
    ]
    figures.psnr_vs_scale(pd.DataFrame(rows), "unused.png", "t")
    (fig,) = saved
    texts = _legend_texts(fig)
    assert "seen scale" in texts and "unseen scale" not in texts  # every scale was seen
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["bicubic"].get_zorder() > lines["net"].get_zorder()
    assert lines["bicubic"].get_linestyle() == "--"


def test_gains_vs_scale_one_panel_per_model(saved) -> None:
    rows = [
        dict(model=m, scale=s, gain=g, seen=s != 2.5, paper_gain=math.nan)
        for m, g in (("a", 0.5), ("b", -0.1), ("c", 0.2))
        for s in (2.0, 2.5, 3.0)
    ]
    figures.gains_vs_scale(pd.DataFrame(rows), "unused.png", "t", "bicubic-subset")
    (fig,) = saved
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles == ["a", "b", "c"]
    texts = _legend_texts(fig)
    assert "paper's gain" not in texts  # no paper values given: no entry
    assert {"seen scale", "unseen scale", "bicubic-subset (0 dB)"} <= set(texts)


def test_pareto_separate_panel_and_readable_log_ticks(saved) -> None:
    rows = []
    for model, base in (("euler", 29.0), ("rk4", 29.1), ("path", 18.0)):
        for nfe in (1, 2, 4, 8, 16, 32):
            rows.append(
                dict(
                    model=model,
                    solver="euler",
                    nfe=nfe,
                    dataset="Set5",
                    scale=4.0,
                    psnr=base + (nfe if model == "path" else 0.01 * nfe),
                )
            )
    figures.pareto(pd.DataFrame(rows), "unused.png", "t", separate=["path"])
    (fig,) = saved
    left, right = fig.axes
    assert "path" not in left.get_title() and "path" in right.get_title()
    assert left.get_ylim()[1] - left.get_ylim()[0] < 1  # the endpoint models' own scale
    labels = [t.get_text() for t in left.get_xticklabels()]
    assert labels == ["1", "2", "4", "8", "16", "32"]
