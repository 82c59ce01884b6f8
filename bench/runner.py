"""``python -m bench run EXPERIMENT --profile P``: train what is missing, evaluate, append rows.

Resumable per unit (sweep, model, solver setting, dataset, scale, subset): units whose rows are
already in ``results/<profile>/<experiment>.csv`` are skipped; a unit's rows are written in one
locked atomic rewrite (:class:`bench.results.ResultsFile`), so a killed run leaves only whole
units behind and a rerun neither duplicates nor misses rows.

Shared rows: an image whose evaluation (weights, solver, dataset, scale, protocol, ensemble) is
already in any results CSV of the profile (:class:`bench.results.SharedRows`; e.g. table1's
vdsr-ode at x2 for the claims experiment) is copied, not evaluated again; a unit whose images
are all found loads (and trains) nothing.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.checkpoints import ensure_checkpoint, trained_checkpoint
from bench.experiment import (
    Experiment,
    ModelPlan,
    Unit,
    dataset_label,
    load_experiment,
    solver_label,
)
from bench.profile import Profile
from bench.results import CurrentUnits, ResultsFile, SharedRows
from odesr.checkpoints import BUNDLED_MODEL, load_model
from odesr.evaluate import device_label
from odesr.models import build, is_ode
from odesr.ode import SolverSettings

__all__ = [
    "RunSummary",
    "run_experiment",
    "resolve_device",
    "git_rev",
    "share_probe",
]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunSummary:
    planned: int
    skipped: int  # already in the results file
    done: int
    results: Path
    waiting: int = 0  # not run: their weights are not trained yet (train=False)


def resolve_device(name: str | None) -> str:
    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
    ).stdout.strip()


@functools.lru_cache(maxsize=1)
def git_rev() -> str:
    try:
        rev = _git("rev-parse", "--short=10", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("-dirty" if dirty else "")


def _backbone(plan: ModelPlan) -> str:
    """The registered backbone of a plan's model (:func:`odesr.models.backbone_of`), or none."""
    from odesr.models import backbone_of

    return backbone_of((plan.train_cfg or {}).get("model") or plan.model_spec) or "none"


def _objective(plan: ModelPlan) -> str:
    if plan.train_cfg is None:
        return "none"
    if is_ode(str(plan.train_cfg["model"]["name"])):
        return str(plan.train_cfg.get("objective", "endpoint"))
    return "direct"


def _train_solver(plan: ModelPlan) -> str:
    cfg = plan.train_cfg
    if cfg is None or not is_ode(str(cfg["model"]["name"])):
        return ""
    if cfg.get("objective") == "path":
        return "none (path)"
    return solver_label(cfg.get("train_solver") or {})


def fixed_checkpoint(spec: dict | None) -> Path | None:
    """A model entry ``model: {name: ..., checkpoint: PATH | bundled}`` names trained weights
    directly (``bundled``: the small cpu vdsr-ODE shipped in ``odesr/weights``)."""
    value = (spec or {}).get("checkpoint")
    if not value:
        return None
    return BUNDLED_MODEL if value == "bundled" else Path(value)


def _load_model(plan: ModelPlan, checkpoint: Path | None, device: str) -> torch.nn.Module:
    checkpoint = checkpoint or fixed_checkpoint(plan.model_spec)
    if checkpoint:
        model = load_model(Path(checkpoint), device)
    else:
        model = build(plan.model_spec).to(device).eval()
    if plan.ensemble:
        if plan.ensemble != "x8":
            raise ValueError(f"model {plan.id}: unknown ensemble {plan.ensemble!r} (use x8)")
        from odesr.ensemble import SelfEnsemble

        model = SelfEnsemble(model).eval()
    return model


class _ImageCache:
    def __init__(self, data_root: str | None) -> None:
        self.data_root = data_root
        self._cache: dict[tuple, list] = {}

    def get(self, dataset: str, limit: int | None) -> list:
        key = (dataset, limit)
        if key not in self._cache:
            from odesr.data import list_images, load_image

            files = list_images(dataset, self.data_root)
            if limit is not None:
                files = files[: int(limit)]
            self._cache[key] = [load_image(f) for f in files]
        return self._cache[key]


def _rel(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _unit_rows(
    exp: Experiment,
    unit: Unit,
    rows: list[dict],
    common: dict,
    extra: dict,
    solver: SolverSettings | None,
) -> list:
    """The CSV rows of one evaluated unit: what identifies it + one row per image.
    ``solver``: the settings the model actually solved with (None for non-ODE models)."""
    plan = unit.model
    meta = dict(
        common,
        model=plan.id,
        backbone=_backbone(plan),
        objective=_objective(plan),
        train_solver=_train_solver(plan),
        solver=solver.method if solver else "",
        steps=solver.num_steps(unit.scale) if solver else "",
        dataset=dataset_label(unit.dataset),
        seen=exp.seen(plan, unit.scale),
        weights=plan.key,
        seed=plan.train_cfg["seed"] if plan.train_cfg is not None else "",
        sweep=unit.sweep,
        solver_opts=solver_label(unit.solver),
        subset=unit.subset,
        paper=plan.paper or "",
        ensemble=plan.ensemble or "",
        train_steps=plan.train_cfg["max_steps"] if plan.train_cfg is not None else "",
        **extra,
    )
    if meta["steps"] is None:
        meta["steps"] = ""  # adaptive solvers have no fixed step count
    keep = ("image", "psnr", "ssim", "seconds", "nfe", "protocol", "y_rounding")
    return [dict(meta, scale=float(unit.scale), **{k: r[k] for k in keep}) for r in rows]


class _LoadedModel:
    """The model of the last unit, reloaded only when the weights (or the ensemble) change."""

    def __init__(self, profile: Profile, data_root, device, progress, log) -> None:
        self.args = (profile, data_root, device, progress, log)
        self.key: tuple | None = None
        self.model: torch.nn.Module | None = None
        self.checkpoint: Path | None = None
        self.params = 0

    def get(self, plan: ModelPlan) -> torch.nn.Module:
        from odesr.nets import count_params

        if (plan.key, plan.ensemble) != self.key:
            profile, data_root, device, progress, log = self.args
            self.checkpoint = ensure_checkpoint(
                plan, profile, data_root, device, progress, log, published=True
            )
            self.model = _load_model(plan, self.checkpoint, device)
            self.params = count_params(self.model)
            self.key = (plan.key, plan.ensemble)
        return self.model

    def columns(self) -> dict:
        return dict(params=self.params, checkpoint=_rel(self.checkpoint))


def _evaluate_unit(
    unit: Unit,
    loaded: _LoadedModel,
    images: list,
    device: str,
    batch_size: int | None,
    compile: bool = False,
) -> tuple[list[dict], SolverSettings | None]:
    """Per-image rows of one unit on ``images`` (its model loaded or trained first) and the
    solver settings the model used (None for non-ODE models)."""
    from odesr.evaluate import EvalSettings, evaluate_images

    model = loaded.get(unit.model)
    settings = EvalSettings(
        device=device, batch_size=batch_size, solver=unit.solver or None, compile=compile
    )
    solver = model.solver_settings(unit.solver) if model.is_ode else None
    rows = evaluate_images(model, images, [unit.scale], settings)
    return [dict(r, y_rounding=settings.y_rounding) for r in rows], solver


def _ensembles(name: str, profile: Profile) -> dict[str, str] | None:
    """``{model id: ensemble}`` of experiment ``name`` (None: no such experiment), for rows
    written before results carried the ensemble."""
    from bench.experiment import ExperimentError, experiment_path

    try:
        models = load_experiment(experiment_path(name)).for_profile(profile.name)["models"]
    except ExperimentError:
        return None
    return {m: str((e or {}).get("ensemble") or "") for m, e in models.items()}


# what a copied row keeps from the run that evaluated it (the rest describes the asking unit)
_EVALUATED_BY = ("solver", "steps", "params", "checkpoint", "code_rev", "torch", "device")


def share_probe(unit: Unit) -> dict:
    """What :class:`SharedRows` is asked for the images of ``unit`` (add ``image``): its
    weights, solver, dataset, scale and ensemble, with the default protocol and luma rounding."""
    from odesr.evaluate import EvalSettings

    defaults = EvalSettings()
    return dict(
        weights=unit.model.key,
        solver_opts=solver_label(unit.solver),
        dataset=dataset_label(unit.dataset),
        scale=float(unit.scale),
        protocol=defaults.protocol,
        y_rounding=defaults.y_rounding,
        ensemble=unit.model.ensemble or "",
    )


def _unit_rows_shared(
    exp: Experiment,
    unit: Unit,
    shared: SharedRows,
    images: list,
    evaluate: Callable[[list], tuple[list[dict], SolverSettings | None, dict]],
    common: dict,
) -> list[dict]:
    """The unit's rows: those :class:`SharedRows` already holds copied, the others evaluated
    (``evaluate(missing images) -> (rows, solver, extra columns)``); in image order."""
    probe = share_probe(unit)
    found = {m.name: shared.get(dict(probe, image=m.name)) for m in images}
    missing = [m for m in images if found[m.name] is None]
    out: list[dict] = []
    if missing:
        rows, solver, extra = evaluate(missing)
        out = _unit_rows(exp, unit, rows, common, extra, solver)
        shared.add(out)
    for row in found.values():
        if row is not None:
            copied = _unit_rows(exp, unit, [row], common, {}, None)[0]
            out.append(dict(copied, **{k: row.get(k, "") for k in _EVALUATED_BY}))
    order = {m.name: i for i, m in enumerate(images)}
    return sorted(out, key=lambda r: order[str(r["image"])])


def run_experiment(
    experiment: str | os.PathLike | dict | Experiment,
    profile: Profile,
    *,
    data_root: str | None = None,
    device: str | None = "auto",
    models: list[str] | None = None,
    progress: bool = True,
    on_unit: Callable[[Unit], None] | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
    train: bool = True,
    compile: bool = False,
) -> RunSummary:
    """Run every missing unit of ``experiment`` for ``profile`` (its results CSV, checkpoints
    and published weights); returns counts and the CSV path.

    ``train=False`` evaluates only the units whose weights exist (trained or published) and
    logs how many it left for later, instead of training the missing checkpoints first (for
    evaluating while ``bench.train_all`` trains the rest). ``on_unit`` is called after each unit
    is written (tests inject a failure there). ``compile``: the networks' backbones through
    ``torch.compile`` (:func:`odesr.models.compiled_backbone`; PSNRs equal to float rounding,
    RDN faster on a CPU).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    device = resolve_device(device)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    store = ResultsFile(profile.results_csv(exp.name))
    store.check_writable()  # folder, lock and header, before any unit is evaluated
    units = exp.units(profile, models)
    done = store.done_units()
    todo = [u for u in units if u.key not in done]
    waiting = 0
    if not train:
        todo, waiting = _without_untrained(todo, exp, profile, log)
    summary = RunSummary(len(units), len(units) - len(todo) - waiting, 0, store.path, waiting)
    if not todo:
        if waiting:
            log(
                f"bench: {exp.name}/{profile.name}: nothing to run now ({summary.skipped} of "
                f"{len(units)} units in {store.path}, {waiting} waiting for weights)"
            )
        else:
            log(f"bench: {exp.name}/{profile.name}: all {len(units)} units already in {store.path}")
        return summary
    log(
        f"bench: {exp.name}/{profile.name}: {len(todo)} of {len(units)} units to run -> "
        f"{store.path}"
    )
    common = dict(
        experiment=exp.name,
        profile=profile.name,
        code_rev=git_rev(),
        torch=torch.__version__,
        device=device_label(device),
    )
    loaded = _LoadedModel(profile, data_root, device, progress, log)
    images = _ImageCache(data_root)
    shared = SharedRows(store.path.parent, functools.partial(_ensembles, profile=profile))

    def evaluate(unit: Unit, missing: list) -> tuple[list[dict], SolverSettings | None, dict]:
        rows, solver = _evaluate_unit(unit, loaded, missing, device, batch_size, compile)
        return rows, solver, loaded.columns()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(units), initial=summary.skipped, desc=exp.name, unit="unit")
    try:
        for unit in todo:
            if bar is not None:
                bar.set_postfix_str(
                    f"{unit.model.id} {dataset_label(unit.dataset)} x{unit.scale:g}"
                )
            wanted = images.get(unit.dataset, unit.limit)
            run = functools.partial(evaluate, unit)
            store.put_unit(_unit_rows_shared(exp, unit, shared, wanted, run, common))
            summary.done += 1
            if bar is not None:
                bar.update(1)
            if on_unit is not None:
                on_unit(unit)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _without_untrained(
    todo: list[Unit], exp: Experiment, profile: Profile, log: Callable[[str], None]
) -> tuple[list[Unit], int]:
    """``--no-train``: the units whose weights exist (trained or published), and how many wait
    for weights not trained yet (logged by model and seed)."""
    absent = [
        u
        for u in todo
        if u.model.trained and trained_checkpoint(u.model, profile, published=True) is None
    ]
    if not absent:
        return todo, 0
    names = sorted({f"{u.model.id} seed {u.model.seed}" for u in absent})
    log(
        f"bench: {exp.name}/{profile.name}: {len(absent)} units wait for weights "
        f"not trained yet (--no-train): {', '.join(names)}"
    )
    keys = {u.key for u in absent}
    return [u for u in todo if u.key not in keys], len(absent)


def stale_row(exp: Experiment, profile: Profile) -> Callable[[dict], bool]:
    """``row -> True`` where a results row is of no unit ``exp`` plans for ``profile`` now: its
    (sweep, model, weights, dataset, subset) is not one of the units' (a recipe replaced, a
    sweep's subset changed while another sweep keeps that subset of the same weights). Rows
    without a sweep (older files) are matched on the rest. Other columns (solver, scale) are not
    compared: a unit's rows share them."""
    current = CurrentUnits.of(exp.units(profile))
    return lambda r: (
        not current.match(
            r.get("sweep") or "", r["model"], r["weights"], r["dataset"], r.get("subset") or ""
        )
    )


def prune_results(experiment: str, profile: Profile, dry_run: bool = False) -> int:
    """``bench prune``: drop the rows :func:`stale_row` finds, print what went per (model,
    weights, subset); with ``dry_run`` print only. 0, or 2 when there is no results file."""
    exp = load_experiment(experiment)
    path = profile.results_csv(exp.name)
    if not path.is_file():
        print(f"bench prune: no results file {path}", file=sys.stderr)
        return 2
    stale = stale_row(exp, profile)
    store = ResultsFile(path)
    gone = [r for r in store.read() if stale(r)] if dry_run else store.drop(stale)
    groups: dict[tuple[str, str, str], int] = {}
    for r in gone:
        key = (r["model"], r["weights"], r.get("subset") or "")
        groups[key] = groups.get(key, 0) + 1
    for (model, weights, subset), n in sorted(groups.items()):
        print(f"  {model} {weights} {subset or '-'}: {n} rows")
    verb = "would remove" if dry_run else "removed"
    print(f"bench prune: {verb} {len(gone)} rows of {path}; the rows of current units stay")
    return 0
