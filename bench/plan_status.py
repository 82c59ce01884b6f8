"""``python -m bench plan EXPERIMENT --profile P --status``: what of a run is done, what is left,
and what is left costs.

* A unit is **done** when the experiment's results CSV holds it (what ``bench run`` skips,
  :meth:`bench.results.ResultsFile.done_units`); **to copy** when every image of it is already
  evaluated in another results CSV of the profile (``bench run`` copies those rows,
  :class:`bench.results.SharedRows`); else **to evaluate**.
* A checkpoint is **to train** when neither its ``final.pt`` nor published weights exist
  (:func:`bench.checkpoints.trained_checkpoint`; a ``last.pt`` is resumed from its step).
* Hours: one thread, the estimates of :mod:`bench.plan` (:func:`bench.calibrate.cost_model`,
  :func:`bench.price.price_training`, :func:`bench.price.price_evaluation`) of what is left only;
  copying costs nothing. Image sizes come from the data, else from ``bench/image_sizes.tsv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.calibrate import cost_model
from bench.checkpoints import trained_checkpoint
from bench.cost_model import dataset_images
from bench.experiment import Experiment, ModelPlan, Unit, dataset_label, solver_label
from bench.price import price_evaluation, price_training
from bench.profile import Profile
from bench.results import ResultsFile, SharedRows
from bench.runner import fixed_checkpoint, share_probe
from odesr.checkpoints import load
from odesr.models import build

__all__ = ["GroupStatus", "status", "format_status"]


@dataclass
class GroupStatus:
    """The units of one (model, weights, solver, dataset, image subset)."""

    model: str
    seed: int | None
    solver: str
    dataset: str
    images: int
    done: int = 0
    copy: int = 0
    evaluate: list[float] = field(default_factory=list)  # the scales to evaluate
    seconds: float = 0.0


@dataclass
class TrainStatus:
    model: str
    seed: int | None
    key: str
    from_step: int
    steps: int
    seconds: float


def _spec(plan: ModelPlan) -> dict:
    """The registry spec of a plan's model (fixed weights: the one stored with them)."""
    fixed = fixed_checkpoint(plan.model_spec)
    if fixed is not None:
        return dict(load(fixed).spec)
    return dict((plan.train_cfg or {}).get("model") or plan.model_spec or {})


def _copyable(unit: Unit, shared: SharedRows, data_root: str | None) -> bool:
    """Whether every image of ``unit`` is evaluated in some results CSV of the profile (what
    ``bench run`` would copy instead of evaluating, :func:`bench.runner.share_probe`)."""
    probe = share_probe(unit)
    files = dataset_images(unit.dataset, data_root)[: unit.limit]
    return all(shared.get(dict(probe, image=Path(f).stem)) is not None for f, _, _ in files)


def _to_train(plan: ModelPlan, profile: Profile, data_root, cal: dict) -> TrainStatus:
    """The training left for ``plan`` (from the step of its ``last.pt`` when there is one)."""
    from odesr.train_state import read_checkpoint

    last = profile.checkpoint_dir(plan.key) / "last.pt"
    start = int(read_checkpoint(last)[1].get("step", 0)) if last.exists() else 0
    cfg = plan.train_cfg or {}
    est = price_training(cfg, cal, data_root, start, startup=False)
    label = plan.id
    if "config_per_scale" in plan.entry and plan.only_scales and len(plan.only_scales) == 1:
        label += f" x{plan.only_scales[0]:g}"
    return TrainStatus(label, plan.seed, plan.key, start, int(cfg["max_steps"]), est.seconds)


def status(
    exp: Experiment,
    profile: Profile,
    data_root: str | None = None,
    cal: dict | None = None,
) -> tuple[list[TrainStatus], list[GroupStatus], Path]:
    """(checkpoints to train, unit groups, the results CSV) of ``exp`` for ``profile``."""
    if cal is None:
        cal = cost_model()[0]
    csv = profile.results_csv(exp.name)
    done = ResultsFile(csv).done_units()
    shared = SharedRows(csv.parent) if csv.parent.is_dir() else None
    groups: dict[tuple, GroupStatus] = {}
    units: dict[tuple, list[Unit]] = {}
    train: dict[str, TrainStatus] = {}
    for unit in exp.units(profile):
        plan = unit.model
        label = solver_label(unit.solver)
        gkey = (unit.sweep, plan.id, plan.key, label, str(unit.dataset), unit.limit)
        group = groups.get(gkey)
        if group is None:
            n = len(dataset_images(unit.dataset, data_root)[: unit.limit])
            group = groups[gkey] = GroupStatus(
                plan.id, plan.seed, label, dataset_label(unit.dataset), n
            )
        if unit.key in done:
            group.done += 1
            continue
        if shared is not None and _copyable(unit, shared, data_root):
            group.copy += 1
            continue
        group.evaluate.append(float(unit.scale))
        units.setdefault(gkey, []).append(unit)
        if plan.trained and plan.key not in train:
            if trained_checkpoint(plan, profile, published=True) is None:
                train[plan.key] = _to_train(plan, profile, data_root, cal)
    for gkey, todo in units.items():
        plan, group = todo[0].model, groups[gkey]
        spec = _spec(plan)
        with torch.device("meta"):
            model = build(spec)
        solver = model.solver_settings(todo[0].solver) if model.is_ode else None
        est = price_evaluation(
            model,
            spec,
            solver,
            [todo[0].dataset],
            group.evaluate,
            cal,
            data_root,
            todo[0].limit,
            ensemble=plan.ensemble == "x8",
            startup=False,
        )
        group.seconds = est.seconds
    return list(train.values()), list(groups.values()), csv


def _hours(seconds: float) -> str:
    if seconds <= 0:
        return "0"
    h = seconds / 3600
    return f"{h:,.0f}" if h >= 100 else (f"{h:.3g}" if h >= 0.001 else "<0.001")


def format_status(
    exp: Experiment,
    profile: Profile,
    data_root: str | None = None,
) -> str:
    """The status view: checkpoints to train, units done / to copy / to evaluate per model,
    solver and dataset, and the one-thread hours of what is left."""
    cal, model_line = cost_model()
    train, groups, csv = status(exp, profile, data_root, cal)
    n_done = sum(g.done for g in groups)
    n_copy = sum(g.copy for g in groups)
    n_eval = sum(len(g.evaluate) for g in groups)
    total = n_done + n_copy + n_eval
    lines = [
        f"bench plan {exp.name} --profile {profile.name} --status",
        f"results: {csv}",
        model_line,
        "",
        f"units: {n_done} of {total} done, {n_copy} to copy from other results, "
        f"{n_eval} to evaluate",
        "",
        f"train: {len(train)} checkpoints (no final.pt, not published)",
    ]
    if train:
        lines.append(f"  {'model':<18} {'seed':>4} {'key':<22} {'steps':>13} {'CPU h':>9}")
        for t in train:
            steps = f"{t.from_step}..{t.steps}" if t.from_step else str(t.steps)
            seed = "-" if t.seed is None else str(t.seed)
            lines.append(
                f"  {t.model:<18} {seed:>4} {t.key:<22} {steps:>13} {_hours(t.seconds):>9}"
            )
    lines += [
        "",
        "evaluate (units):",
        f"  {'model':<18} {'seed':>4} {'solver':<14} {'dataset':<8} {'images':>6} {'done':>5} "
        f"{'copy':>5} {'to do':>5} {'CPU h':>9}",
    ]
    for g in groups:
        seed = "-" if g.seed is None else str(g.seed)
        lines.append(
            f"  {g.model:<18} {seed:>4} {g.solver:<14} {g.dataset:<8} {g.images:>6} {g.done:>5} "
            f"{g.copy:>5} {len(g.evaluate):>5} {_hours(g.seconds):>9}"
        )
    left = sum(t.seconds for t in train) + sum(g.seconds for g in groups)
    lines += ["", f"left: {_hours(left)} h on this CPU (one thread)"]
    return "\n".join(lines)
