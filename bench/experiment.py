"""Experiment definitions (``bench/experiments/*.yaml``) resolved for one profile into units.

An experiment file holds

* ``models``: id -> entry. An entry names the registry model (``model: {name: bicubic}``, no
  training) or its training config per profile (``train: {smoke: smoke/vdsr-ode, cpu: ...}``; a
  value is a config name under ``odesr/configs``, a YAML path, or ``{config: NAME, set: {...}}``
  with overrides), optional ``train_set`` overrides for every profile, ``solver`` (evaluation
  solver options of ODE models), ``paper`` (the method's label in ``paper_tables.csv``),
  ``ensemble: x8``, ``scales`` (the only scales the model is evaluated at; may be per profile)
  or ``train_per_scale``
  (``{2: {profile: config}, ...}``: one checkpoint per scale, e.g. fixed-scale RDN), ``limit``
  (image subset override).
* ``sweeps``: lists of ``{name, models, datasets: {dataset: scales}, solvers, limit, profiles}``;
  ``profiles: {smoke: {...}}`` replaces sweep keys for that profile (the evaluation subsets).
  ``solvers`` (a list; list-valued keys expand as a grid) replaces the models' own solver.
* ``seen_scales``: scales counted as seen when a model has no training config (bicubic).
* ``report``: what ``python -m bench report`` draws (see :mod:`bench.report`).

Any value may be given per profile as a mapping whose keys are profile names (plus
``default``): ``{default: 10, cpu: 20}``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from odesr.evaluate import parse_scales
from odesr.models import is_ode
from odesr.ode import DEFAULT_SOLVER
from odesr.train import deep_merge

__all__ = [
    "EXPERIMENT_DIR",
    "PROFILES",
    "ExperimentError",
    "Experiment",
    "ModelPlan",
    "Unit",
    "by_profile",
    "load_experiment",
    "solver_label",
    "config_hash",
]

EXPERIMENT_DIR = Path(__file__).with_name("experiments")
PROFILES = ("smoke", "cpu", "paper")
_MISSING = object()


class ExperimentError(ValueError):
    """A malformed experiment file; the message says where."""


def by_profile(value: Any, profile: str, default: Any = None) -> Any:
    """``value[profile]`` (or ``value['default']``) when ``value`` is a per-profile mapping."""
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        keys = set(value)
        if keys <= set(PROFILES) | {"default", "demo"} or "default" in keys:
            if profile in value:
                return value[profile]
            return value.get("default", default)
    return default if value is None else value


def _has_profile_value(value: Any, profile: str) -> bool:
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        keys = set(value)
        if keys <= set(PROFILES) | {"default", "demo"} or "default" in keys:
            return profile in value or "default" in value
    return value is not None


def config_hash(cfg: dict) -> str:
    """Short stable hash of a resolved training config (the checkpoint key)."""
    text = json.dumps(cfg, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def solver_label(opts: dict | None) -> str:
    """Compact text for solver options: ``rk4 h=0.1``, ``euler n=4``, ``dopri5 rtol=1e-3 ...``."""
    if not opts:
        return "-"
    parts = [str(opts.get("method", "default"))]
    if opts.get("steps") is not None:
        parts.append(f"n={int(opts['steps'])}")
    elif opts.get("step_size") is not None:
        parts.append(f"h={float(opts['step_size']):g}")
    if opts.get("method") == "dopri5":
        parts.append(f"rtol={float(opts.get('rtol', 1e-3)):g}")
        parts.append(f"atol={float(opts.get('atol', 1e-4)):g}")
    return " ".join(parts)


def _expand_grid(spec: dict) -> list[dict]:
    keys = list(spec)
    values = [v if isinstance(v, list) else [v] for v in spec.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _scale_key(scale: float) -> float:
    return round(float(scale), 6)


@dataclass
class ModelPlan:
    """One model of an experiment resolved for a profile (for one scale when per-scale)."""

    id: str
    entry: dict
    train_cfg: dict | None  # resolved training config, or None (no training: bicubic)
    model_spec: dict | None  # registry spec for untrained models
    ensemble: str | None
    paper: str | None
    solver: dict  # default evaluation solver options
    only_scales: list[float] | None

    @property
    def trained(self) -> bool:
        return self.train_cfg is not None

    @property
    def key(self) -> str:
        """Identifies the weights (a checkpoint hash, or the untrained model's spec)."""
        if self.train_cfg is not None:
            return f"{self.train_cfg['model']['name']}-{config_hash(self.train_cfg)}"
        return json.dumps(self.model_spec, sort_keys=True)

    @property
    def seen_scales(self) -> list[float] | None:
        if self.train_cfg is None:
            return None
        return [_scale_key(s) for s in self.train_cfg["scales"]]


@dataclass
class Unit:
    """The resumable unit: one (sweep, model, solver setting, dataset, scale) on an image subset."""

    sweep: str
    model: ModelPlan
    solver: dict
    dataset: str
    scale: float
    limit: int | None

    @property
    def subset(self) -> str:
        return "all" if self.limit is None else f"first {self.limit}"

    @property
    def key(self) -> tuple:
        return (
            self.sweep,
            self.model.id,
            self.model.key,
            solver_label(self.solver),
            dataset_label(self.dataset),
            _scale_key(self.scale),
            self.subset,
        )


def dataset_label(dataset: str) -> str:
    """A dataset's name in the results: the name itself, or a folder's base name."""
    text = str(dataset)
    return Path(text).name if (os.sep in text or "/" in text) else text


@dataclass
class Experiment:
    name: str
    raw: dict
    path: Path | None = None
    seen_default: list[float] = field(default_factory=list)

    @property
    def title(self) -> str:
        return str(self.raw.get("title", self.name))

    def model_ids(self) -> list[str]:
        return list(self.raw.get("models", {}))

    # ------------------------------------------------------------------ models
    def model_plans(self, model_id: str, profile: str) -> list[ModelPlan]:
        """The plans of one model entry (several for ``train_per_scale``)."""
        try:
            entry = self.raw["models"][model_id]
        except KeyError:
            raise ExperimentError(f"{self.name}: unknown model {model_id!r}") from None
        entry = entry or {}
        ensemble = by_profile(entry.get("ensemble"), profile)
        paper = entry.get("paper")
        solver = dict(by_profile(entry.get("solver"), profile) or {})
        only = by_profile(entry.get("scales"), profile)
        only_scales = [_scale_key(s) for s in parse_scales(str(only))] if only else None
        if "model" in entry:
            spec = dict(entry["model"])
            return [ModelPlan(model_id, entry, None, spec, ensemble, paper, solver, only_scales)]
        if "train_per_scale" in entry:
            plans = []
            for scale, per in entry["train_per_scale"].items():
                cfg = self._train_config(model_id, per, entry, profile)
                plans.append(
                    ModelPlan(
                        model_id, entry, cfg, None, ensemble, paper, solver, [_scale_key(scale)]
                    )
                )
            return plans
        if "train" not in entry:
            raise ExperimentError(f"{self.name}: model {model_id!r} needs 'model' or 'train'")
        cfg = self._train_config(model_id, entry["train"], entry, profile)
        return [ModelPlan(model_id, entry, cfg, None, ensemble, paper, solver, only_scales)]

    def _train_config(self, model_id: str, train: Any, entry: dict, profile: str) -> dict:
        from odesr.train import TrainError, load_config

        ref = by_profile(train, profile, _MISSING)
        if ref is _MISSING or ref is None:
            raise ExperimentError(
                f"{self.name}: model {model_id!r} has no training config for profile {profile!r}"
            )
        overrides: dict = {}
        if isinstance(ref, dict):
            overrides = copy.deepcopy(ref.get("set") or {})
            ref = ref.get("config")
        common = by_profile(entry.get("train_set"), profile) or {}
        merged = deep_merge(common, overrides)
        source: Any = ref
        if isinstance(ref, str) and not Path(ref).is_file() and self.path is not None:
            local = self.path.parent / ref
            if local.is_file():
                source = str(local)
        try:
            return load_config(source, merged)
        except TrainError as exc:
            raise ExperimentError(f"{self.name}: model {model_id!r}: {exc}") from None

    # ------------------------------------------------------------------ sweeps
    def sweeps(self, profile: str) -> list[dict]:
        out = []
        for sweep in self.raw.get("sweeps", []):
            s = {k: v for k, v in sweep.items() if k != "profiles"}
            over = (sweep.get("profiles") or {}).get(profile) or {}
            s.update(copy.deepcopy(over))
            out.append(s)
        return out

    def units(self, profile: str, models: list[str] | None = None) -> list[Unit]:
        """Every unit of the experiment for ``profile`` in run order (model-major)."""
        units: list[Unit] = []
        plans_cache: dict[str, list[ModelPlan]] = {}
        for sweep in self.sweeps(profile):
            name = str(sweep.get("name", "main"))
            datasets = sweep.get("datasets") or {}
            if not datasets:
                raise ExperimentError(f"{self.name}: sweep {name!r} has no datasets")
            for model_id in sweep.get("models", []):
                if models and model_id not in models:
                    continue
                if model_id not in plans_cache:
                    plans_cache[model_id] = self.model_plans(model_id, profile)
                for plan in plans_cache[model_id]:
                    for solver in self._solvers(sweep, plan):
                        for dataset, scales in datasets.items():
                            limit = self._limit(sweep, plan, dataset, profile)
                            for scale in parse_scales(str(scales)):
                                if plan.only_scales and _scale_key(scale) not in plan.only_scales:
                                    continue
                                units.append(Unit(name, plan, solver, dataset, scale, limit))
        order = {}
        for u in units:  # group by weights so each checkpoint is loaded once
            order.setdefault(u.model.key, len(order))
        units.sort(key=lambda u: order[u.model.key])
        return units

    @staticmethod
    def _limit(sweep: dict, plan: ModelPlan, dataset: str, profile: str) -> int | None:
        """Image subset: the model's ``limit`` for this profile, else the sweep's
        ``dataset_limits[dataset]``, else the sweep's ``limit`` (None = every image)."""
        mlimit = plan.entry.get("limit")
        if mlimit is not None and _has_profile_value(mlimit, profile):
            return by_profile(mlimit, profile)
        per = sweep.get("dataset_limits") or {}
        if dataset in per:
            return per[dataset]
        return sweep.get("limit")

    def _solvers(self, sweep: dict, plan: ModelPlan) -> list[dict]:
        is_ode = _is_ode_plan(plan)
        if not is_ode:
            return [{}]
        given = sweep.get("solvers")
        if not given:
            return [dict(plan.solver) or DEFAULT_SOLVER.as_dict()]
        out = []
        for spec in given:
            out.extend(_expand_grid(dict(spec)))
        return out

    def seen(self, plan: ModelPlan, scale: float) -> bool:
        seen = plan.seen_scales
        if seen is None:
            seen = self.seen_default
        return _scale_key(scale) in set(seen)


def _is_ode_plan(plan: ModelPlan) -> bool:
    name = (plan.train_cfg or {}).get("model", {}).get("name") or (plan.model_spec or {}).get(
        "name", ""
    )
    return is_ode(str(name))


def experiment_path(name: str | os.PathLike) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    cand = EXPERIMENT_DIR / f"{name}.yaml"
    if cand.is_file():
        return cand
    known = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))
    raise ExperimentError(f"experiment {str(name)!r} not found; known: {', '.join(known)}")


def load_experiment(source: str | os.PathLike | dict) -> Experiment:
    """An experiment from a name (``table1``), a YAML path, or an already parsed dict."""
    if isinstance(source, dict):
        raw, path = copy.deepcopy(source), None
    else:
        path = experiment_path(source)
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    if not isinstance(raw.get("models"), dict) or not raw.get("sweeps"):
        raise ExperimentError(f"{path or 'experiment'}: needs 'models' and 'sweeps'")
    name = str(raw.get("name") or (path.stem if path else "experiment"))
    seen = raw.get("seen_scales")
    seen_default = [_scale_key(s) for s in parse_scales(str(seen))] if seen else []
    return Experiment(name, raw, path, seen_default)


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
    return (
        f"{int(cfg['max_steps'])} steps x batch {int(cfg['batch_size'])} of "
        f"{int(cfg['patch_size'])}px patches on {'+'.join(map(str, cfg['data']))}, "
        f"scales {srange}, preset {cfg['model'].get('preset', '?')}{solver}"
    )
