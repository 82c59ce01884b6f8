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

from bench.experiment import Experiment, dataset_label, load_experiment, training_budget
from bench.paper import (  # noqa: F401 - paper_tables_path, paper_values: bench.report's API too
    PACKAGED_PAPER_TABLES,
    PAPER_TABLES_ENV,
    lookup_paper,
    paper_tables_path,
    paper_values,
)
from bench.results import REQUIRED_COLUMNS
from bench.runner import results_path
from bench.tables import md_table, tex_table
from odesr.evaluate import parse_scales
from odesr.io import read_csv_rows, write_text_atomic

__all__ = [
    "load_results",
    "summarize",
    "paper_tables_path",
    "paper_values",
    "scales_table",
    "solvers_table",
    "write_report",
]

NUMERIC = ("scale", "psnr", "ssim", "seconds", "nfe", "params")


def load_results(path: str | os.PathLike) -> pd.DataFrame:
    """The results CSV as a frame; a damaged file (see :mod:`bench.results`) is refused."""
    damaged = read_csv_rows(path, required=REQUIRED_COLUMNS, numeric=("scale",)).damaged
    if damaged:
        from odesr.data import DataError

        line, why = damaged[0]
        fix = (
            "restore its header or move it away"
            if line == 1
            else "`python -m bench run` repairs it (moves it aside, re-evaluates what is missing)"
        )
        raise DataError(f"{path} line {line}: damaged ({why}); {fix}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if "seen" in df:
        df["seen"] = df["seen"].astype(str).str.lower().isin(["true", "1"])
    for col in ("sweep", "solver", "solver_opts", "subset", "paper"):
        if col not in df:
            df[col] = ""
    return df


def current_rows(df: pd.DataFrame, exp: Experiment, profile: str) -> pd.DataFrame:
    """Only the rows made with the weights the experiment names now, on the image subset it names
    now (older rows, of a model whose training config changed or of a smaller subset, stay in the
    CSV but are not reported: a mean over a mix of subsets is no subset's mean). Rows without a
    subset (older files) are matched on the weights alone."""
    if "weights" not in df:
        return df
    units = {
        (u.model.id, u.model.key, dataset_label(u.dataset), u.subset) for u in exp.units(profile)
    }
    weights = {unit[:2] for unit in units}
    subsets = df["subset"].fillna("") if "subset" in df else pd.Series("", index=df.index)
    mask = [
        (m, w, d, s) in units if s else (m, w) in weights
        for m, w, d, s in zip(df["model"], df["weights"], df["dataset"], subsets, strict=True)
    ]
    return df[mask]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over images per (sweep, model, solver setting, dataset, scale) and training seed,
    then mean over seeds; ``n``: images, ``seeds``: training seeds (0 for untrained models)."""
    keys = ["sweep", "model", "paper", "solver", "solver_opts", "dataset", "scale", "subset"]
    if "device" not in df:
        df = df.assign(device="")
    if "seed" not in df:
        df = df.assign(seed="")
    means = {c: (c, "mean") for c in ("psnr", "ssim", "nfe", "seconds")}
    # rows whose PSNR or SSIM is missing or not finite: left out of the means, named in captions
    bad = pd.Series(False, index=df.index)
    for col in ("psnr", "ssim"):
        if col in df:
            bad |= ~pd.to_numeric(df[col], errors="coerce").apply(math.isfinite)
    df = df.assign(incomplete=bad.astype(int))
    for col in ("psnr", "ssim"):
        if col in df:  # NaN is left out of the means (an inf would swallow them)
            df[col] = pd.to_numeric(df[col], errors="coerce").where(~bad)
    per_seed = (
        df.groupby([*keys, "seed"], sort=False, dropna=False)
        .agg(
            **means,
            n=("image", "nunique"),
            incomplete=("incomplete", "sum"),
            seen=("seen", "first"),
            device=("device", _distinct),
        )
        .reset_index()
    )
    out = (
        per_seed.groupby(keys, sort=False, dropna=False)
        .agg(
            **means,
            n=("n", "max"),
            incomplete=("incomplete", "sum"),
            seeds=("seed", _count_trained),
            seen=("seen", "first"),
            device=("device", _distinct),
        )
        .reset_index()
    )
    return out


def _count_trained(seeds: pd.Series) -> int:
    """Training seeds among ``seeds`` ('' marks an untrained model)."""
    return sum(str(x) not in ("", "nan") for x in seeds)


def _distinct(values: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in values if str(v) not in ("", "nan")}))


def _f(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _bicubic_ids(exp: Experiment, profile: str) -> list[str]:
    """The experiment's untrained bicubic models (the references for gains)."""
    out = []
    for model in exp.model_ids():
        try:
            plan = exp.model_plans(model, profile)[0]
        except Exception:  # noqa: BLE001 - a model the profile cannot resolve is no reference
            continue
        if (
            not plan.trained
            and not plan.ensemble
            and (plan.model_spec or {}).get("name") == ("bicubic")
        ):
            out.append(model)
    return out


def _same_images(
    summary: pd.DataFrame, bicubic: list[str], dataset: str, subset: str
) -> dict[float, float]:
    """``{scale: psnr}`` of bicubic on ``dataset``'s ``subset`` (:func:`_bicubic_rows`)."""
    sub = _bicubic_rows(summary, bicubic, dataset, subset)
    return {float(s): float(v) for s, v in zip(sub["scale"], sub["psnr"], strict=True)}


def _bicubic_rows(
    summary: pd.DataFrame, bicubic: list[str], dataset: str, subset: str
) -> pd.DataFrame:
    """The summary rows of the first bicubic model on ``dataset``'s ``subset`` (may be empty)."""
    for model in bicubic:
        sub = summary[
            (summary["model"] == model)
            & (summary["dataset"] == dataset)
            & (summary["subset"] == subset)
        ]
        if len(sub):
            return sub
    return summary.iloc[0:0]


def _paper_any_table(ref: pd.DataFrame, dataset: str, method: str, scale: float) -> float:
    """The paper's value of ``method`` on ``dataset`` at ``scale`` from whichever of its tables
    has one (bicubic is in Table 1 only)."""
    for table in sorted(ref["table"].unique()) if not ref.empty else []:
        value = lookup_paper(ref, table, dataset, method, scale)
        if not math.isnan(value):
            return value
    return math.nan


def _paper_bicubic(summary: pd.DataFrame, bicubic: list[str]) -> str:
    """The paper's label of its bicubic row (``bicubic`` unless a bicubic model names one)."""
    labels = summary.loc[summary["model"].isin(bicubic), "paper"]
    return next((str(x) for x in labels if str(x)), "bicubic")


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
    paper_base_label = _paper_bicubic(df, bicubic)
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
            rows.append([name, "ours"] + [_f(ours.get(s, math.nan)) for s in cols])
            if has_paper:
                rows.append(["", "paper"] + [_f(paper[s]) for s in cols])
            if model in bicubic:
                if has_paper and str(sub["subset"].iloc[0]) == "all":
                    rows.append(
                        ["", "Δ"] + [_f(ours.get(s, math.nan) - paper[s], True) for s in cols]
                    )
                continue
            base = _same_images(df, bicubic, dataset, str(sub["subset"].iloc[0]))
            if not base:
                continue
            gain = {s: ours.get(s, math.nan) - base.get(s, math.nan) for s in cols}
            rows.append(["", "gain"] + [_f(gain[s], True) for s in cols])
            if has_paper:
                pgain = {
                    s: paper[s] - lookup_paper(ref, paper_table, dataset, paper_base_label, s)
                    for s in cols
                }
                rows.append(["", "paper gain"] + [_f(pgain[s], True) for s in cols])
                rows.append(["", "Δ gain"] + [_f(gain[s] - pgain[s], True) for s in cols])
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
            row = [dataset, f"×{scale:g}", _f(base), _f(paper_base)]
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
                row += [_f(paper), _f(ours), _f(ours - paper, True), _f(gap, True)]
            rows.append(row)
    return header, rows


def _psnr_by_scale(df: pd.DataFrame, model: str) -> tuple[dict[float, float], str]:
    sub = df[df["model"] == model]
    label = (sub["paper"].iloc[0] or "") if len(sub) else ""
    return {float(s): float(v) for s, v in zip(sub["scale"], sub["psnr"], strict=True)}, label


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
    base, base_label = _psnr_by_scale(df, reference)
    per_model = {model: _psnr_by_scale(df, model) for model in models}
    header = ["scale", *models]
    rows = []
    for scale in scales:
        row = [f"×{scale:g}"]
        paper_base = lookup_paper(ref, paper_table, dataset, base_label or "bicubic", scale)
        for model in models:
            ours, label = per_model[model]
            gain = ours.get(scale, math.nan) - base.get(scale, math.nan)
            paper = lookup_paper(ref, paper_table, dataset, label, scale) - paper_base
            row.append(_f(gain, True) + ("" if math.isnan(paper) else f" ({_f(paper, True)})"))
        rows.append(row)
    return header, rows


def pair_difference(summary: pd.DataFrame, dataset: str, model: str, other: str) -> str:
    """'vdsr-ode - vdsr+t: -0.12 dB averaged over 30 scales (per scale -0.74 to +0.08)' over
    their common scales: a description, not a verdict (counting the scales where one is ahead
    would make ties look like wins; verdicts with intervals are the claims experiment's)."""
    df = summary[summary["dataset"] == dataset]
    a, _ = _psnr_by_scale(df, model)
    b, _ = _psnr_by_scale(df, other)
    diffs = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    if not diffs:
        return f"{model} vs {other}: no common scales"
    return (
        f"{model} - {other}: {sum(diffs) / len(diffs):+.2f} dB averaged over {len(diffs)} "
        f"scales (per scale {min(diffs):+.2f} to {max(diffs):+.2f})"
    )


# ----------------------------------------------------------------------------- captions


def _subset_text(summary: pd.DataFrame, models: list[str]) -> str:
    parts = []
    for dataset, df in summary.groupby("dataset", sort=True):
        groups: dict[str, list[str]] = {}
        for model in models:
            sub = df[df["model"] == model]
            if sub.empty:
                continue
            n = int(sub["n"].max())
            subset = sub["subset"].iloc[0] or "?"
            what = f"all {n} images" if subset == "all" else f"{subset} images ({n})"
            groups.setdefault(what, []).append(model)
        if groups:
            if len(groups) == 1:
                parts.append(f"{dataset}, {next(iter(groups))}")
            else:
                per = "; ".join(f"{', '.join(m)}: {w}" for w, m in groups.items())
                parts.append(f"{dataset} ({per})")
    return "; ".join(parts)


def _budget_text(exp: Experiment, profile: str, models: list[str]) -> str:
    seen: dict[str, list[str]] = {}
    for model in models:
        try:
            plans = exp.model_plans(model, profile)
        except Exception:  # noqa: BLE001 - a caption must not fail the report
            continue
        for plan in plans:
            seen.setdefault(training_budget(plan.train_cfg), []).append(model)
    return "; ".join(f"{', '.join(dict.fromkeys(m))}: {b}" for b, m in seen.items())


def caption(
    exp: Experiment,
    profile: str,
    what: str,
    summary: pd.DataFrame,
    models: list[str],
    extra: str = "",
) -> str:
    over = "images"
    if "seeds" in summary:
        per_model = summary[summary["model"].isin(models)].groupby("model", sort=False)["seeds"]
        counts = {m: int(n) for m, n in per_model.max().items()}
        trained = {m: n for m, n in counts.items() if n >= 1}
        if trained and max(trained.values()) > 1:
            over = "images per training seed, then over the seeds"
            if len(set(trained.values())) == 1:
                over += f" ({max(trained.values())})"
            else:  # say which model has how many: a partial run is not a 3-seed mean
                over += " (" + ", ".join(f"{m}: {n}" for m, n in trained.items()) + ")"
    text = (
        f"{what}. Profile {profile}. Data: {_subset_text(summary, models)}. "
        f"PSNR on Y, mean over {over}. Training: {_budget_text(exp, profile, models)}."
    )
    used = summary[summary["model"].isin(models)]
    devices = _distinct(pd.Series([d for cell in used["device"] for d in cell.split(", ")]))
    if devices:
        text += f" Evaluated on {devices}."
    absent = [m for m in models if m not in set(summary["model"])]
    if absent:
        text += (
            f" NOT EVALUATED YET: {', '.join(absent)} (no rows; python -m bench run "
            f"{exp.name} --profile {profile} makes them)."
        )
    missing = int(used["incomplete"].sum()) if "incomplete" in used else 0
    if missing:
        text += (
            f" INCOMPLETE: {missing} image rows lack a finite PSNR/SSIM and are left out of "
            "the means (python -m bench run re-evaluates them)."
        )
    return text + (f" {extra}" if extra else "")


# ----------------------------------------------------------------------------- driver


def _sweep_models(exp: Experiment, profile: str, sweep: str) -> list[str]:
    for s in exp.sweeps(profile):
        if s.get("name", "main") == sweep:
            return list(s.get("models", []))
    return []


def _paper_reference(spec: dict, path: Path) -> pd.DataFrame:
    """The paper tables; a report whose tables promise a paper comparison fails without them."""
    promised = [t.get("file", t["kind"]) for t in spec.get("tables", []) if t.get("paper_table")]
    if promised and not path.is_file():
        raise FileNotFoundError(
            f"paper tables not found at {path} (needed by {', '.join(promised)}): pass "
            f"--paper-tables FILE or set {PAPER_TABLES_ENV}"
        )
    return paper_values(path)


def _images_text(subset: str, n: int, dataset: str) -> str:
    """``B100's first 20 images`` / ``all 100 B100 images``."""
    return f"all {n} {dataset} images" if subset == "all" else f"{dataset}'s {subset} images"


def _like_with_like_text(
    summary: pd.DataFrame, bicubic: list[str], models: list[str], dataset: str
) -> str:
    """Which bicubic rows the gains use, on which images, and how far a subset's bicubic mean is
    from the whole set's (why absolute PSNR of a subset is not compared with the paper's)."""
    df = summary[summary["dataset"] == dataset]
    subsets = sorted(
        {str(x) for x in df.loc[df["model"].isin(models) & ~df["model"].isin(bicubic), "subset"]}
    )
    parts, offsets = [], []
    whole = _bicubic_rows(df, bicubic, dataset, "all")
    for subset in subsets:
        ref = _bicubic_rows(df, bicubic, dataset, subset)
        if ref.empty:
            parts.append(f"no bicubic row on {dataset}'s {subset} images: no gain")
            continue
        n = int(ref["n"].max())
        parts.append(f"{ref['model'].iloc[0]} on {_images_text(subset, n, dataset)}")
        if subset != "all" and not whole.empty:
            a = dict(zip(ref["scale"], ref["psnr"], strict=True))
            b = dict(zip(whole["scale"], whole["psnr"], strict=True))
            common = sorted(set(a) & set(b))
            if common:
                gap = sum(a[x] - b[x] for x in common) / len(common)
                offsets.append(
                    f"bicubic on {_images_text(subset, n, dataset)} is {gap:+.2f} dB from "
                    f"bicubic on all {int(whole['n'].max())} (mean over {len(common)} scales)"
                )
    text = "gain = ours - bicubic on the same images (" + "; ".join(parts) + ")"
    if offsets:
        text += (
            ". Absolute PSNR on a subset is not the paper's full-set mean: "
            + "; ".join(offsets)
            + ", so a model's ours - paper in PSNR is not shown"
        )
    return text


def _scales_section(exp, profile, t, s, ref, base, full) -> tuple[list[str], list[str]]:
    models = t.get("models") or _sweep_models(exp, profile, t.get("sweep", "main"))
    datasets = [t["dataset"]] if t.get("dataset") else sorted(s["dataset"].unique())
    bicubic = _bicubic_ids(exp, profile)
    md, tex = [], []
    for dataset in datasets:
        sd = s[s["dataset"] == dataset]
        what = (
            f"{exp.title}: {dataset}, ours vs paper like with like. "
            + _like_with_like_text(sd, bicubic, models, dataset)
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
    bicubic = _bicubic_ids(exp, profile)
    ours, paper, used, missing = {}, {}, [], []
    first = s[s["model"].isin(models_map.values())]
    pairs = zip(first["dataset"], first["subset"], strict=True)
    for dataset, subset in sorted({(d, str(x)) for d, x in pairs}):
        rows = _bicubic_rows(full, bicubic, dataset, subset)
        n = int(first.loc[first["dataset"] == dataset, "n"].max())
        if rows.empty:
            missing.append(_images_text(subset, n, dataset))
        used.append(rows)
        for scale, psnr in zip(rows["scale"], rows["psnr"], strict=True):
            ours[dataset, round(float(scale), 6)] = float(psnr)
        label = _paper_bicubic(full, bicubic)
        for scale in sorted(first.loc[first["dataset"] == dataset, "scale"]):
            key = (dataset, round(float(scale), 6))
            paper[key] = _paper_any_table(ref, dataset, label, scale)
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
    evaluated = _sweep_models(exp, profile, t.get("sweep", "main"))
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


def _index_sections(path: Path) -> dict[str, str]:
    """The ``## Figure `name``` sections of an existing report index, by figure name."""
    if not path.is_file():
        return {}
    sections: dict[str, str] = {}
    for chunk in path.read_text(encoding="utf-8").split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0]
        if title.startswith("Figure `"):
            sections[title.split("`")[1]] = "## " + chunk.rstrip("\n") + "\n"
    return sections


def _write_figure(
    exp, profile, f, summary, out_dir, previous, opts, log
) -> tuple[Path | None, str]:
    """One figure; when it cannot be drawn here (no checkpoint, no data) an existing PNG and its
    index section are kept as they are, never replaced by a note."""
    base = f.get("file", f"{exp.name}-{f['kind']}")
    path = out_dir / f"{base}.png"
    try:
        cap = _figure(exp, profile, f, summary, path, *opts)
    except _Skip as exc:
        if path.is_file() and base in previous:
            log(f"bench report: kept {path.name} as it is (cannot redraw it here: {exc})")
            return None, previous[base]
        log(f"bench report: skipped {path.name}: {exc}")
        return None, f"## Figure `{base}`\n\nskipped: {exc}\n"
    return path, f"## Figure `{base}`\n\n![{base}]({path.name})\n\n{cap}\n"


def write_report(
    experiment: str | os.PathLike | dict | Experiment,
    profile: str,
    results_dir: str | os.PathLike = "results",
    checkpoints_dir: str | os.PathLike = "checkpoints",
    data_root: str | None = None,
    device: str | None = "cpu",
    log=None,
    paper_tables: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the experiment's tables and figures; returns the written paths.

    Paper values come from :func:`paper_tables_path` (``paper_tables`` overrides it)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    csv_path = results_path(results_dir, profile, exp.name)
    if not csv_path.exists():
        raise FileNotFoundError(
            f"no results at {csv_path}: run `python -m bench run {exp.name} "
            f"--profile {profile}` first"
        )
    spec = exp.for_profile(profile).get("report") or {}
    ref = _paper_reference(spec, paper_tables_path(data_root, paper_tables))
    out_dir = csv_path.parent
    rows = current_rows(load_results(csv_path), exp, profile)
    summary = summarize(rows)
    index_path = out_dir / f"{exp.name}-report.md"
    index = [
        f"# {exp.title} — profile `{profile}`\n",
        f"Results: `{csv_path}` ({len(summary)} unit means).\n",
    ]
    written: list[Path] = []
    for t in spec.get("tables", []):
        if t["kind"] == "claims":  # per-image rows: paired differences, bootstrap intervals
            from bench.claims import write_claims

            paths, section = write_claims(exp, profile, t, rows, ref, out_dir)
        elif t["kind"] == "scaling":  # budget ladder: gap slopes on log2(steps), forecasts
            from bench.scaling import write_scaling

            paths, section = write_scaling(exp, profile, t, rows, ref, out_dir, checkpoints_dir)
        else:
            paths, section = _write_table(exp, profile, t, summary, ref, out_dir)
        written += paths
        index.append(section)
    previous = _index_sections(index_path)
    # ref: the paper's values (gains figure); rows: per image (the gains band figure)
    opts = (checkpoints_dir, data_root, device, ref, rows, results_dir)
    for f in spec.get("figures", []):
        path, section = _write_figure(exp, profile, f, summary, out_dir, previous, opts, log)
        written += [path] if path is not None else []
        index.append(section)
    write_text_atomic(index_path, "\n".join(index))
    written.append(index_path)
    return written


class _Skip(Exception):
    pass


def _figure(
    exp: Experiment,
    profile: str,
    f: dict,
    summary: pd.DataFrame,
    path: Path,
    checkpoints_dir,
    data_root,
    device,
    paper: pd.DataFrame | None = None,
    rows: pd.DataFrame | None = None,
    results_dir: str | os.PathLike | None = None,
) -> str:
    from bench import figures

    kind = f["kind"]
    if kind in ("gains_vs_scale", "gains_band"):  # the same figure; default references differ
        default = "bicubic-subset" if kind == "gains_vs_scale" else "bicubic"
        return _gains_figure(exp, profile, f, summary, path, paper, rows, default)
    if kind == "claim_differences":
        return _claim_differences_figure(exp, profile, f, summary, rows, path, paper)
    if kind in ("psnr_vs_scale", "pareto"):
        sweep = f.get("sweep", "main")
        s = summary[summary["sweep"] == sweep]
        if f.get("dataset"):
            s = s[s["dataset"] == f["dataset"]]
        models = f.get("models") or _sweep_models(exp, profile, sweep)
        omit = [m for m in f.get("omit") or [] if m in models]
        left_out = s[s["model"].isin(omit)]
        models = [m for m in models if m not in omit]
        s = s[s["model"].isin(models)]
        if s.empty:
            raise _Skip(f"no rows for sweep {sweep!r}")
        if kind == "psnr_vs_scale":
            cap = caption(
                exp,
                profile,
                f"{exp.title}: PSNR vs scale (dots: scales seen in training, crosses: unseen)",
                s,
                models,
            )
            figures.psnr_vs_scale(s, path, f"{exp.title}: PSNR vs scale [{profile}]", cap)
        else:
            reference = next((m for m in models if m in _bicubic_ids(exp, profile)), None)
            cap = caption(
                exp,
                profile,
                f"{exp.title}: PSNR vs NFE per solver setting "
                "(fixed-step counts, dopri5 tolerances); grey dotted: Pareto front"
                + (f"; black dashed line: {reference} on the same images" if reference else ""),
                s,
                models,
            )
            cap += "".join(_omitted_text(left_out, m) for m in omit)
            figures.pareto(s, path, f"PSNR vs NFE [{profile}]", cap, reference=reference)
        return cap
    if kind in ("dynamics", "strip"):
        return _trajectory_figure(
            exp, profile, f, path, checkpoints_dir, data_root, device, results_dir
        )
    raise ValueError(f"unknown figure kind {kind!r}")


def _omitted_text(rows: pd.DataFrame, model: str) -> str:
    """' Left out: MODEL (PSNR a to b dB over NFE n to m).' for a model a figure leaves out."""
    sub = rows[rows["model"] == model]
    if sub.empty:
        return ""
    return (
        f" Left out: {model} (PSNR {sub['psnr'].min():.2f} to {sub['psnr'].max():.2f} dB over "
        f"NFE {sub['nfe'].min():g} to {sub['nfe'].max():g}; its rows are in the results CSV)."
    )


_BAND_TEXT = (
    "band: 95% interval per scale over the images (crossed with the training seeds where there "
    "are several; with one seed the spread between seeds is not in it), the wider of the two-way "
    "random-effects t interval and the crossed bootstrap, as the claims"
)


def _gains_figure(
    exp: Experiment,
    profile: str,
    f: dict,
    summary: pd.DataFrame,
    path: Path,
    ref=None,
    rows: pd.DataFrame | None = None,
    default_reference: str = "bicubic-subset",
) -> str:
    """Small multiples of each model's gain over ``reference`` (bicubic on the same images) per
    scale with its 95% interval over images, crossed with seeds where there are several
    (:func:`bench.claims.gain_bands`), and the paper's gain where ``paper_table`` names one."""
    from bench import figures
    from bench.claims import gain_bands

    sweep, dataset = f.get("sweep", "main"), str(f["dataset"])
    reference = str(f.get("reference", default_reference))
    s = summary[(summary["sweep"] == sweep) & (summary["dataset"] == dataset)]
    _, base_label = _psnr_by_scale(s, reference)
    ref = ref if ref is not None else pd.DataFrame()  # no paper values: no dotted lines
    evaluated = _sweep_models(exp, profile, sweep)
    models = [m for m in f.get("models") or evaluated if m != reference and m in evaluated]
    gains = gain_bands(rows, models, reference, sweep, dataset) if rows is not None else None
    if gains is None or gains.empty:
        raise _Skip(f"no paired rows of {', '.join(models)} and {reference!r} in sweep {sweep!r}")
    table = f.get("paper_table")
    paper_base = {
        s: lookup_paper(ref, table, dataset, base_label or "bicubic", s) for s in gains.scale
    }
    labels = dict(zip(s["model"], s["paper"].fillna(""), strict=True))
    gains["paper_gain"] = [
        lookup_paper(ref, table, dataset, labels.get(m, ""), sc) - paper_base[sc]
        for m, sc in zip(gains["model"], gains["scale"], strict=True)
    ]
    cap = caption(
        exp,
        profile,
        f"{exp.title}: {dataset}, PSNR gain over {reference} on the same images per model; "
        + _BAND_TEXT
        + " (dots: scales seen in training, crosses: unseen"
        + (
            "; dotted: the paper's gain over its bicubic row)"
            if gains["paper_gain"].notna().any()
            else ")"
        ),
        s,
        [reference, *models],
    )
    title = f"{dataset}: PSNR gain over {reference} vs scale, 95% interval [{profile}]"
    figures.gains_vs_scale(gains, path, title, reference, cap)
    return cap


def _claim_differences_figure(
    exp: Experiment,
    profile: str,
    f: dict,
    summary: pd.DataFrame,
    rows: pd.DataFrame,
    path: Path,
    ref=None,
) -> str:
    """Each pair's difference per scale with the claims' interval and the paper's difference
    (:func:`bench.claims.scale_differences`)."""
    from bench import figures
    from bench.claims import scale_differences

    pairs = [list(p) for p in f["pairs"]]
    ref = ref if ref is not None else pd.DataFrame()
    diffs = scale_differences(exp, profile, rows, ref, pairs)
    if diffs.empty:
        raise _Skip(f"no difference claims with rows for {pairs}")
    seen = exp.model_plans(pairs[0][0], profile)[0].seen_scales
    boundary = max(seen) if seen else None
    designs = "; ".join(
        f"{c} on sweep {sw}: {n} seeds x {k} images at x{' x'.join(f'{v:g}' for v in g['scale'])}"
        for (c, sw, n, k), g in diffs.groupby(
            ["comparison", "sweep", "n_seeds", "n_images"], sort=False
        )
    )
    datasets = list(dict.fromkeys(diffs["dataset"]))
    models = [m for p in pairs for m in p]
    used = summary[summary["model"].isin(models) & summary["dataset"].isin(datasets)]
    cap = caption(
        exp,
        profile,
        f"{exp.title}: each ODE model minus its twin (the same network applied once) per scale "
        f"on {', '.join(datasets)}: paired per training seed and image, mean over the "
        "seed x image table, 95% interval as the claims' per-scale rows in claims.md (the wider "
        "of the two-way random-effects t interval and the crossed bootstrap); red stars: the "
        "paper's difference of the two rows of its Table 1 where it reports both. Designs: "
        + designs,
        used,
        models,
    )
    title = "ODE model minus its twin per scale, 95% interval [" + profile + "]"
    figures.differences_vs_scale(diffs, path, title, cap, boundary=boundary)
    return cap


def _trajectory_figure(
    exp: Experiment,
    profile: str,
    f: dict,
    path: Path,
    checkpoints_dir,
    data_root,
    device,
    results_dir: str | os.PathLike | None = None,
) -> str:
    from bench import figures
    from bench.checkpoints import checkpoint_dir, trained_checkpoint
    from odesr.data import DataError, list_images, load_image
    from odesr.models import load_model

    plan = exp.model_plans(f["model"], profile)[0]
    ckpt = trained_checkpoint(plan, checkpoints_dir, profile, results_dir)
    if ckpt is None:  # the weights bench run would evaluate: final.pt, else the published copy
        final = checkpoint_dir(checkpoints_dir, profile, plan) / "final.pt"
        raise _Skip(f"no checkpoint {final} nor published weights (run the experiment first)")
    try:
        files = list_images(f.get("dataset", "Set5"), data_root)
    except DataError as exc:
        raise _Skip(str(exc)) from None
    want = f.get("image")
    file = next((p for p in files if p.stem == want), files[0])
    dev = "cpu" if device in (None, "auto") else device
    model = load_model(ckpt, dev)
    if not model.is_ode:
        raise _Skip(f"{f['model']} is not an ODE model")
    scale = float(f.get("scale", 4.0))
    solver = plan.solver or {}  # the checkpoint's own settings unless the experiment says
    data = figures.trajectory_data(model, load_image(file).rgb.to(dev), scale, solver)
    budget = training_budget(plan.train_cfg)
    where = f"{f.get('dataset', 'Set5')}/{file.stem} at ×{scale:g}"
    if f["kind"] == "dynamics":
        cap = (
            f"Figure 3 analogue: mean |f(I(t), t)| of {f['model']} along its trajectory on the "
            f"sharpest and the flattest {data.sharp[2]}px patch of {where} "
            f"(solver {data.solver}). Profile {profile}. Training: {budget}."
        )
        figures.dynamics(data, path, f"{f['model']}: |f| along the trajectory [{profile}]", cap)
    else:
        cap = (
            f"Figure 1 analogue: the solver's states of {f['model']} at its grid times t_i on "
            f"{where} (crop around the sharpest patch; solver {data.solver}: a fixed-step solver "
            "refined to at least 16 steps to have states to show). A state is the solve's "
            "estimate at t_i, not the path image I(t_i) (the bicubic upscale of HR downscaled "
            "to t_i), which the solve need not follow "
            f"(path-following.md). Profile {profile}. Training: {budget}."
        )
        figures.strip(
            data,
            path,
            f"{f['model']}: solver states from t={scale:g} to 1 [{profile}]",
            frames=int(f.get("frames", 6)),
            caption=cap,
        )
    return cap
