"""What a unit of work costs before any timing: FLOPs per output pixel of a model (counted on
meta tensors by :class:`torch.utils.flop_counter.FlopCounterMode`), NFE per image and per
training step, the images a dataset holds and the output pixels an evaluation makes; the GPU
throughputs of ``bench/costs.yaml`` (:class:`Costs`). :mod:`bench.plan` turns these into hours."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.experiment import ModelPlan, solver_label

__all__ = [
    "COSTS",
    "ASSUMED_ADAPTIVE_NFE",
    "PROBE_LR",
    "Costs",
    "RUN_ONLY_KEYS",
    "step_key",
    "measured_gpu_steps",
    "flops_per_pixel",
    "spec_flops_per_pixel",
    "model_for_spec",
    "backbone_of",
    "family_of",
    "is_ode_plan",
    "nfe_per_image",
    "train_nfe_per_step",
    "dataset_sizes",
    "dataset_images",
    "holdout_names",
    "output_pixels",
    "dataset_names",
    "protocol_size",
    "train_flops",
    "step_flops",
]


COSTS = Path(__file__).with_name("costs.yaml")


ASSUMED_ADAPTIVE_NFE = 26  # dopri5 at rtol 1e-3 from x4, a few rejected steps (6 stages/step)


PROBE_LR = 16  # side of the LR probe the FLOPs are counted on


@dataclass
class Costs:
    """Measured throughputs (GFLOP/s per backbone) with where and when they were measured, and
    the GPU's measured training steps/s per :func:`step_key` (``gpu_steps``: the float32 runs of
    the device check named by the gpu entry's ``device_check``, a path from the repository)."""

    cpu: dict
    gpu: dict | None
    busy: dict | None = None
    gpu_steps: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path = COSTS) -> Costs:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        gpu = raw.get("gpu")
        steps = {}
        if gpu and gpu.get("device_check"):
            steps = measured_gpu_steps(Path(path).resolve().parents[1] / gpu["device_check"])
        return cls(raw["cpu"], gpu, raw.get("cpu_busy"), steps)

    @staticmethod
    def seconds(where: dict, flops: float, backbone: str, train: bool = False) -> float:
        rate = where["gflops"].get(backbone) or min(where["gflops"].values())
        factor = float(where.get("train_factor", 3.0)) if train else 1.0
        return flops * factor / (float(rate) * 1e9)


# Training config keys that say which data, how long, how often to log and validate, and
# which seed: they leave the cost of a step alone (the device check overrides them).
RUN_ONLY_KEYS = ("data", "val", "log_every", "checkpoint_every", "max_steps", "seed")


def step_key(cfg: dict) -> str:
    """What a training step costs is fixed by the config without :data:`RUN_ONLY_KEYS`: a
    short hash of the rest (model, patch, batch, solver, objective, recompute, ...)."""
    core = {k: v for k, v in cfg.items() if k not in RUN_ONLY_KEYS}
    text = json.dumps(core, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def measured_gpu_steps(path: Path) -> dict[str, float]:
    """Steps/s per :func:`step_key` of the float32 training runs recorded in a device-check
    file (``bench.device_check``: the paper-profile runs and the small models' one-seed runs;
    the best run of each config). Runs in TF32, failed ones and those written before runs
    carried a ``step_key`` count for nothing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the device check named by bench/costs.yaml is missing")
    info = json.loads(path.read_text())
    runs = [(r, r.get("steps_per_s")) for r in info.get("train", [])]
    runs += [(r, r.get("seed_steps_per_s")) for r in info.get("small_train", []) if r.get("k") == 1]
    out: dict[str, float] = {}
    for run, rate in runs:
        key = run.get("step_key")
        if key and rate and run.get("math") == "float32" and "error" not in run:
            out[key] = max(out.get(key, 0.0), float(rate))
    return out


def _build(plan: ModelPlan):
    from bench.runner import fixed_checkpoint
    from odesr.models import build

    spec = (plan.train_cfg or {}).get("model") or plan.model_spec
    if fixed_checkpoint(plan.model_spec) is not None:  # bundled weights: the spec is inside
        from odesr.checkpoints import load

        return load(fixed_checkpoint(plan.model_spec), map_location="meta")
    return build(dict(spec))


_BUILDERS: dict[str, Callable] = {}  # model key -> builder, for the cached FLOP counts


def flops_per_pixel(plan: ModelPlan, scale: float) -> float:
    """FLOPs of one network evaluation (NFE) per output pixel at ``scale`` (see
    :func:`_flops_per_pixel`)."""
    _BUILDERS.setdefault(plan.key, lambda: _build(plan))
    fixed = plan.only_scales is not None and len(plan.only_scales) <= 2
    return _flops_per_pixel(plan.key, scale, fixed)


def spec_flops_per_pixel(spec: dict, scale: float) -> float:
    """:func:`flops_per_pixel` of the model a registry spec builds (a training config's
    ``model``, or the spec stored in a checkpoint)."""
    scales = getattr(model_for_spec(spec), "supported_scales", None)
    return _flops_per_pixel(_spec_key(spec), scale, scales is not None and len(scales) <= 2)


def _spec_key(spec: dict) -> str:
    return "spec:" + json.dumps(spec, sort_keys=True, default=str)


def model_for_spec(spec: dict):
    """The model ``spec`` builds, on meta tensors (cached)."""
    from odesr.models import build

    _BUILDERS.setdefault(_spec_key(spec), lambda: build(dict(spec)))
    return _model(_spec_key(spec))


def _flops_per_pixel(key: str, scale: float, own_scales: bool) -> float:
    """Networks at the output size (``input_kind == "upscaled"``): one probe, the same at every
    scale. Networks at LR size: FLOPs = a * LR pixels + b * output pixels (convs on the LR image,
    an upsampler per output pixel), fitted exactly from probes at x2 and x4 -- or probed at the
    asked scale when the model has at most two of its own (``own_scales``)."""
    scale = round(float(scale), 6)
    model = _model(key)
    if getattr(model, "input_kind", "upscaled") == "upscaled":
        flops, out_px = _probe(key, 2.0)
        return flops / out_px
    if own_scales or scale in (2.0, 4.0):
        flops, out_px = _probe(key, scale)
        return flops / out_px
    (f2, o2), (f4, o4) = _probe(key, 2.0), _probe(key, 4.0)
    per_out = (f4 - f2) / (o4 - o2)
    per_lr = (f2 - per_out * o2) / PROBE_LR**2
    out_px = math.ceil(PROBE_LR * scale) ** 2
    return (per_lr * PROBE_LR**2 + per_out * out_px) / out_px


@functools.cache
def _model(key: str):
    return _BUILDERS[key]().to("meta").eval()


@functools.cache
def _probe(key: str, scale: float) -> tuple[float, int]:
    """(FLOPs of one NFE, output pixels) on a PROBE_LR x PROBE_LR LR image, on meta tensors."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(key)
    size = (int(math.ceil(PROBE_LR * scale)),) * 2
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if hasattr(model, "func"):  # an ODE model: one evaluation of f(I, t) at the output size
            model.func(scale, torch.zeros(1, 3, *size, device="meta"))
            nfe = 1
        else:
            lr = torch.zeros(1, 3, PROBE_LR, PROBE_LR, device="meta")
            nfe = model.super_resolve(lr, scale, size).nfe
    return (counter.get_total_flops() / nfe if nfe else 0.0), size[0] * size[1]


def backbone_of(plan: ModelPlan) -> str:
    return family_of((plan.train_cfg or {}).get("model") or plan.model_spec)


def family_of(spec: dict | None) -> str:
    """The backbone family of a model spec: its registered backbone (``vdsr``, ``rdn``, ...:
    :func:`odesr.models.backbone_of`), or ``none`` (bicubic)."""
    from odesr.models import backbone_of

    return backbone_of(spec) or "none"


def _solver_nfe(opts: dict, scale: float) -> int | None:
    """NFE of one solve from ``scale`` (None: adaptive), via :class:`odesr.ode.SolverSettings`."""
    from odesr.ode import SolverSettings

    return SolverSettings.from_dict(opts).nfe(scale)


def is_ode_plan(plan: ModelPlan) -> bool:
    spec = (plan.train_cfg or {}).get("model") or plan.model_spec or {}
    return str(spec.get("name", "")).endswith("-ode")


@functools.lru_cache(maxsize=1)
def _recorded_nfe() -> dict:
    """Mean NFE per (model, solver label, scale) over the committed results CSVs."""
    import pandas as pd

    root = Path(__file__).resolve().parents[1] / "results"
    out: dict = defaultdict(list)
    for csv in root.rglob("*.csv"):
        try:
            df = pd.read_csv(csv, usecols=["model", "solver_opts", "scale", "nfe"])
        except (ValueError, KeyError):
            continue
        for (m, s, sc), g in df.groupby(["model", "solver_opts", "scale"]):
            out[(m, s, round(float(sc), 6))].append(float(g["nfe"].mean()))
    return {k: sum(v) / len(v) for k, v in out.items()}


def nfe_per_image(plan: ModelPlan, solver: dict, scale: float) -> tuple[float, bool]:
    """(NFE for one image at ``scale``, exact?) -- with the x8 ensemble counted."""
    ens = 8 if plan.ensemble == "x8" else 1
    if not is_ode_plan(plan):
        if plan.train_cfg is None and (plan.model_spec or {}).get("name") == "bicubic":
            return 0.0, True
        return float(ens * int((plan.train_cfg or {}).get("model", {}).get("repeat", 1))), True
    opts = dict(solver) or {"method": "rk4", "step_size": 0.1}
    nfe = _solver_nfe(opts, scale)
    if nfe is not None:
        return float(nfe * ens), True
    rec = _recorded_nfe().get((plan.id, solver_label(opts), round(float(scale), 6)))
    if rec is not None:
        return rec * ens, True
    return float(ASSUMED_ADAPTIVE_NFE * ens), False


def train_nfe_per_step(cfg: dict) -> float:
    """Mean backbone evaluations per training sample over the training scales."""
    if not str(cfg["model"]["name"]).endswith("-ode"):
        return float(cfg["model"].get("repeat", 1))  # a +t net applied `repeat` times
    if cfg.get("objective") == "path":
        return 1.0
    ts = cfg.get("train_solver") or {}
    scales = [float(s) for s in cfg["scales"]]
    return sum(_solver_nfe(ts, s) or ASSUMED_ADAPTIVE_NFE for s in scales) / len(scales)


@functools.cache
def dataset_sizes(dataset: str, data_root: str | None) -> tuple[tuple[int, int], ...]:
    return tuple((h, w) for _, h, w in dataset_images(dataset, data_root))


@functools.cache
def dataset_images(dataset: str, data_root: str | None) -> tuple[tuple[str, int, int], ...]:
    """``(file, height, width)`` of a dataset's images in sorted order: read from the data, else
    (the dataset is not on this machine) from the table shipped in ``bench/image_sizes.tsv``."""
    from bench.image_sizes import measure_sizes, shipped_sizes
    from odesr.data import DataError

    try:
        return tuple(measure_sizes(dataset, data_root))
    except DataError:
        shipped = shipped_sizes().get(str(dataset))
        if shipped is None:
            raise
        return shipped


def holdout_names(cfg: dict, data_root: str | None) -> set[str]:
    """File names of ``cfg``'s holdout images (:func:`odesr.batches.holdout_files`; the last
    ``holdout.n_images`` of the shipped table when the dataset is not on this machine)."""
    from odesr.batches import holdout_files
    from odesr.train import TrainError

    try:
        return {Path(f).name for f in holdout_files(cfg, data_root)}
    except TrainError:
        hold = cfg.get("holdout") or {}
        n = int(hold.get("n_images") or 0)
        images = dataset_images(str(hold.get("dataset")), data_root)  # raises again without a table
        if n >= len(images):
            raise
        return {name for name, _, _ in images[-n:]}


def output_pixels(dataset: str, limit: int | None, scale: float, data_root: str | None) -> int:
    """Sum over the unit's images of the SR size the evaluation protocol compares at."""
    from odesr.degrade import protocol_case

    sizes = dataset_sizes(dataset, data_root)[: limit if limit is not None else None]
    total = 0
    for h, w in sizes:
        sh, sw = protocol_case(h, w, scale).sr_size
        total += sh * sw
    return total


def dataset_names(dataset: str, data_root) -> list[str]:
    from odesr.data import list_images

    return [p.stem for p in list_images(dataset, data_root)]


def protocol_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    from odesr.degrade import protocol_case

    return protocol_case(hw[0], hw[1], scale).sr_size


def train_flops(plan: ModelPlan) -> float:
    """Forward FLOPs of training ``plan`` (steps x batch pixels x NFE per sample x FLOPs per
    pixel averaged over the training scales); 0 for an untrained model."""
    cfg = plan.train_cfg
    if cfg is None:
        return 0.0
    return int(cfg["max_steps"]) * step_flops(cfg, lambda s: flops_per_pixel(plan, s))


def step_flops(cfg: dict, fpp: Callable[[float], float] | None = None) -> float:
    """Forward FLOPs of one training step of ``cfg``: batch x patch^2 output pixels x NFE per
    sample x FLOPs per pixel (``fpp``, default that of ``cfg["model"]``) averaged over the
    training scales."""
    fpp = fpp or (lambda s: spec_flops_per_pixel(cfg["model"], s))
    scales = [float(s) for s in cfg["scales"]]
    mean_fpp = sum(fpp(s) for s in scales) / len(scales)
    px = int(cfg["batch_size"]) * int(cfg["patch_size"]) ** 2
    return px * train_nfe_per_step(cfg) * mean_fpp
