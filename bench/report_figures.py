"""The report's figures (``report.figures`` of an experiment): each kind drawn from the unit
means or the per-image rows, with its caption; :func:`write_figure` keeps an existing PNG and its
index section when a figure cannot be drawn here (no checkpoint, no data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.captions import caption, training_budget
from bench.experiment import Experiment
from bench.paper import lookup_paper
from bench.profile import Profile
from bench.summary import bicubic_ids, psnr_by_scale, sweep_models

__all__ = ["FigureSkipped", "index_sections", "write_figure"]


def index_sections(path: Path) -> dict[str, str]:
    """The ``## Figure `name``` sections of an existing report index, by figure name."""
    if not path.is_file():
        return {}
    sections: dict[str, str] = {}
    for chunk in path.read_text(encoding="utf-8").split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0]
        if title.startswith("Figure `"):
            sections[title.split("`")[1]] = "## " + chunk.rstrip("\n") + "\n"
    return sections


def write_figure(exp, profile, f, summary, out_dir, previous, opts, log) -> tuple[Path | None, str]:
    """One figure; when it cannot be drawn here (no checkpoint, no data) an existing PNG and its
    index section are kept as they are, never replaced by a note."""
    base = f.get("file", f"{exp.name}-{f['kind']}")
    path = out_dir / f"{base}.png"
    try:
        cap = _figure(exp, profile, f, summary, path, *opts)
    except FigureSkipped as exc:
        if path.is_file() and base in previous:
            log(f"bench report: kept {path.name} as it is (cannot redraw it here: {exc})")
            return None, previous[base]
        log(f"bench report: skipped {path.name}: {exc}")
        return None, f"## Figure `{base}`\n\nskipped: {exc}\n"
    return path, f"## Figure `{base}`\n\n![{base}]({path.name})\n\n{cap}\n"


class FigureSkipped(Exception):
    """A figure that cannot be drawn here (no rows, no checkpoint, no data)."""


def _figure(
    exp: Experiment,
    profile: Profile,
    f: dict,
    summary: pd.DataFrame,
    path: Path,
    data_root,
    device,
    paper: pd.DataFrame | None = None,
    rows: pd.DataFrame | None = None,
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
        models = f.get("models") or sweep_models(exp, profile, sweep)
        omit = [m for m in f.get("omit") or [] if m in models]
        left_out = s[s["model"].isin(omit)]
        models = [m for m in models if m not in omit]
        s = s[s["model"].isin(models)]
        if s.empty:
            raise FigureSkipped(f"no rows for sweep {sweep!r}")
        if kind == "psnr_vs_scale":
            cap = caption(
                exp,
                profile,
                f"{exp.title}: PSNR vs scale (dots: scales seen in training, crosses: unseen)",
                s,
                models,
            )
            figures.psnr_vs_scale(s, path, f"{exp.title}: PSNR vs scale [{profile.name}]", cap)
        else:
            reference = next((m for m in models if m in bicubic_ids(exp, profile)), None)
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
            figures.pareto(s, path, f"PSNR vs NFE [{profile.name}]", cap, reference=reference)
        return cap
    if kind in ("dynamics", "strip"):
        return _trajectory_figure(exp, profile, f, path, data_root, device)
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
    profile: Profile,
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
    _, base_label = psnr_by_scale(s, reference)
    ref = ref if ref is not None else pd.DataFrame()  # no paper values: no dotted lines
    evaluated = sweep_models(exp, profile, sweep)
    models = [m for m in f.get("models") or evaluated if m != reference and m in evaluated]
    gains = gain_bands(rows, models, reference, sweep, dataset) if rows is not None else None
    if gains is None or gains.empty:
        raise FigureSkipped(
            f"no paired rows of {', '.join(models)} and {reference!r} in sweep {sweep!r}"
        )
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
    title = f"{dataset}: PSNR gain over {reference} vs scale, 95% interval [{profile.name}]"
    figures.gains_vs_scale(gains, path, title, reference, cap)
    return cap


def _claim_differences_figure(
    exp: Experiment,
    profile: Profile,
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
        raise FigureSkipped(f"no difference claims with rows for {pairs}")
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
    title = "ODE model minus its twin per scale, 95% interval [" + profile.name + "]"
    figures.differences_vs_scale(diffs, path, title, cap, boundary=boundary)
    return cap


def _trajectory_figure(
    exp: Experiment,
    profile: Profile,
    f: dict,
    path: Path,
    data_root,
    device,
) -> str:
    from bench import trajectory_figures
    from bench.checkpoints import trained_checkpoint
    from odesr.checkpoints import load_model
    from odesr.data import DataError, list_images, load_image

    plan = exp.model_plans(f["model"], profile)[0]
    ckpt = trained_checkpoint(plan, profile, published=True)
    if ckpt is None:  # the weights bench run would evaluate: final.pt, else the published copy
        final = profile.checkpoint_dir(plan.key) / "final.pt"
        raise FigureSkipped(
            f"no checkpoint {final} nor published weights (run the experiment first)"
        )
    try:
        files = list_images(f.get("dataset", "Set5"), data_root)
    except DataError as exc:
        raise FigureSkipped(str(exc)) from None
    want = f.get("image")
    file = next((p for p in files if p.stem == want), files[0])
    dev = "cpu" if device in (None, "auto") else device
    model = load_model(ckpt, dev)
    if not model.is_ode:
        raise FigureSkipped(f"{f['model']} is not an ODE model")
    scale = float(f.get("scale", 4.0))
    solver = plan.solver or {}  # the checkpoint's own settings unless the experiment says
    data = trajectory_figures.trajectory_data(model, load_image(file).rgb.to(dev), scale, solver)
    budget = training_budget(plan.train_cfg)
    where = f"{f.get('dataset', 'Set5')}/{file.stem} at ×{scale:g}"
    if f["kind"] == "dynamics":
        cap = (
            f"Figure 3 analogue: mean |f(I(t), t)| of {f['model']} along its trajectory on the "
            f"sharpest and the flattest {data.sharp[2]}px patch of {where} "
            f"(solver {data.solver}). Profile {profile.name}. Training: {budget}."
        )
        trajectory_figures.dynamics(
            data, path, f"{f['model']}: |f| along the trajectory [{profile.name}]", cap
        )
    else:
        cap = (
            f"Figure 1 analogue: the solver's states of {f['model']} at its grid times t_i on "
            f"{where} (crop around the sharpest patch; solver {data.solver}: a fixed-step solver "
            "refined to at least 16 steps to have states to show). A state is the solve's "
            "estimate at t_i, not the path image I(t_i) (the bicubic upscale of HR downscaled "
            "to t_i), which the solve need not follow "
            f"(path-following.md). Profile {profile.name}. Training: {budget}."
        )
        trajectory_figures.strip(
            data,
            path,
            f"{f['model']}: solver states from t={scale:g} to 1 [{profile.name}]",
            frames=int(f.get("frames", 6)),
            caption=cap,
        )
    return cap
