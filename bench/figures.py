"""Figures of the reports (PNG, matplotlib/seaborn, headless).

* :func:`psnr_vs_scale` -- Figure 2: mean PSNR vs scale, a line per model, seen scales as dots and
  unseen ones as crosses.
* :func:`pareto` -- PSNR vs NFE for solver settings (log NFE), with the non-dominated front.
* :func:`trajectory_data` + :func:`dynamics` -- Figure 3 analogue: mean |f(I(t), t)| along the
  trajectory on a sharp and on a flat patch.
* :func:`strip` -- Figure 1 analogue: the intermediate images I(t_i) of one solve (crops).
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
import torch  # noqa: E402

from odesr.io import write_bytes_atomic  # noqa: E402

__all__ = ["psnr_vs_scale", "pareto", "TrajectoryData", "trajectory_data", "dynamics", "strip"]


def _save(fig: plt.Figure, path: str | os.PathLike, caption: str | None = None) -> None:
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


def psnr_vs_scale(
    summary: pd.DataFrame, path: str | os.PathLike, title: str, caption: str | None = None
) -> None:
    """``summary``: columns model, scale, psnr (mean over images), seen (bool)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(8, 5))
    models = list(dict.fromkeys(summary["model"]))
    palette = dict(zip(models, sns.color_palette("tab10", len(models)), strict=False))
    data = summary.sort_values("scale")
    sns.lineplot(
        data=data,
        x="scale",
        y="psnr",
        hue="model",
        hue_order=models,
        palette=palette,
        ax=ax,
        linewidth=1.2,
        legend=True,
    )
    for model in models:
        sub = data[data["model"] == model]
        seen = sub[sub["seen"].astype(bool)]
        unseen = sub[~sub["seen"].astype(bool)]
        ax.scatter(seen["scale"], seen["psnr"], marker="o", s=14, color=palette[model], zorder=3)
        ax.scatter(
            unseen["scale"], unseen["psnr"], marker="x", s=22, color=palette[model], zorder=3
        )
    ax.scatter([], [], marker="o", color="grey", label="seen scale")
    ax.scatter([], [], marker="x", color="grey", label="unseen scale")
    ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("scale")
    ax.set_ylabel("PSNR (dB, Y)")
    ax.set_title(title, fontsize=9)
    _save(fig, path, caption)


def pareto(
    summary: pd.DataFrame, path: str | os.PathLike, title: str, caption: str | None = None
) -> None:
    """``summary``: model, solver (method), nfe (mean), psnr (mean), dataset, scale."""
    sns.set_theme(style="whitegrid", context="paper")
    panels = list(summary.groupby(["dataset", "scale"], sort=True))
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.8), squeeze=False)
    models = list(dict.fromkeys(summary["model"]))
    methods = list(dict.fromkeys(summary["solver"]))
    palette = dict(zip(models, sns.color_palette("tab10", len(models)), strict=False))
    markers = dict(zip(methods, ["o", "s", "^", "D", "v"], strict=False))
    for ax, ((dataset, scale), df) in zip(axes[0], panels, strict=False):
        for (model, method), g in df.groupby(["model", "solver"], sort=False):
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
        pts = df.sort_values(["nfe", "psnr"], ascending=[True, False])
        front, best = [], -math.inf
        for _, r in pts.iterrows():
            if r["psnr"] > best:
                front.append((r["nfe"], r["psnr"]))
                best = r["psnr"]
        if front:
            fx, fy = zip(*front, strict=True)
            ax.step(fx, fy, where="post", color="black", lw=0.8, ls="--", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("NFE (backbone evaluations per image)")
        ax.set_ylabel("PSNR (dB, Y)")
        ax.set_title(f"{dataset} x{scale:g}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, caption)


@dataclass
class TrajectoryData:
    """One solve with its trajectory and the two patches (rows/cols slices on the SR grid)."""

    times: np.ndarray  # (T,)
    frames: np.ndarray  # (T, H, W, 3) in [0, 1]
    hr: np.ndarray  # (H, W, 3)
    f_sharp: np.ndarray  # (T,) mean |f| on the sharp patch
    f_flat: np.ndarray  # (T,)
    sharp: tuple[int, int, int]  # top, left, size
    flat: tuple[int, int, int]
    solver: str


def _patches(hr_y: torch.Tensor, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left) of the sharpest (largest mean gradient) and flattest (smallest std) window."""
    gy = (hr_y[1:, :-1] - hr_y[:-1, :-1]).abs()
    gx = (hr_y[:-1, 1:] - hr_y[:-1, :-1]).abs()
    grad = gy + gx
    h, w = grad.shape
    stride = max(size // 2, 1)
    best, flat = (-1.0, (0, 0)), (math.inf, (0, 0))
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            g = float(grad[top : top + size, left : left + size].mean())
            s = float(hr_y[top : top + size, left : left + size].std())
            if g > best[0]:
                best = (g, (top, left))
            if s < flat[0]:
                flat = (s, (top, left))
    return best[1], flat[1]


def trajectory_data(
    model: torch.nn.Module,
    image: torch.Tensor,
    scale: float,
    solver: dict,
    patch: int = 32,
    min_points: int = 16,
) -> TrajectoryData:
    """Solve the ODE of ``model`` (an ``odesr.models.ODESR``) from the bicubic image of ``image``
    (3, H, W) at ``scale`` down to 1, keeping the trajectory; evaluate f(I(t_i), t_i) there."""
    from odesr.degrade import make_case, upscale

    hr, lr, case = make_case(image[None].to(torch.float64), scale)
    settings = model.solver_settings(solver)
    if settings.fixed:  # at least min_points points along the trajectory
        settings = settings.replace(steps=max(settings.num_steps(scale), min_points))
    opts = settings.as_dict()
    x0 = upscale(lr.to(torch.float32), scale, case.sr_size)
    with torch.no_grad():
        sol = model.solve(x0, scale, return_trajectory=True, **opts)
        traj, times = sol.trajectory, sol.times
        fs = [model.func(t, traj[i]) for i, t in enumerate(times)]
    hr32 = hr[0].to(torch.float32)
    y = 0.257 * hr32[0] + 0.504 * hr32[1] + 0.098 * hr32[2]
    size = min(patch, min(y.shape) // 2)
    (st, sl), (ft, fl) = _patches(y, size)

    def mean_abs(f: torch.Tensor, top: int, left: int) -> float:
        return float(f[0, :, top : top + size, left : left + size].abs().mean())

    return TrajectoryData(
        times=times.cpu().numpy().astype(np.float64),
        frames=traj[:, 0].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy(),
        hr=hr32.permute(1, 2, 0).cpu().numpy(),
        f_sharp=np.array([mean_abs(f, st, sl) for f in fs]),
        f_flat=np.array([mean_abs(f, ft, fl) for f in fs]),
        sharp=(st, sl, size),
        flat=(ft, fl, size),
        solver=settings.label(),
    )


def dynamics(
    data: TrajectoryData, path: str | os.PathLike, title: str, caption: str | None = None
) -> None:
    """Figure 3 analogue: the image with both patches boxed, and mean |f| vs t for each."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1, 1.4]})
    a0.imshow(data.frames[-1])
    for (top, left, size), color, name in (
        (data.sharp, "red", "sharp"),
        (data.flat, "blue", "flat"),
    ):
        a0.add_patch(plt.Rectangle((left, top), size, size, fill=False, color=color, lw=1.5))
        a0.text(left, top - 2, name, color=color, fontsize=7)
    a0.set_axis_off()
    a0.set_title("I(1) with the two patches", fontsize=8)
    a1.plot(data.times, data.f_sharp, "o-", ms=3, color="red", label="sharp patch")
    a1.plot(data.times, data.f_flat, "o-", ms=3, color="blue", label="flat patch")
    a1.invert_xaxis()
    a1.set_xlabel("t (scale; the solve runs from t0 down to 1)")
    a1.set_ylabel("mean |f(I(t), t)|")
    a1.legend(fontsize=7)
    a1.set_title(f"solver {data.solver}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, caption)


def strip(
    data: TrajectoryData,
    path: str | os.PathLike,
    title: str,
    frames: int = 6,
    crop: int = 96,
    caption: str | None = None,
) -> None:
    """Figure 1 analogue: ``frames`` evenly spaced I(t_i) (cropped around the sharp patch) + HR."""
    n = len(data.times)
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(frames, n))})
    h, w = data.hr.shape[:2]
    st, sl, size = data.sharp
    c = min(crop, h, w)
    top = int(min(max(st + size // 2 - c // 2, 0), h - c))
    left = int(min(max(sl + size // 2 - c // 2, 0), w - c))
    fig, axes = plt.subplots(1, len(idx) + 1, figsize=(1.9 * (len(idx) + 1), 2.6))
    for ax, i in zip(axes, idx, strict=False):
        ax.imshow(data.frames[i][top : top + c, left : left + c], interpolation="nearest")
        ax.set_title(f"I(t={data.times[i]:.2f})", fontsize=7)
        ax.set_axis_off()
    axes[-1].imshow(data.hr[top : top + c, left : left + c], interpolation="nearest")
    axes[-1].set_title("HR", fontsize=7)
    axes[-1].set_axis_off()
    fig.suptitle(title, fontsize=8)
    _save(fig, path, caption)
