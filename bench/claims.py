"""The paper's claims judged with a paired 95% interval for seeds x images (report ``claims``).

An experiment lists its claims under ``claims`` (data, not code)::

    claims:
      - claim: "vdsr-ODE > VDSR+t"       # the claim's text (claims.csv column ``claim``)
        a: vdsr-ode                      # model ids of the experiment: delta = a - b
        b: vdsr+t
        scales: "2,3,4,1.55,2.45,3.35,4.5,5,6"   # default: the sweep's scales
        dataset: B100                    # default B100
        sweep: main                      # default main
        kind: difference                 # default; or `extrapolation` (below)
        paper_table: table1              # optional: paper_delta from the paper's tables
        paper_solver: {a: rk4, b: euler} # optional: the paper rows' solver column

The scales pooled (claims.csv ``scales``) are those of the claim that its sweep evaluates and
where both models have rows (the x8 ensemble may be evaluated at fewer).

``difference``: delta = PSNR(a) - PSNR(b) per (seed, image, scale), seed k of a with seed k of b
(a model without training, bicubic, pairs with every seed), pooled over the claim's scales (mean
per seed and image), then :func:`bench.stats.crossed_interval` on the seed x image table (every
seed is scored on the same images: a crossed design). ``extrapolation``
(``base_scale``, default 4): per seed and image, the drop of the gain over bicubic from the base
scale to each claim scale, of b minus that of a, i.e. ``[d(s) - d(base)]`` with d = a - b (the
bicubic terms cancel on the same image): positive means a degrades more gracefully than b.
Interval (``ci_low``, ``ci_high``): the wider of the two-way random-effects t interval
(Satterthwaite degrees of freedom; ``t_low``, ``t_high``, ``t_df``) and the crossed bootstrap
(seeds and one shared image draw resampled; ``boot_low``, ``boot_high``); ``estimator`` names
which.
Verdict: ``holds`` when the interval is above 0, ``fails`` below 0, else ``inconclusive``.
``p_value``: two-sided, from the two-way t statistic. ``verdict_holm``: Holm's step-down over
all rows of the table at family-wise 5%: a row keeps its verdict where Holm rejects its null,
else it reads ``inconclusive`` (Holm never turns an inconclusive row into a verdict; a row
without data counts as p = 1).

``paper_delta``: the same delta from the paper's tables over the claim scales the paper reports
for both methods (which ones: ``claims.md``); empty where it reports none.

Writes ``claims.csv`` (one row per claim, :data:`CLAIM_COLUMNS`) and ``claims.md`` (that table,
then per claim the per-scale paired differences with intervals and per model the mean over seeds).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench import stats
from bench.experiment import CLAIM_KEYS, Experiment, ExperimentError, check_claims
from bench.paper import lookup_paper
from bench.profile import Profile
from bench.tables import md_table
from odesr.evaluate import parse_scales
from odesr.io import write_csv_atomic, write_text_atomic

__all__ = [
    "CLAIM_COLUMNS",
    "CLAIM_KEYS",
    "check_claims",
    "gain_bands",
    "judge",
    "scale_differences",
    "write_claims",
]

CLAIM_COLUMNS = [
    "claim",
    "dataset",
    "comparison",
    "scales",
    "paper_delta",
    "ours_delta",
    "ci_low",
    "ci_high",
    "estimator",
    "p_value",
    "n_images",
    "n_seeds",
    "verdict",
    "verdict_holm",
    "t_low",
    "t_high",
    "t_df",
    "boot_low",
    "boot_high",
]
HOLM_ALPHA = 0.05


def _scales(text: object) -> list[float]:
    return [round(float(s), 6) for s in parse_scales(str(text))]


def _claim_scales(exp: Experiment, profile: Profile, claim: dict) -> list[float]:
    """The claim's scales (default: all) that its sweep evaluates on its dataset."""
    name, dataset = str(claim.get("sweep", "main")), str(claim.get("dataset", "B100"))
    sweep = next((s for s in exp.sweeps(profile) if s["name"] == name), None)
    if sweep is None:
        raise ExperimentError(f"{exp.name}: claim {claim['claim']!r}: no sweep {name!r}")
    available = _scales((sweep.get("datasets") or {}).get(dataset, ""))
    wanted = _scales(claim["scales"]) if claim.get("scales") else available
    return [s for s in wanted if s in available]


def _psnr(rows: pd.DataFrame, model: str, sweep: str, dataset: str) -> dict[tuple, float]:
    """``{(seed, image, scale): psnr}`` of one model ('' seed: untrained)."""
    sub = rows[(rows["model"] == model) & (rows["sweep"] == sweep) & (rows["dataset"] == dataset)]
    return {
        (str(seed), str(image), round(float(scale), 6)): float(psnr)
        for seed, image, scale, psnr in zip(
            sub["seed"], sub["image"], sub["scale"], sub["psnr"], strict=True
        )
    }


def _broadcast(values: dict[tuple, float], seeds: set[str]) -> dict[tuple, float]:
    """A seed-independent model's values repeated for every seed of the other model."""
    if {k[0] for k in values} != {""}:
        return values
    return {(seed, image, scale): v for (_, image, scale), v in values.items() for seed in seeds}


def _paired(rows: pd.DataFrame, claim: dict) -> dict[tuple, float]:
    sweep, dataset = str(claim.get("sweep", "main")), str(claim.get("dataset", "B100"))
    a = _psnr(rows, claim["a"], sweep, dataset)
    b = _psnr(rows, claim["b"], sweep, dataset)
    a = _broadcast(a, {k[0] for k in b})
    b = _broadcast(b, {k[0] for k in a})
    return stats.paired_differences(a, b)


def _claim_values(diffs: dict[tuple, float], claim: dict, scales: list[float]) -> dict:
    """``{(seed, image): delta}`` pooled over ``scales`` (the claim's kind applied)."""
    if claim.get("kind", "difference") == "extrapolation":
        base = round(float(claim.get("base_scale", 4.0)), 6)
        diffs = {
            (seed, image, scale): d - diffs[seed, image, base]
            for (seed, image, scale), d in diffs.items()
            if (seed, image, base) in diffs
        }
    wanted = set(scales)
    pooled = stats.pool_scales({k: d for k, d in diffs.items() if k[2] in wanted})
    complete = {  # only (seed, image) pairs measured at every claim scale
        k for k in pooled if all((k[0], k[1], s) in diffs for s in scales)
    }
    return {k: v for k, v in pooled.items() if k in complete}


def _paper_deltas(
    exp: Experiment, profile: Profile, claim: dict, scales: list[float], ref: pd.DataFrame
) -> list[tuple[float, float]]:
    """``(scale, paper's a - b)`` at the claim scales the paper reports for both methods."""
    table = claim.get("paper_table")
    if not table or claim.get("kind", "difference") != "difference":
        return []
    labels = {k: exp.model_plans(claim[k], profile)[0].paper for k in ("a", "b")}
    solver = claim.get("paper_solver") or {}
    dataset = str(claim.get("dataset", "B100"))
    found = []
    for scale in scales:
        pa = lookup_paper(ref, table, dataset, labels["a"], scale, solver.get("a"))
        pb = lookup_paper(ref, table, dataset, labels["b"], scale, solver.get("b"))
        if not (math.isnan(pa) or math.isnan(pb)):
            found.append((scale, pa - pb))
    return found


def _paper_delta(
    exp: Experiment, profile: Profile, claim: dict, scales: list[float], ref: pd.DataFrame
) -> tuple[float, list[float]]:
    """The paper's delta over the claim scales it reports for both methods, and those scales."""
    found = _paper_deltas(exp, profile, claim, scales, ref)
    if not found:
        return math.nan, []
    return sum(d for _, d in found) / len(found), [s for s, _ in found]


def _per_scale(
    diffs: dict[tuple, float], claim: dict, scales: list[float], n_boot: int
) -> list[tuple[float, stats.CrossedInterval]]:
    """The claim's interval at each of ``scales`` on its own (the claims.md per-scale rows)."""
    return [
        (scale, stats.crossed_interval(_claim_values(diffs, claim, [scale]), n_boot))
        for scale in scales
    ]


def _comparison(claim: dict) -> str:
    if claim.get("kind", "difference") == "extrapolation":
        base = float(claim.get("base_scale", 4.0))
        a, b = claim["a"], claim["b"]
        return f"drop from x{base:g} of ({b} - bicubic) minus that of ({a} - bicubic)"
    return f"{claim['a']} - {claim['b']}"


def _scales_text(scales: list[float]) -> str:
    return " ".join(f"x{s:g}" for s in scales)


def _num(x: float, digits: int = 3) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _p_text(p: float) -> str:
    """A p-value to 3 significant digits (``<1e-6`` below that)."""
    if p is None or math.isnan(p):
        return ""
    return "<1e-6" if p < 1e-6 else f"{p:.3g}"


def _interval_fields(ci: stats.CrossedInterval) -> dict:
    """The claims.csv fields of one interval (:data:`CLAIM_COLUMNS`), Holm's verdict aside."""
    iv = ci.chosen
    return dict(
        ours_delta=_num(iv.estimate),
        ci_low=_num(iv.low),
        ci_high=_num(iv.high),
        estimator=iv.estimator,
        p_value=_p_text(iv.p_value),
        n_images=iv.n_images,
        n_seeds=iv.n_seeds,
        verdict=iv.verdict,
        t_low=_num(ci.t.low),
        t_high=_num(ci.t.high),
        t_df=_num(ci.t.df, 1),
        boot_low=_num(ci.boot.low),
        boot_high=_num(ci.boot.high),
    )


def _holm_verdicts(rows: list[dict], p_values: list[float]) -> None:
    """``verdict_holm`` of every row: its verdict where Holm's step-down over all rows rejects
    its null at :data:`HOLM_ALPHA`, else ``inconclusive`` (``no data`` stays)."""
    rejected = stats.holm(p_values, HOLM_ALPHA)
    for row, reject in zip(rows, rejected, strict=True):
        if row["verdict"] == "no data":
            row["verdict_holm"] = "no data"
        else:
            row["verdict_holm"] = row["verdict"] if reject else "inconclusive"


def judge(
    exp: Experiment,
    profile: Profile,
    rows: pd.DataFrame,
    ref: pd.DataFrame,
    n_boot: int = stats.DEFAULT_B,
) -> list[dict]:
    """One result per claim: the claims.csv row plus ``per_scale`` intervals
    (:class:`bench.stats.CrossedInterval`), ``dropped`` cells and notes."""
    out = []
    p_values = []
    for claim in exp.for_profile(profile.name).get("claims") or []:
        diffs = _paired(rows, claim)
        # the scales with paired rows (a model evaluated at fewer, e.g. the x8 ensemble: those)
        scales = [s for s in _claim_scales(exp, profile, claim) if _claim_values(diffs, claim, [s])]
        values = _claim_values(diffs, claim, scales)
        paper, paper_scales = _paper_delta(exp, profile, claim, scales, ref)
        row = dict(
            claim=str(claim["claim"]),
            dataset=str(claim.get("dataset", "B100")),
            comparison=_comparison(claim),
            scales=_scales_text(scales),
            paper_delta=_num(paper, 2),
        )
        per_scale, dropped = [], 0
        if values:
            ci = stats.crossed_interval(values, n_boot)
            row.update(_interval_fields(ci))
            p_values.append(ci.chosen.p_value)
            dropped = ci.dropped
            per_scale = _per_scale(diffs, claim, scales, n_boot)
        else:
            row.update({c: "" for c in CLAIM_COLUMNS if c not in row})
            row.update(n_images=0, n_seeds=0, verdict="no data")
            p_values.append(math.nan)
        out.append(
            dict(
                row=row, claim=claim, per_scale=per_scale, paper_scales=paper_scales,
                dropped=dropped,
            )
        )  # fmt: skip
    _holm_verdicts([r["row"] for r in out], p_values)
    for res in out:
        res["row"] = {c: res["row"][c] for c in CLAIM_COLUMNS}
    return out


def gain_bands(
    rows: pd.DataFrame,
    models: list[str],
    reference: str,
    sweep: str,
    dataset: str,
    n_boot: int = stats.DEFAULT_B,
) -> pd.DataFrame:
    """Per model and scale: the gain over ``reference`` (paired per seed and image; grand mean
    of the seed x image table) with its 95% interval (:func:`bench.stats.crossed_interval`, the
    wider of the two-way t and the crossed bootstrap). Columns model, scale, gain, low, high,
    seen, paper_gain (NaN: no paper line)."""
    out = []
    for model in models:
        claim = {"a": model, "b": reference, "sweep": sweep, "dataset": dataset}
        diffs = _paired(rows, claim)
        sub = rows[(rows["model"] == model) & (rows["sweep"] == sweep)]
        seen = dict(zip(sub["scale"].round(6), sub["seen"], strict=True))
        for scale in sorted({k[2] for k in diffs}):
            iv = stats.crossed_interval(_claim_values(diffs, claim, [scale]), n_boot).chosen
            out.append(
                dict(
                    model=model,
                    scale=scale,
                    gain=iv.estimate,
                    low=iv.low,
                    high=iv.high,
                    seen=bool(seen.get(scale, False)),
                    paper_gain=math.nan,
                )
            )
    return pd.DataFrame(out)


def scale_differences(
    exp: Experiment,
    profile: Profile,
    rows: pd.DataFrame,
    ref: pd.DataFrame,
    pairs: list[list[str]],
    n_boot: int = stats.DEFAULT_B,
) -> pd.DataFrame:
    """Per pair ``(a, b)`` and scale: the claims' paired difference a - b with its 95% interval,
    computed as the claims.md per-scale rows are, for every ``difference`` claim comparing a with
    b (each on its own sweep: e.g. 5 seeds inside the training range, 3 beyond it); ``paper``:
    the paper's a - b at that scale where its table reports both. Columns comparison ('a - b,
    dataset'), dataset, scale, estimate, low, high, n_seeds, n_images, sweep, paper."""
    out = []
    for a, b in pairs:
        for claim in exp.for_profile(profile.name).get("claims") or []:
            if (claim["a"], claim["b"]) != (a, b) or claim.get(
                "kind", "difference"
            ) != "difference":
                continue
            dataset = str(claim.get("dataset", "B100"))
            diffs = _paired(rows, claim)
            scales = [
                s for s in _claim_scales(exp, profile, claim) if _claim_values(diffs, claim, [s])
            ]
            paper = dict(_paper_deltas(exp, profile, claim, scales, ref))
            for scale, ci in _per_scale(diffs, claim, scales, n_boot):
                iv = ci.chosen
                out.append(
                    dict(
                        comparison=f"{_comparison(claim)}, {dataset}",
                        dataset=dataset,
                        scale=scale,
                        estimate=iv.estimate,
                        low=iv.low,
                        high=iv.high,
                        n_seeds=iv.n_seeds,
                        n_images=iv.n_images,
                        sweep=str(claim.get("sweep", "main")),
                        paper=paper.get(scale, math.nan),
                    )
                )
    return pd.DataFrame(out)


def _seed_means(rows: pd.DataFrame, models: list[str], sweep: str, dataset: str) -> str:
    """Per model and scale: the mean over seeds of the per-seed mean over images, the seeds'
    spread (standard deviation of the per-seed means) and the seed count."""
    sub = rows[rows["model"].isin(models) & (rows["sweep"] == sweep) & (rows["dataset"] == dataset)]
    if sub.empty:
        return "no rows\n"
    per_seed = sub.groupby(["model", "scale", "seed"], sort=False)["psnr"].mean().reset_index()
    scales = sorted(per_seed["scale"].unique())
    table = []
    for model in models:
        m = per_seed[per_seed["model"] == model]
        if m.empty:
            continue
        cells = []
        for scale in scales:
            v = m[m["scale"] == scale]["psnr"]
            if v.empty:
                cells.append("–")
            elif len(v) > 1:
                cells.append(f"{v.mean():.2f} ± {v.std(ddof=1):.2f}")
            else:
                cells.append(f"{v.mean():.2f}")
        table.append([model, str(m["seed"].nunique())] + cells)
    return md_table(["model", "seeds"] + [f"×{s:g}" for s in scales], table)


def _devices(rows: pd.DataFrame) -> str:
    """Where the rows were evaluated: each device with its row count, and for any device but the
    most common one, which models and seeds it evaluated."""
    if "device" not in rows or rows.empty:
        return ""
    counts = rows["device"].value_counts()
    parts = []
    for device, n in counts.items():
        text = f"{device} ({n} rows"
        if device != counts.index[0]:
            sub = rows[rows["device"] == device]
            who = sub.groupby("model", sort=True)["seed"].apply(
                lambda s: ", ".join(sorted({str(x) for x in s}))
            )
            text += ": " + "; ".join(f"{m} seed {seeds}" for m, seeds in who.items())
        parts.append(text + ")")
    return "Rows evaluated on " + ", ".join(parts) + ".\n"


def _segments_text(segments: list[dict]) -> str:
    """``trained_on`` segments (odesr.train) as one phrase; the step a segment starts at is named
    only when a run moved between machines."""
    parts = []
    for seg in segments:
        text = f"{seg.get('device', '?')} (torch {seg.get('torch', '?')}"
        text += ", TF32)" if seg.get("tf32") else ")"
        if len(segments) > 1:
            text += f" from step {seg.get('from_step', 0)}"
        parts.append(text)
    return " then ".join(parts)


def _trained_on(rows: pd.DataFrame, weights_dir: Path) -> str:
    """Where the weights behind the rows were trained, read from the published weights
    (``bench.publish``; their ``trained_on``): each machine with the models and seeds it trained.
    Weights published before checkpoints recorded it, or not published, are named as such."""
    from odesr.train_state import read_checkpoint

    if "weights" not in rows or rows.empty:
        return ""
    seeds = rows["seed"].astype(str).str.strip()
    trained = rows[~seeds.isin(["", "nan", "None"]) & (rows["weights"].astype(str).str[:1] != "{")]
    where_of: dict[str, str] = {}  # weights key -> text (a key serves several models and sweeps)
    groups: dict[str, dict[str, set]] = {}
    for (model, seed, key), _ in trained.groupby(["model", "seed", "weights"], sort=True):
        if key not in where_of:
            path = weights_dir / f"{key}.pt"
            if not path.exists():
                where_of[key] = "not published (no record here)"
            else:
                segments = read_checkpoint(path)[1].get("trained_on")
                where_of[key] = (
                    _segments_text(segments) if segments else "not recorded (trained before it was)"
                )
        groups.setdefault(where_of[key], {}).setdefault(str(model), set()).add(str(seed))
    if not groups:
        return ""
    parts = []
    for where, models in sorted(groups.items(), key=lambda kv: -sum(map(len, kv[1].values()))):
        who = "; ".join(
            f"{m} seed{'s' if len(seeds) > 1 else ''} {', '.join(sorted(seeds))}"
            for m, seeds in sorted(models.items())
        )
        parts.append(f"{where}: {who}")
    return "Where the weights were trained (their `trained_on`): " + ". ".join(parts) + ".\n"


def _claim_section(res: dict, rows: pd.DataFrame) -> list[str]:
    """claims.md's section of one judged claim: its verdicts, what was left out, the per-scale
    intervals and the per-model PSNR with its seed spread."""
    out: list[str] = []
    claim, row = res["claim"], res["row"]
    sweep, dataset = str(claim.get("sweep", "main")), str(claim.get("dataset", "B100"))
    out.append(f"## {row['claim']}\n")
    out.append(
        f"{row['comparison']} on {dataset} (sweep {sweep}); verdict **{row['verdict']}**, "
        f"after Holm **{row['verdict_holm']}**"
        + (f". {claim['note']}" if claim.get("note") else "")
        + "\n"
    )
    if res["dropped"]:
        out.append(
            f"{res['dropped']} (seed, image) values outside the complete seed x image block "
            "were left out.\n"
        )
    if res["paper_scales"]:
        out.append(f"paper_delta over {_scales_text(res['paper_scales'])}.\n")
    if res["per_scale"]:
        out.append(
            md_table(
                ["scale", "delta", "ci_low", "ci_high", "estimator", "t", "bootstrap"]
                + ["images", "seeds", "verdict"],
                [
                    [
                        f"×{s:g}",
                        _num(ci.chosen.estimate),
                        _num(ci.chosen.low),
                        _num(ci.chosen.high),
                        ci.chosen.estimator,
                        f"[{_num(ci.t.low)}, {_num(ci.t.high)}]",
                        f"[{_num(ci.boot.low)}, {_num(ci.boot.high)}]",
                        str(ci.chosen.n_images),
                        str(ci.chosen.n_seeds),
                        ci.chosen.verdict,
                    ]
                    for s, ci in res["per_scale"]
                ],
            )
        )
    out.append(
        "PSNR per model: mean over seeds of the per-seed mean over images, ± the standard "
        "deviation of those per-seed means (the seed spread):\n"
    )
    out.append(_seed_means(rows, [claim["a"], claim["b"]], sweep, dataset))
    return out


def write_claims(
    exp: Experiment,
    profile: Profile,
    t: dict,
    rows: pd.DataFrame,
    ref: pd.DataFrame,
    out_dir: Path,
    n_boot: int | None = None,
) -> tuple[list[Path], str]:
    """``<file>.csv`` and ``<file>.md`` (default ``claims``); returns the paths and the report
    index section."""
    base = t.get("file", "claims")
    n_boot = int(n_boot or t.get("n_boot", stats.DEFAULT_B))
    csv_path, md_path = out_dir / f"{base}.csv", out_dir / f"{base}.md"
    if csv_path.name == f"{exp.name}.csv":
        raise ExperimentError(
            f"{exp.name}: report file {base!r} would overwrite the experiment's results "
            f"{csv_path}: name the experiment or the file otherwise"
        )
    results = judge(exp, profile, rows, ref, n_boot)
    table = [r["row"] for r in results]
    write_csv_atomic(csv_path, table, CLAIM_COLUMNS)
    md = [
        f"# Claims of the paper — profile `{profile.name}`\n",
        "Each row: the paired PSNR difference (dB, Y channel) of the comparison, pooled over the "
        "claim's scales (mean per seed and image), then the grand mean of the seed x image table "
        "(every seed is scored on the same images: seeds and images are crossed). Interval: 95%, "
        "the wider of (a) the two-way random-effects t interval (d = mu + seed + image + "
        "residual; Var(mean) = (MS_seed + MS_image - MS_resid) / (seeds x images), Satterthwaite "
        "degrees of freedom t_df; MS_resid / (seeds x images) where that combination is not "
        "positive) and (b) the crossed bootstrap (seeds resampled, one image draw shared by every "
        f"seed; {n_boot} replicates, fixed generator seed); `estimator` names which, t_low/t_high "
        "and boot_low/boot_high give both. Verdict: holds if ci_low > 0, fails if ci_high < 0, "
        "else inconclusive. p_value: two-sided, from the two-way t statistic; verdict_holm: "
        f"Holm's step-down over all {len(table)} rows at family-wise {HOLM_ALPHA:.0%} (a row "
        "keeps its verdict where Holm rejects, else inconclusive). paper_delta: the paper's "
        "tables over the claim scales they report (listed per claim below), empty where they "
        "report none. A row with n_seeds 1 has an interval over images only: the spread between "
        "training seeds (each claim's table of per-model seed spreads below) is not in it.\n",
        md_table(CLAIM_COLUMNS, [[str(r[c]) for c in CLAIM_COLUMNS] for r in table]),
        _devices(rows),
        _trained_on(rows, out_dir / "weights"),
    ]
    for res in results:
        md += _claim_section(res, rows)
    write_text_atomic(md_path, "\n".join(md))
    section = f"## Claims `{base}`\n\n" + md[1] + "\n" + md[2]
    return [csv_path, md_path], section
