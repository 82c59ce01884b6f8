"""Results rows as frames: loading (a damaged file refused), the rows of the experiment's current
units, per-unit means over images then seeds, and the lookups the tables, captions and figures
share (bicubic on the same images, a model's PSNR per scale, a sweep's models).

Conventions: PSNR/SSIM on Y (the rows' protocol); a unit mean is the mean over images per
training seed, then over seeds; ``n`` is the image count, ``seeds`` the trained seeds (0 for an
untrained model); a row without a finite PSNR/SSIM is left out of the means and counted in
``incomplete``.
"""

from __future__ import annotations

import math
import os

import pandas as pd

from bench.experiment import Experiment
from bench.paper import lookup_paper
from bench.profile import Profile
from bench.results import REQUIRED_COLUMNS, CurrentUnits
from odesr.io import read_csv_rows

__all__ = [
    "NUMERIC",
    "load_results",
    "current_rows",
    "summarize",
    "distinct",
    "fmt",
    "bicubic_ids",
    "same_images",
    "bicubic_rows",
    "paper_any_table",
    "paper_bicubic",
    "psnr_by_scale",
    "sweep_models",
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


def current_rows(df: pd.DataFrame, exp: Experiment, profile: Profile) -> pd.DataFrame:
    """Only the rows made with the weights the experiment names now, on the image subset it names
    now in that sweep (older rows, of a model whose training config changed or of a smaller
    subset, stay in the CSV but are not reported: a mean over a mix of subsets is no subset's
    mean). Rows without a sweep are matched on the rest; rows without a subset (older files) on
    the weights alone."""
    if "weights" not in df:
        return df
    current = CurrentUnits.of(exp.units(profile))
    subsets = df["subset"].fillna("") if "subset" in df else pd.Series("", index=df.index)
    sweeps = df["sweep"].fillna("") if "sweep" in df else pd.Series("", index=df.index)
    mask = [
        current.match(sw, m, w, d, s) if s else (m, w) in current.weights
        for sw, m, w, d, s in zip(
            sweeps, df["model"], df["weights"], df["dataset"], subsets, strict=True
        )
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
            device=("device", distinct),
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
            device=("device", distinct),
        )
        .reset_index()
    )
    return out


def _count_trained(seeds: pd.Series) -> int:
    """Training seeds among ``seeds`` ('' marks an untrained model)."""
    return sum(str(x) not in ("", "nan") for x in seeds)


def distinct(values: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in values if str(v) not in ("", "nan")}))


def fmt(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def bicubic_ids(exp: Experiment, profile: Profile) -> list[str]:
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


def same_images(
    summary: pd.DataFrame, bicubic: list[str], dataset: str, subset: str
) -> dict[float, float]:
    """``{scale: psnr}`` of bicubic on ``dataset``'s ``subset`` (:func:`bicubic_rows`)."""
    sub = bicubic_rows(summary, bicubic, dataset, subset)
    return {float(s): float(v) for s, v in zip(sub["scale"], sub["psnr"], strict=True)}


def bicubic_rows(
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


def paper_any_table(ref: pd.DataFrame, dataset: str, method: str, scale: float) -> float:
    """The paper's value of ``method`` on ``dataset`` at ``scale`` from whichever of its tables
    has one (bicubic is in Table 1 only)."""
    for table in sorted(ref["table"].unique()) if not ref.empty else []:
        value = lookup_paper(ref, table, dataset, method, scale)
        if not math.isnan(value):
            return value
    return math.nan


def paper_bicubic(summary: pd.DataFrame, bicubic: list[str]) -> str:
    """The paper's label of its bicubic row (``bicubic`` unless a bicubic model names one)."""
    labels = summary.loc[summary["model"].isin(bicubic), "paper"]
    return next((str(x) for x in labels if str(x)), "bicubic")


def psnr_by_scale(df: pd.DataFrame, model: str) -> tuple[dict[float, float], str]:
    sub = df[df["model"] == model]
    label = (sub["paper"].iloc[0] or "") if len(sub) else ""
    return {float(s): float(v) for s, v in zip(sub["scale"], sub["psnr"], strict=True)}, label


def sweep_models(exp: Experiment, profile: Profile, sweep: str) -> list[str]:
    for s in exp.sweeps(profile):
        if s.get("name", "main") == sweep:
            return list(s.get("models", []))
    return []
