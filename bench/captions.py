"""Captions of the report's tables and figures: the profile, the data and image subset of every
model, the seeds the means run over, the training budget of every checkpoint, the devices, and
what is missing (models not evaluated yet, rows without a finite PSNR)."""

from __future__ import annotations

import pandas as pd

from bench.experiment import Experiment, solver_label
from bench.profile import Profile
from bench.summary import bicubic_rows, distinct
from odesr.models import is_ode

__all__ = ["caption", "images_text", "like_with_like_text", "training_budget"]


def _subset_text(summary: pd.DataFrame, models: list[str]) -> str:
    parts = []
    for dataset, df in summary.groupby("dataset", sort=True):
        groups: dict[str, list[str]] = {}
        for model in dict.fromkeys(models):  # each model once, in order
            sub = df[df["model"] == model]
            for subset, rows in sub.groupby(sub["subset"].fillna(""), sort=False):
                # a model evaluated on several subsets (sweeps) is named under each
                n = int(rows["n"].max())
                subset = subset or "?"
                what = f"all {n} images" if subset == "all" else f"{subset} images ({n})"
                groups.setdefault(what, []).append(model)
        if groups:
            if len(groups) == 1:
                parts.append(f"{dataset}, {next(iter(groups))}")
            else:
                per = "; ".join(f"{', '.join(m)}: {w}" for w, m in groups.items())
                parts.append(f"{dataset} ({per})")
    return "; ".join(parts)


def _budget_text(exp: Experiment, profile: Profile, models: list[str]) -> str:
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
    profile: Profile,
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
        f"{what}. Profile {profile.name}. Data: {_subset_text(summary, models)}. "
        f"PSNR on Y, mean over {over}. Training: {_budget_text(exp, profile, models)}."
    )
    used = summary[summary["model"].isin(models)]
    devices = distinct(pd.Series([d for cell in used["device"] for d in cell.split(", ")]))
    if devices:
        text += f" Evaluated on {devices}."
    absent = [m for m in models if m not in set(summary["model"])]
    if absent:
        text += (
            f" NOT EVALUATED YET: {', '.join(absent)} (no rows; python -m bench run "
            f"{exp.name} --profile {profile.name} makes them)."
        )
    missing = int(used["incomplete"].sum()) if "incomplete" in used else 0
    if missing:
        text += (
            f" INCOMPLETE: {missing} image rows lack a finite PSNR/SSIM and are left out of "
            "the means (python -m bench run re-evaluates them)."
        )
    return text + (f" {extra}" if extra else "")


def images_text(subset: str, n: int, dataset: str) -> str:
    """``B100's first 20 images`` / ``all 100 B100 images``."""
    return f"all {n} {dataset} images" if subset == "all" else f"{dataset}'s {subset} images"


def like_with_like_text(
    summary: pd.DataFrame, bicubic: list[str], models: list[str], dataset: str
) -> str:
    """Which bicubic rows the gains use, on which images, and how far a subset's bicubic mean is
    from the whole set's (why absolute PSNR of a subset is not compared with the paper's)."""
    df = summary[summary["dataset"] == dataset]
    subsets = sorted(
        {str(x) for x in df.loc[df["model"].isin(models) & ~df["model"].isin(bicubic), "subset"]}
    )
    parts, offsets = [], []
    whole = bicubic_rows(df, bicubic, dataset, "all")
    for subset in subsets:
        ref = bicubic_rows(df, bicubic, dataset, subset)
        if ref.empty:
            parts.append(f"no bicubic row on {dataset}'s {subset} images: no gain")
            continue
        n = int(ref["n"].max())
        parts.append(f"{ref['model'].iloc[0]} on {images_text(subset, n, dataset)}")
        if subset != "all" and not whole.empty:
            a = dict(zip(ref["scale"], ref["psnr"], strict=True))
            b = dict(zip(whole["scale"], whole["psnr"], strict=True))
            common = sorted(set(a) & set(b))
            if common:
                gap = sum(a[x] - b[x] for x in common) / len(common)
                offsets.append(
                    f"bicubic on {images_text(subset, n, dataset)} is {gap:+.2f} dB from "
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


def training_budget(cfg: dict | None) -> str:
    """One line naming a training config's budget (for captions)."""
    if cfg is None:
        return "no training"
    solver = ""
    if is_ode(str(cfg["model"]["name"])):
        ts = cfg.get("train_solver") or {}
        solver = f", {cfg.get('objective', 'endpoint')} objective"
        if cfg.get("objective", "endpoint") == "endpoint":
            solver += f" ({solver_label(ts)})"
    scales = cfg.get("scales") or []
    srange = f"{min(scales):g}-{max(scales):g}" if scales else "?"
    if scales and min(scales) == max(scales):
        srange = f"{scales[0]:g}"
    weight = cfg.get("scale_weight") or "none"
    weighting = f", loss weighted by scale ({weight})" if weight != "none" else ""
    return (
        f"{int(cfg['max_steps'])} steps x batch {int(cfg['batch_size'])} of "
        f"{int(cfg['patch_size'])}px patches on {'+'.join(map(str, cfg['data']))}, "
        f"scales {srange}, preset {cfg['model'].get('preset', '?')}{solver}{weighting}"
    )
