"""``python -m bench report EXPERIMENT --profile P``: tables and figures from the results CSV.

Writes into ``results/<profile>/``: every table of the experiment's ``report.tables`` as Markdown
(``.md``) and LaTeX (``.tex``), every figure of ``report.figures`` as PNG, and an index
``<experiment>.md`` with all captions. Each caption names the profile, the data and image subset
of every model, and the training budget (steps, batch, patch, data) of every checkpoint.

Table kinds: ``claims`` (``claims.csv`` + ``claims.md``: each claim's paired difference with
its 95% interval for the crossed seeds x images design, verdict and Holm's verdict,
:mod:`bench.claims`), ``scales`` (Table 1 layout: a row block per model, scales as columns split
into blocks of ``block``: ours and paper PSNR, then like with like, the gain over bicubic on the
same images against the paper's gain over its bicubic row and their difference) and ``solvers``
(Table 2 layout: dataset x scale rows, bicubic on the same images, then paper / ours /
difference and the gain-vs-gain difference per training solver). Bicubic on the same images:
an untrained bicubic model of the experiment (any sweep) evaluated on the same dataset, image
subset and scale. Figure kinds: ``psnr_vs_scale``
(absolute PSNR per model), ``gains_vs_scale`` and ``gains_band`` (gain over bicubic on the same
images with its 95% interval over images, crossed with seeds where there are several; per-image
rows), ``claim_differences`` (a model minus its twin per scale with the claims' intervals and
the paper's difference, :func:`bench.claims.scale_differences`), ``pareto`` (PSNR vs NFE, the
bicubic reference as a line; ``omit``: models left out, named with their PSNR range in the
caption), ``dynamics`` (Figure 3 analogue, needs the checkpoint and the data) and ``strip``
(Figure 1 analogue: the solver's states). A model the profile's sweep does not evaluate is left
out of the tables and figures that list it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pandas as pd

from bench.captions import caption, images_text, like_with_like_text
from bench.experiment import Experiment, load_experiment
from bench.paper import (  # noqa: F401 - paper_tables_path, paper_values: bench.report's API too
    PACKAGED_PAPER_TABLES,
    PAPER_TABLES_ENV,
    lookup_paper,
    paper_tables_path,
    paper_values,
)
from bench.profile import Profile
from bench.report_figures import index_sections, write_figure
from bench.summary import (  # noqa: F401 - load_results, current_rows: bench.report's API too
    bicubic_ids,
    bicubic_rows,
    current_rows,
    fmt,
    load_results,
    paper_any_table,
    paper_bicubic,
    psnr_by_scale,
    same_images,
    summarize,
    sweep_models,
)
from bench.tables import md_table, tex_table
from odesr.evaluate import parse_scales
from odesr.io import write_text_atomic

__all__ = [
    "caption",
    "current_rows",
    "load_results",
    "summarize",
    "paper_tables_path",
    "paper_values",
    "scales_table",
    "solvers_table",
    "write_report",
]


def scales_table(
    summary: pd.DataFrame,
    ref: pd.DataFrame,
    models: list[str],
    dataset: str,
    paper_table: str | None,
    block: int = 10,
    bicubic: list[str] | None = None,
) -> list[tuple[list[str], list[list]]]:
    """Blocks of (header, rows), scales as columns, ``block`` per block. Per model: 'ours' and
    'paper' PSNR; then like with like: 'gain' (ours - bicubic on the same images: a model of
    ``bicubic`` on the same dataset and image subset), 'paper gain' (the paper's row - its
    bicubic row) and 'Δ gain' (gain - paper gain). A bicubic model itself: 'ours', 'paper' and
    'Δ' (ours - paper) only where it was evaluated on all the images, as the paper was."""
    bicubic = list(bicubic or [])
    df = summary[summary["dataset"] == dataset]
    paper_base_label = paper_bicubic(df, bicubic)
    scales = sorted(df["scale"].unique())
    blocks = []
    for b in range(0, len(scales), max(block, 1)):
        cols = scales[b : b + block]
        header = ["method", ""] + [f"×{s:g}" for s in cols]
        rows = []
        for model in models:
            sub = df[df["model"] == model]
            if sub.empty:
                continue
            label = sub["paper"].iloc[0] or ""
            name = model + (f" ({label})" if label and label != model else "")
            ours = {s: float(v) for s, v in zip(sub["scale"], sub["psnr"], strict=True)}
            paper = {s: lookup_paper(ref, paper_table, dataset, label, s) for s in cols}
            has_paper = any(not math.isnan(v) for v in paper.values())
            rows.append([name, "ours"] + [fmt(ours.get(s, math.nan)) for s in cols])
            if has_paper:
                rows.append(["", "paper"] + [fmt(paper[s]) for s in cols])
            if model in bicubic:
                if has_paper and str(sub["subset"].iloc[0]) == "all":
                    rows.append(
                        ["", "Δ"] + [fmt(ours.get(s, math.nan) - paper[s], True) for s in cols]
                    )
                continue
            base = same_images(df, bicubic, dataset, str(sub["subset"].iloc[0]))
            if not base:
                continue
            gain = {s: ours.get(s, math.nan) - base.get(s, math.nan) for s in cols}
            rows.append(["", "gain"] + [fmt(gain[s], True) for s in cols])
            if has_paper:
                pgain = {
                    s: paper[s] - lookup_paper(ref, paper_table, dataset, paper_base_label, s)
                    for s in cols
                }
                rows.append(["", "paper gain"] + [fmt(pgain[s], True) for s in cols])
                rows.append(["", "Δ gain"] + [fmt(gain[s] - pgain[s], True) for s in cols])
        blocks.append((header, rows))
    return blocks


def solvers_table(
    summary: pd.DataFrame,
    ref: pd.DataFrame,
    models: dict[str, str],
    paper_table: str | None,
    bicubic: dict[tuple[str, float], float] | None = None,
    paper_bicubic: dict[tuple[str, float], float] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Table 2 layout: rows dataset × scale; ``bicubic`` (ours on the same images, by
    (dataset, scale)) and ``paper_bicubic`` (the paper's, where it has one); per solver key:
    paper, ours, Δ (ours - paper) and Δ gain ((ours - bicubic) - (paper - paper's bicubic))."""
    bicubic, paper_bicubic = bicubic or {}, paper_bicubic or {}
    header = ["dataset", "scale", "bicubic ours", "bicubic paper"]
    for key in models:
        header += [f"{key} paper", f"{key} ours", f"{key} Δ", f"{key} Δ gain"]
    rows = []
    pairs = summary[["dataset", "scale"]].drop_duplicates()
    for dataset in sorted(pairs["dataset"].unique()):
        for scale in sorted(pairs[pairs["dataset"] == dataset]["scale"]):
            base = bicubic.get((dataset, round(float(scale), 6)), math.nan)
            paper_base = paper_bicubic.get((dataset, round(float(scale), 6)), math.nan)
            row = [dataset, f"×{scale:g}", fmt(base), fmt(paper_base)]
            for key, model in models.items():
                sub = summary[
                    (summary["model"] == model)
                    & (summary["dataset"] == dataset)
                    & (summary["scale"] == scale)
                ]
                ours = float(sub["psnr"].iloc[0]) if len(sub) else math.nan
                label = sub["paper"].iloc[0] if len(sub) else None
                paper = lookup_paper(ref, paper_table, dataset, label, scale, solver=key)
                gap = (ours - base) - (paper - paper_base)
                row += [fmt(paper), fmt(ours), fmt(ours - paper, True), fmt(gap, True)]
            rows.append(row)
    return header, rows


def gains_table(
    summary: pd.DataFrame,
    ref: pd.DataFrame,
    models: list[str],
    dataset: str,
    reference: str,
    paper_table: str | None,
    scales: list[float],
) -> tuple[list[str], list[list[str]]]:
    """Gain over ``reference`` (bicubic on the same images) per model and scale, with the paper's
    gain over its bicubic row in brackets: ``+0.93 (+2.15)``."""
    df = summary[summary["dataset"] == dataset]
    base, base_label = psnr_by_scale(df, reference)
    per_model = {model: psnr_by_scale(df, model) for model in models}
    header = ["scale", *models]
    rows = []
    for scale in scales:
        row = [f"×{scale:g}"]
        paper_base = lookup_paper(ref, paper_table, dataset, base_label or "bicubic", scale)
        for model in models:
            ours, label = per_model[model]
            gain = ours.get(scale, math.nan) - base.get(scale, math.nan)
            paper = lookup_paper(ref, paper_table, dataset, label, scale) - paper_base
            row.append(fmt(gain, True) + ("" if math.isnan(paper) else f" ({fmt(paper, True)})"))
        rows.append(row)
    return header, rows


def pair_difference(summary: pd.DataFrame, dataset: str, model: str, other: str) -> str:
    """'vdsr-ode - vdsr+t: -0.12 dB averaged over 30 scales (per scale -0.74 to +0.08)' over
    their common scales: a description, not a verdict (counting the scales where one is ahead
    would make ties look like wins; verdicts with intervals are the claims experiment's)."""
    df = summary[summary["dataset"] == dataset]
    a, _ = psnr_by_scale(df, model)
    b, _ = psnr_by_scale(df, other)
    diffs = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    if not diffs:
        return f"{model} vs {other}: no common scales"
    return (
        f"{model} - {other}: {sum(diffs) / len(diffs):+.2f} dB averaged over {len(diffs)} "
        f"scales (per scale {min(diffs):+.2f} to {max(diffs):+.2f})"
    )


# ----------------------------------------------------------------------------- captions


# ----------------------------------------------------------------------------- driver


def _paper_reference(spec: dict, path: Path) -> pd.DataFrame:
    """The paper tables; a report whose tables promise a paper comparison fails without them."""
    promised = [t.get("file", t["kind"]) for t in spec.get("tables", []) if t.get("paper_table")]
    if promised and not path.is_file():
        raise FileNotFoundError(
            f"paper tables not found at {path} (needed by {', '.join(promised)}): pass "
            f"--paper-tables FILE or set {PAPER_TABLES_ENV}"
        )
    return paper_values(path)


def _scales_section(exp, profile, t, s, ref, base, full) -> tuple[list[str], list[str]]:
    models = t.get("models") or sweep_models(exp, profile, t.get("sweep", "main"))
    datasets = [t["dataset"]] if t.get("dataset") else sorted(s["dataset"].unique())
    bicubic = bicubic_ids(exp, profile)
    md, tex = [], []
    for dataset in datasets:
        sd = s[s["dataset"] == dataset]
        what = (
            f"{exp.title}: {dataset}, ours vs paper like with like. "
            + like_with_like_text(sd, bicubic, models, dataset)
            + ". paper gain = the paper's row - its bicubic row (its means over all of "
            + f"{dataset}); Δ gain = gain - paper gain; Δ = ours - paper only for bicubic on "
            "all the images"
        )
        cap = caption(exp, profile, what, sd, models)
        md.append(f"### {dataset}\n\n{cap}\n")
        blocks = scales_table(
            sd, ref, models, dataset, t.get("paper_table"), int(t.get("block", 10)), bicubic
        )
        for i, (header, rows) in enumerate(blocks):
            md.append(md_table(header, rows))
            tex.append(tex_table(header, rows, cap if i == 0 else None, f"{base}-{dataset}-{i}"))
    return md, tex


def _solvers_section(exp, profile, t, s, ref, base, full) -> tuple[list[str], list[str]]:
    models_map = dict(t["models"])
    bicubic = bicubic_ids(exp, profile)
    ours, paper, used, missing = {}, {}, [], []
    first = s[s["model"].isin(models_map.values())]
    pairs = zip(first["dataset"], first["subset"], strict=True)
    for dataset, subset in sorted({(d, str(x)) for d, x in pairs}):
        rows = bicubic_rows(full, bicubic, dataset, subset)
        n = int(first.loc[first["dataset"] == dataset, "n"].max())
        if rows.empty:
            missing.append(images_text(subset, n, dataset))
        used.append(rows)
        for scale, psnr in zip(rows["scale"], rows["psnr"], strict=True):
            ours[dataset, round(float(scale), 6)] = float(psnr)
        label = paper_bicubic(full, bicubic)
        for scale in sorted(first.loc[first["dataset"] == dataset, "scale"]):
            key = (dataset, round(float(scale), 6))
            paper[key] = paper_any_table(ref, dataset, label, scale)
    what = (
        f"{exp.title}: Euler vs RK4 (each model evaluated with its training solver; "
        "Δ = ours - paper; bicubic ours: bicubic on the same images as the models"
        + (f" (not evaluated on {', '.join(missing)})" if missing else "")
        + "; bicubic paper: the paper's bicubic row, its means over all of the set, where it "
        "has one; Δ gain = (ours - bicubic ours) - (paper - bicubic paper), like "
        "with like)"
    )
    with_bicubic = pd.concat([s, *used]) if used else s
    shown = [*models_map.values(), *dict.fromkeys(m for rows in used for m in rows["model"])]
    cap = caption(exp, profile, what, with_bicubic, shown)
    header, rows = solvers_table(s, ref, models_map, t.get("paper_table"), ours, paper)
    return [cap + "\n", md_table(header, rows)], [tex_table(header, rows, cap, base)]


def _gains_section(exp, profile, t, s, ref, base, full) -> tuple[list[str], list[str]]:
    evaluated = sweep_models(exp, profile, t.get("sweep", "main"))
    models = [m for m in t["models"] if m in evaluated]
    reference = str(t.get("reference", "bicubic-subset"))
    dataset = str(t["dataset"])
    sd = s[s["dataset"] == dataset]
    scales = [float(x) for x in parse_scales(str(t.get("scales", "2,3,4")))]
    what = (
        f"{exp.title}: {dataset}, PSNR gain over {reference} on the same images "
        "(paper's gain over its bicubic row in brackets)"
    )
    cap = caption(exp, profile, what, sd, [reference, *models])
    pairs = [
        pair_difference(sd, dataset, a, b)
        for a, b in t.get("pairs", [])
        if a in evaluated and b in evaluated
    ]
    header, rows = gains_table(sd, ref, models, dataset, reference, t.get("paper_table"), scales)
    tail = "".join(f"\n- {w}" for w in pairs)
    md = [cap + "\n", md_table(header, rows) + tail + ("\n" if tail else "")]
    tex_cap = cap + (" " + "; ".join(pairs) + "." if pairs else "")
    return md, [tex_table(header, rows, tex_cap, base)]


_TABLE_KINDS = {"scales": _scales_section, "solvers": _solvers_section, "gains": _gains_section}


def _write_table(exp, profile, t, summary, ref, out_dir: Path) -> tuple[list[Path], str]:
    """One table as ``.md`` and ``.tex``; returns the paths and its index section."""
    sweep = t.get("sweep", "main")
    base = t.get("file", f"{exp.name}-{sweep}")
    if t["kind"] not in _TABLE_KINDS:
        raise ValueError(f"unknown table kind {t['kind']!r}")
    s = summary[summary["sweep"] == sweep]
    md, tex = _TABLE_KINDS[t["kind"]](exp, profile, t, s, ref, base, summary)
    paths = []
    for ext, parts in (("md", md), ("tex", tex)):
        path = out_dir / f"{base}.{ext}"
        write_text_atomic(path, "\n".join(parts))
        paths.append(path)
    return paths, f"## Table `{base}`\n\n" + "\n".join(md)


def write_report(
    experiment: str | os.PathLike | dict | Experiment,
    profile: Profile,
    data_root: str | None = None,
    device: str | None = "cpu",
    log=None,
    paper_tables: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the experiment's tables and figures; returns the written paths.

    Paper values come from :func:`paper_tables_path` (``paper_tables`` overrides it)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    csv_path = profile.results_csv(exp.name)
    if not csv_path.exists():
        raise FileNotFoundError(
            f"no results at {csv_path}: run `python -m bench run {exp.name} "
            f"--profile {profile.name}` first"
        )
    spec = exp.for_profile(profile.name).get("report") or {}
    ref = _paper_reference(spec, paper_tables_path(data_root, paper_tables))
    out_dir = csv_path.parent
    rows = current_rows(load_results(csv_path), exp, profile)
    summary = summarize(rows)
    index_path = out_dir / f"{exp.name}-report.md"
    index = [
        f"# {exp.title} — profile `{profile.name}`\n",
        f"Results: `{csv_path}` ({len(summary)} unit means).\n",
    ]
    written: list[Path] = []
    for t in spec.get("tables", []):
        if t["kind"] == "claims":  # per-image rows: paired differences, bootstrap intervals
            from bench.claims import write_claims

            paths, section = write_claims(exp, profile, t, rows, ref, out_dir)
        elif t["kind"] == "scaling":  # budget ladder: gap slopes on log2(steps), forecasts
            from bench.scaling import write_scaling

            paths, section = write_scaling(exp, profile, t, rows, ref, out_dir)
        else:
            paths, section = _write_table(exp, profile, t, summary, ref, out_dir)
        written += paths
        index.append(section)
    previous = index_sections(index_path)
    # ref: the paper's values (gains figure); rows: per image (the gains band figure)
    opts = (data_root, device, ref, rows)
    for f in spec.get("figures", []):
        path, section = write_figure(exp, profile, f, summary, out_dir, previous, opts, log)
        written += [path] if path is not None else []
        index.append(section)
    write_text_atomic(index_path, "\n".join(index))
    written.append(index_path)
    return written
