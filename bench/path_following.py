"""Gradual SR (issue 10, item 3): does the learned flow follow I(t)?

    python -m bench.path_following CHECKPOINT [--dataset B100] [--limit 10] [--scales 2,3,4]
        [--grids one-step,h0.5,h0.25,h0.1] [--out results/cpu/path-following] [--data-root DIR]

Solves a trained ODE model from each LR image at each scale on every grid (``one-step``: one step
from t0 to 1; ``hN``: steps of at most N in t), keeps the state at every grid time t_i and
compares it with the true I(t_i) of the same HR image (:func:`odesr.path_following.path_following`:
evaluation conventions, Y-PSNR). Writes ``OUT.csv`` (one row per image, scale, grid and t_i),
``OUT.md`` (means over images, the command and the machine load) and ``OUT.png``. Run it with
OMP_NUM_THREADS=1. ``--replot`` redraws ``OUT.png`` from ``OUT.csv`` without evaluating.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from bench import trajectory_figures
from bench.tables import md_table
from odesr.checkpoints import load_model
from odesr.data import DataError, list_images, load_image
from odesr.evaluate import EvalSettings, parse_scales
from odesr.io import write_csv_atomic, write_text_atomic
from odesr.models import ModelError
from odesr.path_following import PATH_COLUMNS, path_following

__all__ = ["parse_grids", "summarize", "render", "main"]


def parse_grids(text: str) -> dict[str, dict]:
    """``"one-step,h0.5"`` -> ``{"one-step": {"steps": 1}, "h0.5": {"step_size": 0.5}}``."""
    grids: dict[str, dict] = {}
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name == "one-step":
            grids[name] = {"steps": 1}
            continue
        try:
            size = float(name[1:]) if name.startswith("h") else float("nan")
        except ValueError:
            size = float("nan")
        if not size > 0:
            raise ValueError(f"bad grid {name!r}: use one-step or hN (a step size, e.g. h0.25)")
        grids[name] = {"step_size": size}
    if not grids:
        raise ValueError(f"bad --grids {text!r}: no grid given")
    return grids


def summarize(rows: Sequence[dict]) -> pd.DataFrame:
    """Means over images per (scale, grid, step): columns scale, grid, solver, nfe, step, t,
    psnr_path, psnr_hr, psnr_path_hr, n."""
    df = pd.DataFrame(rows)
    keys = ["scale", "grid", "solver", "nfe", "step"]
    out = df.groupby(keys, sort=False).agg(
        t=("t", "first"),
        psnr_path=("psnr_path", "mean"),
        psnr_hr=("psnr_hr", "mean"),
        psnr_path_hr=("psnr_path_hr", "mean"),
        n=("image", "count"),
    )
    return out.reset_index()


def render(summary: pd.DataFrame, header: str) -> str:
    """Markdown: the endpoint table (PSNR against HR per grid and scale), then per scale the
    states along each grid against I(t_i) and HR."""
    scales = sorted(summary["scale"].unique())
    grids = list(dict.fromkeys(summary["grid"]))
    ends = summary.loc[summary.groupby(["scale", "grid"], sort=False)["t"].idxmin()]
    lines = [header, "", "### Endpoint (t = 1): PSNR against HR, mean over images", ""]
    table = []
    for grid in grids:
        sub = ends[ends["grid"] == grid].set_index("scale")
        solver = str(sub["solver"].iloc[0])
        cells = [f"{sub.loc[s, 'psnr_hr']:.2f} ({int(sub.loc[s, 'nfe'])})" for s in scales]
        table.append([grid, solver, *cells])
    header_row = ["grid", "solver", *(f"x{s:g} (NFE)" for s in scales)]
    lines += [md_table(header_row, table)]
    for scale in scales:
        at = summary[summary["scale"] == scale]
        lines += [f"### x{scale:g}: PSNR(state, I(t_i)) / PSNR(state, HR) along each grid", ""]
        times = sorted(at["t"].round(4).unique(), reverse=True)
        rows = []
        for grid in grids:
            sub = at[at["grid"] == grid]
            by_t = {
                round(t, 4): (p, h)
                for t, p, h in zip(sub["t"], sub["psnr_path"], sub["psnr_hr"], strict=True)
            }
            rows.append(
                [grid]
                + [f"{by_t[t][0]:.2f} / {by_t[t][1]:.2f}" if t in by_t else "" for t in times]
            )
        path_hr = {round(t, 4): v for t, v in zip(at["t"], at["psnr_path_hr"], strict=True)}
        rows.append(["I(t_i) vs HR"] + [f"{path_hr[t]:.2f}" for t in times])
        lines += [md_table(["grid", *(f"t={t:g}" for t in times)], rows)]
    return "\n".join(lines)


def plot(summary: pd.DataFrame, out: Path, label: str, dataset: str, n_images: int) -> None:
    """``OUT.png``: every grid's states against I(t_i) and HR
    (:func:`bench.trajectory_figures.path_following`)."""
    trajectory_figures.path_following(
        summary,
        out.with_suffix(".png"),
        f"{label}: solver states on each grid vs I(t) [{dataset}, {n_images} images]",
    )


def replot(out: Path, label: str, dataset: str) -> None:
    """Redraw ``OUT.png`` from the rows of ``OUT.csv`` (nothing is evaluated)."""
    df = pd.read_csv(out.with_suffix(".csv"))
    plot(summarize(df.to_dict("records")), out, label, dataset, int(df["image"].nunique()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.path_following",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a trained ODE model checkpoint (.pt)")
    p.add_argument("--dataset", default="B100")
    p.add_argument("--limit", type=int, default=10, help="first N images (default 10)")
    p.add_argument("--scales", default="2,3,4")
    p.add_argument("--grids", default="one-step,h0.5,h0.25,h0.1")
    p.add_argument("--out", default="results/cpu/path-following", help="output stem")
    p.add_argument("--data-root", default=None)
    p.add_argument("--label", default=None, help="model name in the report (default: the file)")
    p.add_argument(
        "--replot", action="store_true", help="redraw OUT.png from OUT.csv, evaluating nothing"
    )
    args = p.parse_args(argv)
    if args.replot:
        replot(Path(args.out), args.label or str(args.checkpoint), args.dataset)
        print(f"wrote {Path(args.out).with_suffix('.png')}")
        return 0
    try:
        scales = parse_scales(args.scales)
        grids = parse_grids(args.grids)
        model = load_model(Path(args.checkpoint))
        if not model.is_ode:
            raise ModelError(f"{args.checkpoint}: not an ODE model, it has no path to follow")
        for options in grids.values():
            model.solver_settings(options)
        files = list_images(args.dataset, args.data_root)[: args.limit]
    except (ValueError, DataError) as exc:
        print(f"bench.path_following: {exc}", file=sys.stderr)
        return 2
    images = [load_image(f) for f in files]
    start, load = time.perf_counter(), os.getloadavg()
    rows = path_following(model, images, scales, grids, EvalSettings())
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out.with_suffix(".csv"), rows, PATH_COLUMNS)
    summary = summarize(rows)
    label = args.label or str(args.checkpoint)
    command = "OMP_NUM_THREADS=1 python -m bench.path_following " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    header = (
        f"## Path following: {label}\n\nDoes the solve follow I(t)? States of the solve on each "
        f"grid against the true I(t_i) of the same HR image (`path_point(hr, t_i, pad=0)`, LR grid "
        f"anchored at pixel (0, 0) like the evaluation's LR; 8-bit) and against HR. Y-PSNR, "
        f"evaluation conventions (protocol metasr, shave ceil(t0) at every t_i), mean over "
        f"{len(images)} {args.dataset} images (first {len(images)}). Model spec solver: "
        f"{model.solver.label()}, train solver {model.spec.get('train_solver')}.\n\n"
        f"Command: `{command}` ({seconds:.0f} s wall, {torch.get_num_threads()} thread(s), load "
        f"average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, 2 cores shared)."
    )
    write_text_atomic(out.with_suffix(".md"), render(summary, header))
    plot(summary, out, label, args.dataset, len(images))
    print(f"wrote {out.with_suffix('.csv')}, .md, .png ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
