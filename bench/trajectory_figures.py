"""Figures of a model's solve (PNG, headless): what the ODE does between t0 and 1.

* :func:`trajectory_data` + :func:`dynamics` -- Figure 3 analogue: mean |f(I(t), t)| along the
  trajectory on a sharp and on a flat patch.
* :func:`strip` -- Figure 1 analogue: the solver's states at its grid times t_i (crops); they are
  not the path I(t_i), which the solve need not follow (:func:`path_following`).
* :func:`path_following` -- the states of solves on several grids against the true I(t_i) and HR.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from bench.figures import REFERENCE_STYLE, plt, save_figure

__all__ = ["TrajectoryData", "trajectory_data", "dynamics", "strip", "path_following"]


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
    save_figure(fig, path, caption)


def strip(
    data: TrajectoryData,
    path: str | os.PathLike,
    title: str,
    frames: int = 6,
    crop: int = 96,
    caption: str | None = None,
) -> None:
    """Figure 1 analogue: ``frames`` evenly spaced solver states at t_i (cropped around the sharp
    patch) and HR. A state is the solve's estimate at t_i, not the path image I(t_i)."""
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
        ax.set_title(f"solver state at t={data.times[i]:.2f}", fontsize=6.5)
        ax.set_axis_off()
    axes[-1].imshow(data.hr[top : top + c, left : left + c], interpolation="nearest")
    axes[-1].set_title("HR", fontsize=7)
    axes[-1].set_axis_off()
    fig.suptitle(title, fontsize=8)
    save_figure(fig, path, caption)


def path_following(
    summary: pd.DataFrame, path: str | os.PathLike, title: str, caption: str | None = None
) -> None:
    """One column per scale t0. Top: mean PSNR of the state against the true I(t_i) vs t_i,
    markers per grid at its own t_i only (no lines: a solve has no state between its grid
    times; legend: the grid and its endpoint PSNR against HR). Bottom: mean PSNR of the state
    against HR, with the path itself (I(t) against HR, defined at every t) black and dashed.
    ``summary``: columns scale, grid, t, psnr_path, psnr_hr, psnr_path_hr (means over images)."""
    sns.set_theme(style="whitegrid", context="paper")
    scales = sorted(summary["scale"].unique())
    grids = list(dict.fromkeys(summary["grid"]))
    palette = dict(zip(grids, sns.color_palette("tab10", len(grids)), strict=False))
    fig, axes = plt.subplots(
        2, len(scales), figsize=(3.6 * len(scales), 6.2), squeeze=False, sharex="col"
    )
    for col, scale in enumerate(scales):
        top, bottom = axes[0][col], axes[1][col]
        at = summary[summary["scale"] == scale]
        for grid in grids:
            sub = at[at["grid"] == grid].sort_values("t")
            if sub.empty:
                continue
            end = float(sub[sub["t"] == sub["t"].min()]["psnr_hr"].iloc[0])
            k = grids.index(grid)  # coarse grids hollow and larger: finer ones do not hide them
            style = dict(
                color=palette[grid],
                marker="osD^v"[k % 5] if k < len(grids) - 1 else ".",
                ms=max(8.0 - 1.5 * k, 4.0),
                mfc="none" if k < len(grids) - 1 else palette[grid],
                ls="",  # states only: a solve has none between its grid times
            )
            top.plot(sub["t"], sub["psnr_path"], label=f"{grid} (end {end:.2f} dB)", **style)
            bottom.plot(sub["t"], sub["psnr_hr"], label=grid, **style)
        path_pts = at.drop_duplicates("t").sort_values("t")
        bottom.plot(path_pts["t"], path_pts["psnr_path_hr"], label="I(t) itself", **REFERENCE_STYLE)
        top.set_title(f"x{scale:g}", fontsize=9)
        top.legend(fontsize=6)
        bottom.set_xlabel("t (the solve runs from t0 down to 1)")
        top.invert_xaxis()  # shared with the bottom axes
        if col == 0:
            top.set_ylabel("PSNR(state, I(t)) dB, Y")
            bottom.set_ylabel("PSNR(state, HR) dB, Y")
            bottom.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, caption)
