"""Figures of the reports (PNG, matplotlib/seaborn, headless).

* :func:`psnr_vs_scale` -- Figure 2: mean PSNR vs scale, a line per model, seen scales as dots and
  unseen ones as crosses; the bicubic reference black, dashed, on top.
* :func:`gains_vs_scale` -- small multiples: each model's gain over bicubic vs scale (others grey),
  optionally with a 95% band (images, crossed with seeds where there are several; bench.stats).
* :func:`differences_vs_scale` -- one panel per comparison (a model minus its twin): the paired
  difference per scale with its 95% interval, the paper's difference where it reports one.
* :func:`pareto` -- PSNR vs NFE for solver settings (log NFE, ticks at the NFE values), with the
  non-dominated front and an untrained reference (bicubic) as a horizontal line.
* :func:`budget_ladder` -- a gap against log2(training steps) per comparison and scale set: per-seed
  points, the fitted line with its band, carried (dashed) to a target budget with its interval,
  and the paper's margin there.

The figures of a model's solve (Figures 1 and 3 analogues, path following) are in
:mod:`bench.trajectory_figures`; :func:`save_figure` writes every PNG of both.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from odesr.io import write_bytes_atomic  # noqa: E402

__all__ = [
    "psnr_vs_scale",
    "gains_vs_scale",
    "differences_vs_scale",
    "pareto",
    "save_figure",
    "LadderPanel",
    "budget_ladder",
]


def save_figure(fig: plt.Figure, path: str | os.PathLike, caption: str | None = None) -> None:
    """Save as PNG (atomically), with ``caption`` wrapped in a band added below the axes."""
    if caption:
        w, h = fig.get_size_inches()
        lines = textwrap.wrap(caption, max(int(w * 17), 40))
        extra = 0.12 * len(lines) + 0.15
        sp = fig.subplotpars
        fig.set_size_inches(w, h + extra)
        fig.subplots_adjust(
            bottom=(sp.bottom * h + extra) / (h + extra), top=(sp.top * h + extra) / (h + extra)
        )
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, ha="left", va="bottom")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def _seen_markers(ax: plt.Axes, df: pd.DataFrame, y: str, color, size: float = 14) -> set[str]:
    """Dots at scales seen in training, crosses at unseen ones; returns the kinds drawn."""
    seen = df["seen"].astype(bool)
    drawn = set()
    if seen.any():
        ax.scatter(
            df.loc[seen, "scale"], df.loc[seen, y], marker="o", s=size, color=color, zorder=3
        )
        drawn.add("seen")
    if (~seen).any():
        ax.scatter(
            df.loc[~seen, "scale"],
            df.loc[~seen, y],
            marker="x",
            s=size * 1.6,
            color=color,
            zorder=3,
        )
        drawn.add("unseen")
    return drawn


def _marker_legend(drawn: set[str]) -> list:
    """Legend handles for the marker kinds actually drawn (none for a kind never drawn)."""
    from matplotlib.lines import Line2D

    out = []
    if "seen" in drawn:
        out.append(Line2D([], [], ls="", marker="o", color="grey", label="seen scale"))
    if "unseen" in drawn:
        out.append(Line2D([], [], ls="", marker="x", color="grey", label="unseen scale"))
    return out


REFERENCE_STYLE = dict(color="black", ls="--", lw=1.3, zorder=4)  # bicubic: drawn on top


def psnr_vs_scale(
    summary: pd.DataFrame,
    path: str | os.PathLike,
    title: str,
    caption: str | None = None,
    reference: str | None = None,
) -> None:
    """``summary``: columns model, scale, psnr (mean over images), seen (bool). ``reference``
    (default: a model named like ``bicubic*``) is drawn black and dashed on top of the others."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(8, 5))
    models = list(dict.fromkeys(summary["model"]))
    if reference is None:
        reference = next((m for m in models if str(m).startswith("bicubic")), None)
    others = [m for m in models if m != reference]
    palette = dict(zip(others, sns.color_palette("tab10", len(others)), strict=False))
    palette[reference] = REFERENCE_STYLE["color"]
    data = summary.sort_values("scale")
    drawn: set[str] = set()
    for model in others + ([reference] if reference in models else []):
        sub = data[data["model"] == model]
        style = REFERENCE_STYLE if model == reference else dict(color=palette[model], lw=1.2)
        ax.plot(sub["scale"], sub["psnr"], label=model, **style)
        drawn |= _seen_markers(ax, sub, "psnr", palette[model])
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + _marker_legend(drawn), fontsize=7, ncol=2)
    ax.set_xlabel("scale")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path, caption)


def gains_vs_scale(
    gains: pd.DataFrame,
    path: str | os.PathLike,
    title: str,
    reference: str,
    caption: str | None = None,
    ncols: int = 4,
) -> None:
    """Small multiples: one panel per model of its PSNR gain over ``reference`` vs scale (the
    other models in light grey behind it, 0 = the reference), with the paper's gain when known.

    ``gains``: columns model, scale, gain (dB), seen (bool), paper_gain (dB or NaN); optional
    low, high (dB): an interval drawn as a band around the model's line.
    """
    sns.set_theme(style="whitegrid", context="paper")
    models = list(dict.fromkeys(gains["model"]))
    ncols = max(1, min(ncols, len(models)))
    nrows = max(1, math.ceil(len(models) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(2.9 * ncols, 2.5 * nrows + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    colors = [c for i, c in enumerate(sns.color_palette("tab10", 10)) if i != 7]  # 7 is grey
    palette = dict(zip(models, colors * 2, strict=False))
    data = gains.sort_values("scale")
    drawn: set[str] = set()
    has_paper = has_band = False
    for ax, model in zip(axes.flat, models, strict=False):
        for other in models:
            if other != model:
                o = data[data["model"] == other]
                ax.plot(o["scale"], o["gain"], color="0.82", lw=0.8, zorder=1)
        ax.axhline(0.0, **{**REFERENCE_STYLE, "lw": 1.0, "zorder": 2})
        sub = data[data["model"] == model]
        ax.plot(sub["scale"], sub["gain"], color=palette[model], lw=1.4, zorder=3)
        if "low" in sub:
            has_band = True
            ax.fill_between(
                sub["scale"], sub["low"], sub["high"], color=palette[model], alpha=0.25, lw=0
            )
        drawn |= _seen_markers(ax, sub, "gain", palette[model], size=10)
        paper = sub.dropna(subset=["paper_gain"])
        if len(paper):
            has_paper = True
            ax.plot(paper["scale"], paper["paper_gain"], color=palette[model], lw=1.0, ls=":")
        ax.set_title(model, fontsize=8, color=palette[model])
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(models) :]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("scale", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"gain over {reference} (dB)", fontsize=7)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="0.3", lw=1.4, label="this model (ours)"),
        Line2D([], [], color="0.82", lw=0.8, label="the other models"),
        Line2D([], [], **{**REFERENCE_STYLE, "lw": 1.0}, label=f"{reference} (0 dB)"),
    ]
    if has_paper:
        handles.append(Line2D([], [], color="0.3", lw=1.0, ls=":", label="paper's gain"))
    if has_band:
        from matplotlib.patches import Patch

        handles.append(Patch(color="0.3", alpha=0.25, lw=0, label="95% interval"))
    handles += _marker_legend(drawn)
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0 - 0.35 / fig.get_size_inches()[1]),
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_size_inches()[1]))
    save_figure(fig, path, caption)


def differences_vs_scale(
    diffs: pd.DataFrame,
    path: str | os.PathLike,
    title: str,
    caption: str | None = None,
    boundary: float | None = None,
) -> None:
    """One panel per ``comparison`` (e.g. ``vdsr-ode - vdsr+t``): the paired PSNR difference per
    scale as a point with its 95% interval (marker: the seeds x images design behind it), 0 as
    the line of no difference, the paper's difference as a red star where it reports one, and a
    dotted line at ``boundary`` (the largest training scale).

    ``diffs``: columns comparison, scale, estimate, low, high, n_seeds, n_images, paper (dB or
    NaN)."""
    from matplotlib.lines import Line2D

    sns.set_theme(style="whitegrid", context="paper")
    comparisons = list(dict.fromkeys(diffs["comparison"]))
    fig, axes = plt.subplots(
        1, len(comparisons), figsize=(4.6 * len(comparisons), 3.9), sharey=True, squeeze=False
    )
    designs = list(dict.fromkeys(zip(diffs["n_seeds"], diffs["n_images"], strict=True)))
    marker_of = dict(zip(designs, ["o", "s", "D", "^"], strict=False))
    for ax, comparison in zip(axes[0], comparisons, strict=True):
        sub = diffs[diffs["comparison"] == comparison].sort_values("scale")
        ax.axhline(0.0, color="black", lw=0.9, zorder=1)
        if boundary is not None:
            ax.axvline(boundary, color="0.4", lw=0.9, ls=":", zorder=1)
        for design, g in sub.groupby(["n_seeds", "n_images"], sort=False):
            ax.errorbar(
                g["scale"],
                g["estimate"],
                yerr=[g["estimate"] - g["low"], g["high"] - g["estimate"]],
                fmt=marker_of[design],
                ms=4.5,
                capsize=3,
                color="tab:blue",
                zorder=3,
            )
        paper = sub.dropna(subset=["paper"])
        ax.scatter(paper["scale"], paper["paper"], marker="*", s=90, color="tab:red", zorder=4)
        ax.set_title(comparison, fontsize=8.5)
        ax.set_xlabel("scale", fontsize=8)
        scales = sorted(sub["scale"].unique())
        ax.set_xticks(scales)
        ax.set_xticklabels(_spaced_labels(scales), fontsize=6.5)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel("PSNR difference (dB, Y)", fontsize=8)
    handles = [
        Line2D([], [], ls="", marker=marker_of[d], color="tab:blue",
               label=f"ours, 95% interval ({d[0]} seeds x {d[1]} images)")
        for d in designs
    ]  # fmt: skip
    handles.append(Line2D([], [], ls="", marker="*", ms=9, color="tab:red", label="paper"))
    if boundary is not None:
        handles.append(Line2D([], [], color="0.4", lw=0.9, ls=":", label=f"x{boundary:g}: "
                              "largest training scale"))  # fmt: skip
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=6.5,
               frameon=False, bbox_to_anchor=(0.5, 0.93))  # fmt: skip
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    save_figure(fig, path, caption)


def _spaced_labels(values: list[float], min_gap: float = 0.06) -> list[str]:
    """Tick labels for sorted ``values``, blank where a value is closer than ``min_gap`` of the
    span to the last labelled one (x1.1 next to x1.2, x1.5 next to x1.55), so none overlap."""
    span = (values[-1] - values[0]) or 1.0
    labels, last = [], None
    for v in values:
        if last is None or (v - last) / span >= min_gap:
            labels.append(f"{v:g}")
            last = v
        else:
            labels.append("")
    return labels


def _log_ticks(ax: plt.Axes, values) -> None:
    """Log x axis labelled at the NFE values present (plain integers, not 10^k only)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = sorted({int(v) for v in values if v > 0})
    if len(ticks) > 8:  # thin out: keep about 8, always the ends
        keep = np.unique(np.round(np.geomspace(1, len(ticks), 8)).astype(int) - 1)
        ticks = [ticks[i] for i in keep]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _front(df: pd.DataFrame) -> list[tuple[float, float]]:
    pts = df.sort_values(["nfe", "psnr"], ascending=[True, False])
    front, best = [], -math.inf
    for nfe, psnr in zip(pts["nfe"], pts["psnr"], strict=True):
        if psnr > best:
            front.append((nfe, psnr))
            best = psnr
    return front


def pareto(
    summary: pd.DataFrame,
    path: str | os.PathLike,
    title: str,
    caption: str | None = None,
    reference: str | None = None,
) -> None:
    """``summary``: model, solver (method), nfe (mean), psnr (mean), dataset, scale.

    One panel per (dataset, scale): a line per model and solver method over its step counts or
    tolerances, the dashed Pareto front over them, and the model ``reference`` (untrained, 0 NFE:
    bicubic) as a horizontal line across the panel instead of a point."""
    sns.set_theme(style="whitegrid", context="paper")
    panels = list(summary.groupby(["dataset", "scale"], sort=True))
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(7.5, 4.6 * max(len(panels), 1)),
                             squeeze=False)  # fmt: skip
    models = [m for m in dict.fromkeys(summary["model"]) if m != reference]
    methods = list(dict.fromkeys(summary.loc[summary["model"] != reference, "solver"]))
    palette = dict(zip(models, sns.color_palette("tab10", len(models)), strict=False))
    markers = dict(zip(methods, ["o", "s", "^", "D", "v", "P"], strict=False))
    for ax, ((dataset, scale), df) in zip(axes[:, 0], panels, strict=False):
        sub = df[df["model"] != reference]
        for (model, method), g in sub.groupby(["model", "solver"], sort=False):
            g = g.sort_values("nfe")
            ax.plot(
                g["nfe"],
                g["psnr"],
                marker=markers.get(method, "o"),
                ms=4,
                lw=1,
                color=palette[model],
                label=f"{model} / {method}",
            )
        front = _front(sub)
        if len(front) > 1:
            fx, fy = zip(*front, strict=True)
            ax.step(fx, fy, where="post", color="0.45", lw=1.0, ls=":", label="Pareto front")
        base = df[df["model"] == reference]["psnr"]
        if len(base):
            ax.axhline(float(base.mean()), **REFERENCE_STYLE, label=f"{reference} (no network)")
        _log_ticks(ax, sub["nfe"])
        ax.set_xlabel("NFE (backbone evaluations per image, log)")
        ax.set_ylabel("PSNR (dB, Y)")
        ax.set_title(f"{dataset} x{scale:g}", fontsize=8)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, caption)


@dataclass
class LadderPanel:
    """One panel of :func:`budget_ladder`; ``x`` values are log2(steps)."""

    row: int
    col: int
    title: str
    xlabel: str
    x: np.ndarray  # the rungs
    per_seed: np.ndarray  # [seed, rung]: mean over images
    seeds: list[str]
    band_x: np.ndarray
    band: np.ndarray  # [len(band_x), 3]: fit, low, high
    target_x: float
    forecast: tuple[float, float, float]  # estimate, low, high at target_x
    margin: float  # the paper's, NaN for none
    ticks: list[str]  # labels of x then target_x


def budget_ladder(panels: list[LadderPanel], path: str | os.PathLike, caption: str) -> None:
    """Small multiples (rows: scale sets, columns: comparisons) of a gap against log2(steps):
    grey per-seed points, blue rung means and fitted line (dashed past the last rung, on a
    shaded extrapolation span) with its interval band, the forecast with its interval at the
    target and the paper's margin as a red star there. The y range holds the points, the
    forecast, the margin and 0; a wider band is clipped and the forecast interval written."""
    sns.set_theme(style="whitegrid", context="paper")
    n_rows = max(p.row for p in panels) + 1
    n_cols = max(p.col for p in panels) + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.1 * n_rows), squeeze=False)
    markers = "osD^vP*X"
    for p in panels:
        ax = axes[p.row][p.col]
        last, tx = float(p.x.max()), p.target_x
        ax.axvspan(last, tx + 0.6, color="0.95", zorder=0)
        ax.fill_between(p.band_x, p.band[:, 1], p.band[:, 2], color="tab:blue", alpha=0.13, lw=0)
        inside = p.band_x <= last
        ax.plot(p.band_x[inside], p.band[inside, 0], color="tab:blue", lw=1.6)
        ax.plot(p.band_x[~inside | (p.band_x == last)], p.band[~inside | (p.band_x == last), 0],
                color="tab:blue", lw=1.4, ls="--")  # fmt: skip
        offsets = np.linspace(-0.12, 0.12, len(p.seeds)) if len(p.seeds) > 1 else [0.0]
        for k, seed in enumerate(p.seeds):
            ax.scatter(p.x + offsets[k], p.per_seed[k], s=16, marker=markers[k % len(markers)],
                       color="0.35", label=f"seed {seed}", zorder=3)  # fmt: skip
        ax.scatter(p.x, p.per_seed.mean(axis=0), s=28, color="tab:blue", zorder=4, label="mean")
        est, low, high = p.forecast
        ax.errorbar([tx], [est], yerr=[[est - low], [high - est]], fmt="o", color="tab:blue",
                    capsize=3, zorder=4)  # fmt: skip
        shown = [*p.per_seed.ravel(), est, 0.0]
        if math.isfinite(p.margin):
            ax.scatter([tx], [p.margin], marker="*", s=110, color="tab:red", zorder=5,
                       label=f"paper {p.margin:+.2f} dB")  # fmt: skip
            shown.append(p.margin)
        ax.axhline(0, color="0.5", lw=0.8)
        pad = 0.25 * (max(shown) - min(shown)) + 0.05
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.annotate(f"{est:+.2f}\n[{low:+.2f}, {high:+.2f}]", (tx, est), xytext=(-6, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=6.5,
                    color="tab:blue")  # fmt: skip
        ax.set_xticks([*p.x, tx])
        ax.set_xticklabels(p.ticks, fontsize=7)
        ax.set_xlim(float(p.x.min()) - 0.5, tx + 0.6)
        ax.text(last + 0.2, 0.97, "extrapolation", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", color="0.4")  # fmt: skip
        ax.set_title(p.title, fontsize=7.5)
        ax.set_xlabel(p.xlabel, fontsize=7.5)
        ax.set_ylabel("gap, dB", fontsize=7.5)
        ax.tick_params(labelsize=7)
        if p.row == 0 and p.col == 0:
            ax.legend(fontsize=6, loc="best", framealpha=0.8)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path, caption)
