"""Experiment definitions (``bench/experiments/*.yaml``) resolved for one profile into units.

An experiment file holds

* ``models``: id -> entry. An entry names an untrained registry model (``model: {name:
  bicubic}``; ``checkpoint: PATH | bundled`` for fixed weights) or a training config:
  ``config: vdsr-ode`` (a model id under ``odesr/configs`` composed for the run's profile,
  ``PROFILE/MODEL`` for a fixed profile, or a YAML path relative to the experiment) or
  ``config_per_scale: {2: rdn-fixed-x2, ...}`` (one checkpoint per scale). Optional: ``train``
  (``{dotted.key: value}`` overrides of that config), ``solver`` (evaluation solver options of
  ODE models), ``paper`` (the method's label in the paper tables), ``ensemble: x8``, ``scales``
  (the only scales the model is evaluated at), ``limit`` (image subset, overrides the sweep's),
  ``train_steps: [N, ...]`` (a budget ladder: the entry stands for one model per budget, id
  ``MODEL@N``, trained with ``max_steps: N``; a sweep listing ``MODEL`` lists them all, in this
  order, and ``--models MODEL`` selects them all; each budget is its own run, so its lr schedule
  spans its own ``max_steps``).
* ``sweeps``: name -> ``{models, datasets: {dataset: scales}, solvers, limit, dataset_limits,
  seeds}`` (a list of sweeps with a ``name`` each is read the same way). ``solvers`` (a list;
  list-valued keys expand as a grid) replaces the models' own solver. ``seeds`` (default: the
  training config's own seed, 0 in every profile): seed k of a trained model trains its config
  with ``seed: k`` (so seed 0 keeps the checkpoint of a sweep without ``seeds``); untrained models
  (bicubic) are seed-independent and evaluated once.
* ``claims``: the paper's claims judged by ``report`` kind ``claims`` (see :mod:`bench.claims`).
* ``seen_scales``: scales counted as seen when a model has no training config (bicubic).
* ``report``: what ``python -m bench report`` draws (see :mod:`bench.report`).
* ``profiles``: the one override mechanism: ``{profile: {dotted.key: value}}``; for that profile,
  each value replaces what the key held (``sweeps.main.limit: 2``,
  ``models.vdsr-ode.solver: {method: euler, step_size: 0.5}``).

Unknown keys, sweep models that no entry defines and YAML syntax errors are refused with one
line (:class:`ExperimentError`) when the file is loaded, before any work.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.profile import Profile, ProfileError
from odesr.config import ConfigError, apply_overrides, read_yaml, weights_hash
from odesr.config import profiles as recipes
from odesr.evaluate import parse_scales
from odesr.models import is_ode
from odesr.ode import DEFAULT_SOLVER

__all__ = [
    "EXPERIMENT_DIR",
    "CLAIM_KEYS",
    "CLAIM_KINDS",
    "ExperimentError",
    "check_claims",
    "Experiment",
    "LADDER_MARK",
    "ModelPlan",
    "Unit",
    "ladder_base",
    "load_experiment",
    "solver_label",
]

EXPERIMENT_DIR = Path(__file__).with_name("experiments")
TOP_KEYS = (
    "name",
    "title",
    "seen_scales",
    "models",
    "sweeps",
    "claims",
    "report",
    "profiles",
)
MODEL_KEYS = (
    "model",
    "config",
    "config_per_scale",
    "train",
    "solver",
    "paper",
    "ensemble",
    "scales",
    "limit",
    "train_steps",
)
LADDER_MARK = "@"  # ladder model ids: MODEL@N (N training steps)
SWEEP_KEYS = ("name", "models", "datasets", "dataset_limits", "limit", "solvers", "seeds")
# the keys of one entry of an experiment's ``claims`` list (:mod:`bench.claims` judges them)
CLAIM_KEYS = (
    "claim",
    "a",
    "b",
    "scales",
    "dataset",
    "sweep",
    "kind",
    "base_scale",
    "paper_table",
    "paper_solver",
    "note",
)
CLAIM_KINDS = ("difference", "extrapolation")


class ExperimentError(ValueError):
    """A malformed experiment file; the message says where."""


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
            return f"{self.train_cfg['model']['name']}-{weights_hash(self.train_cfg)}"
        return json.dumps(self.model_spec, sort_keys=True)

    @property
    def seed(self) -> int | None:
        """The training seed (None for untrained models)."""
        return None if self.train_cfg is None else int(self.train_cfg["seed"])

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
    raw: dict  # as written, ``sweeps`` as a mapping; :meth:`for_profile` applies ``profiles``
    path: Path | None = None
    seen_default: list[float] = field(default_factory=list)

    @property
    def title(self) -> str:
        return str(self.raw.get("title", self.name))

    def model_ids(self, profile: Profile | None = None) -> list[str]:
        """The model ids (ladders expanded to ``MODEL@N``) of ``profile``, else as written."""
        if profile is not None:
            return list(self.for_profile(profile.name)["models"])
        base = {k: v for k, v in self.raw.items() if k != "profiles"}
        return list(_expand_ladders(base)["models"])

    def for_profile(self, profile: str) -> dict:
        """The experiment with ``profiles[profile]``'s overrides applied (checked; ``profile``
        is a :attr:`Profile.name`), budget ladders (``train_steps``) expanded into one model
        entry per budget."""
        base = {k: v for k, v in self.raw.items() if k != "profiles"}
        over = (self.raw.get("profiles") or {}).get(profile) or {}
        try:
            doc = apply_overrides(base, over)
        except ConfigError as exc:
            raise ExperimentError(f"{self.name}: profiles.{profile}: {exc}") from None
        _check_document(doc, f"{self.name} (profile {profile})")
        return _expand_ladders(doc)

    # ------------------------------------------------------------------ models
    def model_plans(
        self, model_id: str, profile: Profile, seed: int | None = None
    ) -> list[ModelPlan]:
        """The plans of one model entry (several for ``config_per_scale``); ``seed`` replaces
        the training config's seed (None: the config's own)."""
        try:
            entry = self.for_profile(profile.name)["models"][model_id] or {}
        except KeyError:
            raise ExperimentError(f"{self.name}: unknown model {model_id!r}") from None
        ensemble = entry.get("ensemble")
        paper = entry.get("paper")
        solver = dict(entry.get("solver") or {})
        only = entry.get("scales")
        only_scales = [_scale_key(s) for s in parse_scales(str(only))] if only else None

        def plan(cfg: dict | None, spec: dict | None, scales: list[float] | None) -> ModelPlan:
            return ModelPlan(model_id, entry, cfg, spec, ensemble, paper, solver, scales)

        if "model" in entry:
            return [plan(None, dict(entry["model"]), only_scales)]
        if "config_per_scale" in entry:
            return [
                plan(
                    self._train_config(model_id, ref, entry, profile, seed),
                    None,
                    [_scale_key(scale)],
                )
                for scale, ref in entry["config_per_scale"].items()
            ]
        if "config" not in entry:
            raise ExperimentError(
                f"{self.name}: model {model_id!r} needs 'model', 'config' or 'config_per_scale'"
            )
        cfg = self._train_config(model_id, entry["config"], entry, profile, seed)
        return [plan(cfg, None, only_scales)]

    def _train_config(
        self, model_id: str, ref: Any, entry: dict, profile: Profile, seed: int | None = None
    ) -> dict:
        """``ref`` (MODEL of the profile's recipe, PROFILE/MODEL, or a YAML path) + ``train``
        (+ ``seed`` when given)."""
        from odesr.train import TrainError, load_config

        source = str(ref)
        local = self.path.parent / source if self.path is not None else None
        if Path(source).is_file():
            pass
        elif local is not None and local.is_file():
            source = str(local)
        elif "/" not in source:
            try:
                source = profile.config_name(source)
            except ProfileError as exc:
                raise ExperimentError(f"{self.name}: model {model_id!r}: {exc}") from None
        overrides = dict(entry.get("train") or {})
        if seed is not None:
            overrides["seed"] = int(seed)
        try:
            return load_config(source, overrides)
        except TrainError as exc:
            raise ExperimentError(f"{self.name}: model {model_id!r}: {exc}") from None

    # ------------------------------------------------------------------ sweeps
    def sweeps(self, profile: Profile) -> list[dict]:
        """The sweeps for ``profile``, each with its ``name``."""
        sweeps = self.for_profile(profile.name).get("sweeps") or {}
        return [{**copy.deepcopy(sweep), "name": name} for name, sweep in sweeps.items()]

    def seeds(self, sweep: dict) -> list[int | None]:
        """A sweep's training seeds (``[None]``: the configs' own seed)."""
        seeds = sweep.get("seeds")
        return [None] if seeds is None else list(dict.fromkeys(seeds))

    def seeded_plans(
        self, model_id: str, profile: Profile, seeds: list[int | None], cache: dict | None = None
    ) -> list[ModelPlan]:
        """The plans of ``model_id`` for each seed; an untrained model's plans once (they do
        not depend on the seed)."""
        cache = {} if cache is None else cache
        out: list[ModelPlan] = []
        for seed in seeds:
            if (model_id, seed) not in cache:
                cache[model_id, seed] = self.model_plans(model_id, profile, seed)
            plans = cache[model_id, seed]
            if not any(p.trained for p in plans):
                return plans
            out.extend(plans)
        return out

    def all_plans(self, profile: Profile) -> list[ModelPlan]:
        """Every distinct plan (weights) of every model entry, for every seed of the sweeps
        that use it (a model in no sweep: its config's own seed)."""
        seeds_of: dict[str, list[int | None]] = {}
        for sweep in self.sweeps(profile):
            for model_id in sweep.get("models", []):
                seeds_of.setdefault(model_id, []).extend(self.seeds(sweep))
        out: dict[tuple, ModelPlan] = {}
        cache: dict = {}
        for model_id in self.model_ids(profile):
            seeds = list(dict.fromkeys(seeds_of.get(model_id) or [None]))
            for plan in self.seeded_plans(model_id, profile, seeds, cache):
                out.setdefault((plan.id, plan.key), plan)
        return list(out.values())

    def units(self, profile: Profile, models: list[str] | None = None) -> list[Unit]:
        """Every unit of the experiment for ``profile`` in run order (model-major)."""
        units: list[Unit] = []
        plans_cache: dict = {}
        for sweep in self.sweeps(profile):
            name = str(sweep["name"])
            datasets = sweep.get("datasets") or {}
            if not datasets:
                raise ExperimentError(f"{self.name}: sweep {name!r} has no datasets")
            seeds = self.seeds(sweep)
            for model_id in sweep.get("models", []):
                if models and model_id not in models and ladder_base(model_id) not in models:
                    continue
                for plan in self.seeded_plans(model_id, profile, seeds, plans_cache):
                    for solver in self._solvers(sweep, plan):
                        for dataset, scales in datasets.items():
                            limit = self._limit(sweep, plan, dataset)
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
    def _limit(sweep: dict, plan: ModelPlan, dataset: str) -> int | None:
        """Image subset: the model's ``limit`` when it has one (null = every image), else the
        sweep's ``dataset_limits[dataset]``, else the sweep's ``limit`` (None = every image)."""
        if "limit" in plan.entry:
            return plan.entry["limit"]
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
            return [dict(plan.solver) or _own_solver(plan)]
        out = []
        for spec in given:
            out.extend(_expand_grid(dict(spec)))
        return out

    def seen(self, plan: ModelPlan, scale: float) -> bool:
        seen = plan.seen_scales
        if seen is None:
            seen = self.seen_default
        return _scale_key(scale) in set(seen)


def _unknown(keys: Any, known: tuple[str, ...], where: str) -> None:
    extra = [k for k in keys if k not in known]
    if extra:
        raise ExperimentError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(known)})")


def ladder_base(model_id: str) -> str:
    """The entry a ladder model id was expanded from (``vdsr-ode@1000`` -> ``vdsr-ode``)."""
    base, mark, steps = str(model_id).rpartition(LADDER_MARK)
    return base if mark and steps.isdigit() else str(model_id)


def _expand_ladders(doc: dict) -> dict:
    """``doc`` with each model entry holding ``train_steps: [N, ...]`` replaced by the entries
    ``MODEL@N`` (its ``train`` plus ``max_steps: N``), and in every sweep ``MODEL`` by them."""
    models = doc.get("models") or {}
    ladders = {m: e["train_steps"] for m, e in models.items() if (e or {}).get("train_steps")}
    if not ladders:
        return doc
    out_models: dict = {}
    for model_id, entry in models.items():
        if model_id not in ladders:
            out_models[model_id] = entry
            continue
        rest = {k: v for k, v in entry.items() if k != "train_steps"}
        for steps in ladders[model_id]:
            train = dict(rest.get("train") or {}, max_steps=int(steps))
            out_models[f"{model_id}{LADDER_MARK}{int(steps)}"] = dict(rest, train=train)
    sweeps = {}
    for name, sweep in (doc.get("sweeps") or {}).items():
        ids: list[str] = []
        for model_id in sweep.get("models", []):
            steps = ladders.get(model_id)
            ids += [f"{model_id}{LADDER_MARK}{int(n)}" for n in steps] if steps else [model_id]
        sweeps[name] = dict(sweep, models=ids)
    return dict(doc, models=out_models, sweeps=sweeps)


def _check_ladder(entry: dict, where: str) -> None:
    """``train_steps``: a non-empty list of distinct positive integers, on a trained model
    whose ``train`` does not also set ``max_steps``."""
    steps = entry.get("train_steps")
    if steps is None:
        return
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in steps)
        or len(set(steps)) != len(steps)
    ):
        raise ExperimentError(
            f"{where}.train_steps: expected a list of distinct positive integers, got {steps!r}"
        )
    if "model" in entry:
        raise ExperimentError(f"{where}.train_steps: an untrained model has no training budget")
    if "max_steps" in (entry.get("train") or {}):
        raise ExperimentError(f"{where}: train.max_steps and train_steps both set the budget")


def _check_document(doc: dict, where: str) -> None:
    """Refuse unknown keys and sweep models without an entry (one line naming them)."""
    _unknown(doc, TOP_KEYS, where)
    models = doc.get("models")
    if not isinstance(models, dict) or not doc.get("sweeps"):
        raise ExperimentError(f"{where}: needs 'models' and 'sweeps'")
    for model_id, entry in models.items():
        if not isinstance(entry or {}, dict):
            raise ExperimentError(f"{where}: models.{model_id}: expected a mapping")
        _unknown(entry or {}, MODEL_KEYS, f"{where}: models.{model_id}")
        _check_ladder(entry or {}, f"{where}: models.{model_id}")
    check_claims(doc.get("claims"), models, where)
    for name, sweep in doc["sweeps"].items():
        if not isinstance(sweep, dict):
            raise ExperimentError(f"{where}: sweeps.{name}: expected a mapping")
        _unknown(sweep, SWEEP_KEYS, f"{where}: sweeps.{name}")
        seeds = sweep.get("seeds")
        if seeds is not None and (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in seeds)
        ):
            raise ExperimentError(
                f"{where}: sweeps.{name}.seeds: expected a list of non-negative integers, "
                f"got {seeds!r}"
            )
        for model_id in sweep.get("models", []):
            if model_id not in models:
                raise ExperimentError(
                    f"{where}: sweeps.{name}: unknown model {model_id!r} "
                    f"(defined: {', '.join(models)})"
                )


def check_claims(claims: object, models: dict, where: str) -> None:
    """One-line :class:`ExperimentError` for a malformed ``claims`` list (the claims are judged
    by :mod:`bench.claims`)."""
    if claims is None:
        return
    if not isinstance(claims, list):
        raise ExperimentError(f"{where}: claims: expected a list of claims")
    for i, c in enumerate(claims):
        at = f"{where}: claims[{i}]"
        if not isinstance(c, dict):
            raise ExperimentError(f"{at}: expected a mapping")
        extra = [k for k in c if k not in CLAIM_KEYS]
        if extra:
            raise ExperimentError(
                f"{at}: unknown key {extra[0]!r} (known: {', '.join(CLAIM_KEYS)})"
            )
        for key in ("claim", "a", "b"):
            if key not in c:
                raise ExperimentError(f"{at}: needs {key!r}")
        for key in ("a", "b"):
            if c[key] not in models:
                raise ExperimentError(f"{at}: {key}: unknown model {c[key]!r}")
        if c.get("kind", "difference") not in CLAIM_KINDS:
            raise ExperimentError(
                f"{at}: kind: {c['kind']!r} (choose from {', '.join(CLAIM_KINDS)})"
            )


def _own_solver(plan: ModelPlan) -> dict:
    """The evaluation solver of a model entry without ``solver``: the one its model spec names
    (e.g. ``method: path-step`` of an hr model), else :data:`odesr.ode.DEFAULT_SOLVER`."""
    spec = (plan.train_cfg or {}).get("model") or plan.model_spec or {}
    own = {k: spec[k] for k in DEFAULT_SOLVER.as_dict() if k in spec}
    return own or DEFAULT_SOLVER.as_dict()


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


def _sweep_mapping(sweeps: Any, where: str) -> dict:
    """``sweeps`` as ``{name: sweep}`` (a list of sweeps with ``name`` keys is accepted)."""
    if isinstance(sweeps, list):
        out = {}
        for sweep in sweeps:
            if not isinstance(sweep, dict):
                raise ExperimentError(f"{where}: sweeps: expected mappings, got {sweep!r}")
            sweep = dict(sweep)
            out[str(sweep.pop("name", "main"))] = sweep
        return out
    return dict(sweeps or {})


def load_experiment(source: str | os.PathLike | dict) -> Experiment:
    """An experiment from a name (``table1``), a YAML path, or an already parsed dict.

    Every profile named in ``profiles`` (and the file as written) is checked here, so a typo
    fails before any planning or work."""
    if isinstance(source, dict):
        raw, path = copy.deepcopy(source), None
    else:
        path = experiment_path(source)
        try:
            raw = read_yaml(path)
        except ConfigError as exc:
            raise ExperimentError(str(exc)) from None
    where = str(path or raw.get("name") or "experiment")
    raw["sweeps"] = _sweep_mapping(raw.get("sweeps"), where)
    name = str(raw.get("name") or (path.stem if path else "experiment"))
    seen = raw.get("seen_scales")
    seen_default = [_scale_key(s) for s in parse_scales(str(seen))] if seen else []
    exp = Experiment(name, raw, path, seen_default)
    _check_document({k: v for k, v in raw.items() if k != "profiles"}, where)
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ExperimentError(f"{where}: profiles: expected {{profile: {{dotted.key: value}}}}")
    known = recipes()
    for profile in profiles:
        if profile not in known:  # a typo would silently never apply
            raise ExperimentError(
                f"{where}: profiles.{profile}: not a profile ({', '.join(known)})"
            )
        exp.for_profile(profile)
    return exp
