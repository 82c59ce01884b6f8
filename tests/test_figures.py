"""Figures: every legend entry is drawn, the bicubic reference is on top (a line in the Pareto
plot), log ticks label the NFE values plotted, solver states are markers and say what they are."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench import figures, trajectory_figures


@pytest.fixture
def saved(monkeypatch):
    figs = []

    def keep(fig, path, caption=None):
        figs.append(fig)

    monkeypatch.setattr(figures, "save_figure", keep)
    monkeypatch.setattr(trajectory_figures, "save_figure", keep)
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


def test_pareto_reference_line_and_readable_log_ticks(saved) -> None:
    rows = [dict(model="bicubic", solver="", nfe=0, dataset="Set5", scale=4.0, psnr=28.4)]
    for model, base in (("euler", 29.0), ("rk4", 29.1)):
        for nfe in (1, 2, 4, 8, 16, 32):
            rows.append(
                dict(model=model, solver="euler", nfe=nfe, dataset="Set5", scale=4.0,
                     psnr=base + 0.01 * nfe)
            )  # fmt: skip
    figures.pareto(pd.DataFrame(rows), "unused.png", "t", reference="bicubic")
    (fig,) = saved
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    bicubic = lines["bicubic (no network)"]
    assert set(bicubic.get_ydata()) == {28.4} and bicubic.get_linestyle() == "--"
    assert "bicubic / " not in " ".join(lines)  # a line, not a point at NFE 0
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["1", "2", "4", "8", "16", "32"]


def test_differences_vs_scale_marks_the_paper_and_the_design(saved) -> None:
    rows = [
        dict(comparison="a - b, B100", scale=s, estimate=0.1, low=-0.1, high=0.3, n_seeds=n,
             n_images=10, paper=0.2 if s == 2.0 else math.nan)
        for s, n in ((2.0, 5), (3.0, 5), (5.0, 3))
    ]  # fmt: skip
    figures.differences_vs_scale(pd.DataFrame(rows), "unused.png", "t", boundary=4.0)
    (fig,) = saved
    texts = _legend_texts(fig)
    assert "ours, 95% interval (5 seeds x 10 images)" in texts
    assert "ours, 95% interval (3 seeds x 10 images)" in texts and "paper" in texts
    (ax,) = fig.axes
    (stars,) = ax.collections[-1:]
    assert len(stars.get_offsets()) == 1  # the paper's value only where it reports one


def test_path_following_draws_states_as_markers_only(saved) -> None:
    rows = [
        dict(scale=2.0, grid=g, t=t, psnr_path=40.0 - t, psnr_hr=30.0 + t, psnr_path_hr=31.0)
        for g, ts in (("one-step", (2.0, 1.0)), ("h0.5", (2.0, 1.5, 1.0)))
        for t in ts
    ]
    trajectory_figures.path_following(pd.DataFrame(rows), "unused.png", "t")
    (fig,) = saved
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_label() != "I(t) itself":
                assert line.get_linestyle() == "None", line.get_label()


def test_strip_labels_solver_states_not_the_path(saved) -> None:
    import numpy as np

    data = trajectory_figures.TrajectoryData(
        times=np.array([2.0, 1.5, 1.0]),
        frames=np.zeros((3, 16, 16, 3)),
        hr=np.zeros((16, 16, 3)),
        f_sharp=np.zeros(3),
        f_flat=np.zeros(3),
        sharp=(0, 0, 8),
        flat=(8, 8, 8),
        solver="rk4 n=2",
    )
    trajectory_figures.strip(data, "unused.png", "t", frames=3, crop=16)
    (fig,) = saved
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == [f"solver state at t={t}" for t in ("2.00", "1.50", "1.00")]
    assert not any(t.startswith("I(") for t in titles)


def test_close_scales_do_not_get_overlapping_tick_labels() -> None:
    from bench.figures import _spaced_labels

    labels = _spaced_labels([1.1, 1.2, 1.5, 1.55, 2, 3, 4, 6])
    assert labels == ["1.1", "", "1.5", "", "2", "3", "4", "6"]
