"""``python -m bench plan EXPERIMENT --profile P``: what a run trains and evaluates, and its cost.

For every checkpoint to train and every evaluation unit: NFE (backbone evaluations; fixed-step
solvers: steps x stages, x8 for the self-ensemble), FLOPs, and projected hours

* on this CPU, one thread per process, from this machine's calibration
  ``bench/calibration/<cpu model>-torch<version>.json`` (``--calibrate``, :func:`calibrate`:
  real training steps and evaluations timed here, so start-up, decoding, sampler, optimizer,
  EMA, clipping, solver and metrics are all in); without one, from the convolution throughput
  (GFLOP/s) in ``bench/costs.yaml`` (``--measure``), which counts convolutions only and says so;
* on the GPU recorded in ``bench/costs.yaml`` (which one, when, from which rows).

``python -m bench plan --price -- odesr train|eval ...`` prices one command line (parsed by
odesr's own parser) and ends with ``estimate: N s``; ``--check`` prices, runs and times two.

FLOPs per NFE are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the real
model built from its spec, on meta tensors (no compute), per output pixel, at each scale for
models that work at LR size. Training: ``max_steps x batch x patch^2`` output pixels per step,
NFE per step averaged over the training scales, backward counted as ``train_factor`` x forward
(measured, ``bench/costs.yaml``); validation during training is not counted. Adaptive solvers
(dopri5) take the mean NFE recorded for that setting in committed results when there is one,
else :data:`ASSUMED_ADAPTIVE_NFE` (flagged ``~``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.experiment import Experiment, ModelPlan, Unit, load_experiment, solver_label
from odesr.cli import HelpFormatter

__all__ = ["COSTS", "Costs", "plan_experiment", "format_plan", "dataset_images", "main"]

COSTS = Path(__file__).with_name("costs.yaml")
ASSUMED_ADAPTIVE_NFE = 26  # dopri5 at rtol 1e-3 from x4, a few rejected steps (6 stages/step)
PROBE_LR = 16  # side of the LR probe the FLOPs are counted on


@dataclass
class Costs:
    """Measured throughputs (GFLOP/s per backbone) with where and when they were measured."""

    cpu: dict
    gpu: dict | None
    busy: dict | None = None

    @classmethod
    def load(cls, path: str | Path = COSTS) -> Costs:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        return cls(raw["cpu"], raw.get("gpu"), raw.get("cpu_busy"))

    @staticmethod
    def seconds(where: dict, flops: float, backbone: str, train: bool = False) -> float:
        rate = where["gflops"].get(backbone) or min(where["gflops"].values())
        factor = float(where.get("train_factor", 3.0)) if train else 1.0
        return flops * factor / (float(rate) * 1e9)


# ----------------------------------------------------------------------------- FLOPs


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
    scales = getattr(_model_for_spec(spec), "supported_scales", None)
    return _flops_per_pixel(_spec_key(spec), scale, scales is not None and len(scales) <= 2)


def _spec_key(spec: dict) -> str:
    return "spec:" + json.dumps(spec, sort_keys=True, default=str)


def _model_for_spec(spec: dict):
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


# ----------------------------------------------------------------------------- NFE


def _solver_nfe(opts: dict, scale: float) -> int | None:
    """NFE of one solve from ``scale`` (None: adaptive), via :class:`odesr.ode.SolverSettings`."""
    from odesr.ode import SolverSettings

    return SolverSettings.from_dict(opts).nfe(scale)


def _is_ode(plan: ModelPlan) -> bool:
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
    if not _is_ode(plan):
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


# ----------------------------------------------------------------------------- images


@functools.cache
def _sizes(dataset: str, data_root: str | None) -> tuple[tuple[int, int], ...]:
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


def _holdout_names(cfg: dict, data_root: str | None) -> set[str]:
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

    sizes = _sizes(dataset, data_root)[: limit if limit is not None else None]
    total = 0
    for h, w in sizes:
        sh, sw = protocol_case(h, w, scale).sr_size
        total += sh * sw
    return total


# ----------------------------------------------------------------------------- the plan


@dataclass
class TrainRow:
    model: str
    key: str
    backbone: str
    steps: int
    samples: str
    nfe: float
    flops: float
    cfg: dict | None = None  # the training config, for the calibrated price


@dataclass
class EvalRow:
    model: str
    backbone: str
    solver: str
    dataset: str
    scales: list[float]
    images: int
    nfe: list[float]
    exact: bool
    flops: float
    mpx: float = 0.0  # output megapixels over the units (network input and metrics)
    hr_mpx: float = 0.0  # HR megapixels decoded, once per unit


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


def plan_experiment(exp: Experiment, profile: str, data_root: str | None = None) -> tuple:
    """(training rows, evaluation rows grouped per model/solver/dataset)."""
    units: list[Unit] = exp.units(profile)
    train: dict[str, TrainRow] = {}
    for unit in units:
        plan = unit.model
        cfg = plan.train_cfg
        if cfg is None or plan.key in train:
            continue
        per_step = train_nfe_per_step(cfg)
        flops = train_flops(plan)
        samples = f"{int(cfg['batch_size'])} x {int(cfg['patch_size'])}px"
        label = plan.id
        if plan.only_scales and len(plan.only_scales) == 1 and "config_per_scale" in plan.entry:
            label += f" x{plan.only_scales[0]:g}"
        train[plan.key] = TrainRow(
            label, plan.key, backbone_of(plan), int(cfg["max_steps"]), samples, per_step, flops, cfg
        )
    groups: dict[tuple, EvalRow] = {}
    for unit in units:
        plan = unit.model
        label = solver_label(unit.solver) if _is_ode(plan) else "-"
        gkey = (unit.sweep, plan.id, plan.key, label, unit.dataset, unit.limit)
        n_images = len(_sizes(unit.dataset, data_root)[: unit.limit])
        nfe, exact = nfe_per_image(plan, unit.solver, unit.scale)
        px = output_pixels(unit.dataset, unit.limit, unit.scale, data_root)
        flops = nfe * px * flops_per_pixel(plan, unit.scale) if nfe else 0.0
        row = groups.get(gkey)
        if row is None:
            row = groups[gkey] = EvalRow(
                plan.id, backbone_of(plan), label, str(unit.dataset), [], n_images, [], True, 0.0
            )
        row.scales.append(float(unit.scale))
        row.nfe.append(nfe)
        row.exact &= exact
        row.flops += flops
        row.mpx += px / 1e6
        row.hr_mpx += sum(h * w for h, w in _sizes(unit.dataset, data_root)[: unit.limit]) / 1e6
    return list(train.values()), list(groups.values())


def _hours(seconds: float) -> str:
    h = seconds / 3600
    if h >= 100:
        return f"{h:,.0f}"
    return f"{h:.3g}" if h >= 0.001 else "<0.001"


def _flops(x: float) -> str:
    return f"{x:.3g}" if x else "0"


def _scales_text(scales: list[float]) -> str:
    s = sorted(set(scales))
    if len(s) > 3:
        return f"{s[0]:g}..{s[-1]:g} ({len(s)})"
    return ",".join(f"{x:g}" for x in s)


def _nfe_text(nfe: list[float], exact: bool) -> str:
    lo, hi = min(nfe), max(nfe)
    text = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return text if exact else f"~{text}"


def format_plan(
    exp: Experiment,
    profile: str,
    costs: Costs,
    data_root: str | None,
    cal: dict | None = None,
    share: float | None = None,
) -> str:
    """The plan: CPU hours from ``cal`` (default :func:`cost_model`: this machine's calibration,
    else the FLOP model), per process on a free core and, in the total, also at ``share`` of a
    core when given (the CLI measures it, :func:`core_share`); GPU hours from the FLOP model of
    ``costs``."""
    train, evals = plan_experiment(exp, profile, data_root)
    cpu, gpu = costs.cpu, costs.gpu
    if cal is None:
        cal, model_line = cost_model(costs)
    else:
        model_line = f"cost model: {cal.get('path', 'given calibration')}"
    calibrated = cal.get("kind") != "flop-model"
    lines = [f"bench plan {exp.name} --profile {profile}", ""]
    lines += textwrap.wrap(model_line, 96, subsequent_indent="  ")
    if calibrated:
        lines.append(
            "  CPU h: one thread per process on a free core (bench.train_all --jobs N gives each "
            "of N workers cores // N threads); start-up, decoding, per-step and per-image costs "
            "included"
        )
    lines += [
        "",
        "GPU throughputs (bench/costs.yaml):" if calibrated else "throughputs (bench/costs.yaml):",
    ]

    def where(label: str, entry: dict, name: str) -> None:
        rates = ", ".join(f"{b} {v:g}" for b, v in entry["gflops"].items())
        lines.append(f"  {label:<4} {name}, measured {entry['measured']}: {rates} GFLOP/s")
        lines.extend(
            textwrap.wrap(
                entry["how"], 92, initial_indent=" " * 7 + "how: ", subsequent_indent=" " * 12
            )
        )
        lines.append(f"       training = {float(entry['train_factor']):g} x forward FLOPs time")

    if not calibrated:
        where("CPU", cpu, cpu["machine"])
    if costs.busy and not calibrated:
        ratio = min(cpu["gflops"][b] / v for b, v in costs.busy["gflops"].items())
        rates = ", ".join(f"{b} {v:g}" for b, v in costs.busy["gflops"].items())
        when = f"{costs.busy['measured']}, {costs.busy['how'].split('; ')[-1]}"
        lines.append(f"       busy (measured {when}): {rates} GFLOP/s, {ratio:.0f}x+ slower")
    if gpu:
        where("GPU", gpu, gpu["name"])
    else:
        lines.append("  GPU  no measurement recorded in bench/costs.yaml")
    lines.append("")
    tot = {"cpu": 0.0, "gpu": 0.0}

    def both(r: TrainRow | EvalRow, is_train: bool) -> tuple[str, str]:
        if is_train:
            c = price_training(r.cfg, cal, data_root, startup=False).seconds
        else:
            co = _coeffs(cal, "eval", r.backbone, [])
            c = r.hr_mpx * float(cal["decode_s_per_mpx"]["eval"]) + r.mpx * float(co["s_per_mpx"])
            c += r.flops / 1e9 * float(co["s_per_gflop"])
        g = Costs.seconds(gpu, r.flops, r.backbone, is_train) if gpu else math.nan
        tot["cpu"] += c
        tot["gpu"] += 0 if math.isnan(g) else g
        return _hours(c), ("-" if math.isnan(g) else _hours(g))

    lines.append(f"train: {len(train)} checkpoints")
    header = f"  {'model':<16} {'steps':>8} {'batch':>10} {'NFE/sample':>10} {'FLOPs':>12}"
    lines.append(header + f" {'CPU h':>9} {'GPU h':>8}")
    for r in train:
        c, g = both(r, True)
        lines.append(
            f"  {r.model:<16} {r.steps:>8} {r.samples:>10} {r.nfe:>10.3g} {_flops(r.flops):>12}"
            f" {c:>9} {g:>8}"
        )
    n_units = sum(len(r.scales) for r in evals)
    lines.append("")
    lines.append(f"evaluate: {n_units} units (model x solver x dataset x scale)")
    lines.append(
        f"  {'model':<16} {'solver':<14} {'dataset':<8} {'scales':<15} {'images':>6} "
        f"{'NFE/image':>10} {'FLOPs':>12} {'CPU h':>9} {'GPU h':>8}"
    )
    for r in evals:
        c, g = both(r, False)
        lines.append(
            f"  {r.model:<16} {r.solver:<14} {r.dataset:<8} {_scales_text(r.scales):<15} "
            f"{r.images:>6} {_nfe_text(r.nfe, r.exact):>10} {_flops(r.flops):>12} {c:>9} {g:>8}"
        )
    if any(not r.exact for r in evals):
        lines.append(f"  ~: adaptive solver, NFE assumed {ASSUMED_ADAPTIVE_NFE} per image")
    lines.append("")
    gpu_text = f", {_hours(tot['gpu'])} h on the {gpu['name']}" if gpu else ""
    if calibrated:
        how = "one thread per process on a free core, calibrated"
        if share:
            how += f"; {_hours(tot['cpu'] / share)} h at the {share:.2g} of a core a process gets"
    else:
        how = "FLOP model, quiet: optimistic"
    lines.append(f"total: {_hours(tot['cpu'])} h on this CPU ({how}){gpu_text}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration

CALIBRATION_DIR = Path(__file__).with_name("calibration")
FAMILIES = ("vdsr", "rdn")  # the backbone families calibrated, by their cpu-profile ODE model
CALIBRATION_IMAGES = 2  # B100 images per evaluation probe
CALIBRATION_STEPS = {"vdsr": 12, "rdn": 5}  # training steps timed after 2 warm-up steps
CALIBRATION_BATCHES = (8, 2)  # two batch sizes per family: per-step and per-FLOP costs apart


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() or c == "." else " " for c in text).lower().split())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` knows)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_kind(device: str = "cpu") -> str:
    """``<cpu model or gpu name>-torch<version>``, lower case, the name of a calibration file."""
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_model()
    return f"{_slug(name)}-torch{_slug(str(torch.__version__))}"


def calibration_path(kind: str | None = None) -> Path:
    return CALIBRATION_DIR / f"{kind or device_kind()}.json"


def load_calibration(kind: str | None = None) -> dict | None:
    """The stored calibration of ``kind`` (default: this CPU and torch); None when there is none
    (calibrate with ``python -m bench plan --calibrate``)."""
    path = calibration_path(kind)
    if not path.is_file():
        return None
    cal = json.loads(path.read_text(encoding="utf-8"))
    cal["path"] = str(path.relative_to(CALIBRATION_DIR.parent.parent))
    return cal


def family_of(spec: dict | None) -> str:
    """The backbone family of a model spec: its registered backbone (``vdsr``, ``rdn``, ...:
    :func:`odesr.models.backbone_of`), or ``none`` (bicubic)."""
    from odesr.models import backbone_of

    return backbone_of(spec) or "none"


def _fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of the line through two points (x, y), both kept >= 0 (noise): a
    negative slope gives a flat line at the mean, a negative intercept a line through 0 (least
    squares)."""
    (x0, y0), (x1, y1) = sorted(points)
    slope = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
    if slope <= 0:
        return (y0 + y1) / 2, 0.0
    if y0 - slope * x0 < 0:
        return 0.0, (x0 * y0 + x1 * y1) / (x0 * x0 + x1 * x1)
    return y0 - slope * x0, slope


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    import resource

    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Meter:
    """Wall and CPU seconds of timed calls, each returned and all summed (their ratio: the
    share of a core this process got)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __call__(self, fn: Callable, *args, **kwargs) -> tuple[object, float, float]:
        """``(fn(*args, **kwargs), wall seconds, CPU seconds)``."""
        import time

        cpu0, start = _cpu_seconds(), time.perf_counter()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
        self.wall += wall
        self.cpu += cpu
        return out, wall, cpu


STARTUP_CODE = (
    "import odesr.cli, odesr.evaluate, odesr.models, odesr.train, odesr.tensorboard_log\n"
    "try:\n    from torch.utils.tensorboard import SummaryWriter\n"
    "except ImportError:\n    pass\n"
    "odesr.models.build({'name': 'vdsr-ode', 'preset': 'smoke'})\n"
)  # what a command does before its work: imports, and a first model build (torch's lazy imports)


def _startup() -> None:
    """A fresh one-thread interpreter running :data:`STARTUP_CODE`."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", STARTUP_CODE], env=env, check=True)


def core_share(seconds: float = 2.0) -> float:
    """The share of a core a one-thread process gets now, in (0, 1]: CPU / wall seconds of a
    busy loop of ``seconds``. 1 on a free core, less where other processes compete for the
    cores; a command's wall seconds are its CPU seconds (the calibration's unit) / this share."""
    import time

    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        sum(range(10_000))
    share = (time.process_time() - cpu0) / (time.perf_counter() - start)
    return min(max(share, 0.01), 1.0)


def _train_cpu(meter: _Meter, cfg: dict, data_root: str | None, steps: int) -> float:
    """CPU seconds of a real :func:`odesr.train.train` call of ``steps`` steps of ``cfg`` in a
    temporary run directory, checkpoints at the end only."""
    import tempfile

    from odesr.train import train

    cfg = {**cfg, "max_steps": steps, "checkpoint_every": 0}
    with tempfile.TemporaryDirectory(prefix="odesr-calibrate-") as tmp:
        return meter(train, cfg, tmp, device="cpu", data_root=data_root, progress=False)[2]


def _eval_images(model, images: list, scale: float, steps: int) -> None:
    """:func:`odesr.evaluate.evaluate_images` of ``model`` with ``steps`` Euler steps."""
    from odesr.evaluate import EvalSettings, evaluate_images

    solver = model.solver_settings({"method": "euler", "steps": steps})
    evaluate_images(model, images, [scale], EvalSettings(solver=solver, batch_size=16))


def calibrate(data_root: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Measure this machine with one torch thread and return its calibration.

    Real work, timed in CPU seconds of one thread (what a free core would take; steadier than
    wall seconds under load, see :func:`core_share`): start-up of a fresh
    interpreter (:data:`STARTUP_CODE`); decoding (T91, B100 images); training
    (:func:`odesr.train.train` runs of the cpu-profile ODE model of each family on Set5 at batch
    8 and 2, of 2 and 2 + K steps: their difference gives seconds per step = ``step_s +
    s_per_gflop x forward GFLOP per step``, the 2-step run less its steps and decoding the fixed
    cost of a run ``run_s``: model, first-step warm-up, checkpoints); evaluation
    (:func:`odesr.evaluate.evaluate_images` of the same nets, random weights, on B100 images at
    x3 with one and four Euler steps; one least-squares fit of seconds per image and scale =
    ``s_per_mpx x output Mpx + s_per_gflop[family] x forward GFLOP``)."""
    import time

    import numpy as np
    import torch

    from odesr.batches import load_training_images
    from odesr.data import list_images, load_images
    from odesr.models import build
    from odesr.train import load_config

    load0, meter = os.getloadavg()[0], _Meter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, _, startup = meter(_startup)
        imgs, _, cpu = meter(load_training_images, ["T91"], data_root)
        decode_train = cpu / (sum(int(i.shape[-1]) * int(i.shape[-2]) for i in imgs) / 1e6)
        files = list_images("B100", data_root)[:CALIBRATION_IMAGES]
        images, _, cpu = meter(load_images, files)
        decode_eval = cpu / (sum(int(m.rgb.shape[-1]) * int(m.rgb.shape[-2]) for m in images) / 1e6)
        set5 = sum(h * w for h, w in _sizes("Set5", data_root)) / 1e6 * decode_train
        scale = 3.0
        out_mpx = (
            sum(
                math.prod(_protocol_size((int(m.rgb.shape[-2]), int(m.rgb.shape[-1])), scale))
                for m in images
            )
            / 1e6
        )
        train, run_s, rows, ys = {}, [], [], []
        for k, fam in enumerate(FAMILIES):
            cfg = load_config(f"cpu/{fam}-ode", [])
            cfg.update(data=["Set5"], holdout={"dataset": None, "n_images": 0})
            cfg["val"] = {**cfg["val"], "every": 0}
            if k == 0:  # untimed: the first call's one-time imports belong to start-up
                _train_cpu(_Meter(), {**cfg, "batch_size": 1}, data_root, 1)
            points, n = [], CALIBRATION_STEPS[fam]
            for batch in CALIBRATION_BATCHES:
                part = {**cfg, "batch_size": batch}
                short = _train_cpu(meter, part, data_root, 2)  # warm-up steps, checkpoints
                step = (_train_cpu(meter, part, data_root, 2 + n) - short) / n
                points.append((step_flops(part) / 1e9, step))
                run_s.append(short - 2 * step - set5)
            a, b = _fit_line(points)
            train[fam] = {"step_s": a, "s_per_gflop": b, "points": points}
            model = build(dict(cfg["model"])).eval()
            gflop = out_mpx * 1e6 * spec_flops_per_pixel(cfg["model"], scale) / 1e9
            for n in (1, 4):
                _, _, cpu = meter(_eval_images, model, images, scale, n)
                rows.append(
                    [out_mpx] + [n * gflop if j == k else 0.0 for j in range(len(FAMILIES))]
                )
                ys.append(cpu)
            log(f"  {fam}: train {points[0][1]:.3f} s/step at batch 8, eval {ys[-1]:.2f} s (CPU)")
        coef = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0]
        if coef[0] < 0:  # noise: all of it per FLOP
            coef = np.concatenate(
                [[0.0], np.linalg.lstsq(np.array(rows)[:, 1:], ys, rcond=None)[0]]
            )
    finally:
        torch.set_num_threads(threads)
    cal: dict = {
        "kind": device_kind(),
        "cpu": cpu_model(),
        "torch": str(torch.__version__),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "threads": 1,
        "cores": os.cpu_count(),
        "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "cpu_share": round(meter.cpu / meter.wall, 3),
        "seconds": round(meter.wall, 1),
        "how": "CPU seconds of real work with one torch thread, i.e. wall seconds on a free "
        "core (cpu_share: the share of a core the calibration got at that load average)",
        "startup_s": round(startup, 3),
        "decode_s_per_mpx": {
            "train": round(decode_train, 4),
            "eval": round(decode_eval, 4),
        },
        "train": {"run_s": round(max(sum(run_s) / len(run_s), 0.0), 3)},
        "eval": {},
    }
    for fam, t in train.items():
        cal["train"][fam] = {
            "step_s": round(t["step_s"], 5),
            "s_per_gflop": round(t["s_per_gflop"], 6),
            "cpu_points": [[round(x, 3), round(y, 4)] for x, y in t["points"]],
        }
    for j, fam in enumerate(FAMILIES):
        cal["eval"][fam] = {
            "s_per_mpx": round(max(float(coef[0]), 0.0), 5),
            "s_per_gflop": round(max(float(coef[1 + j]), 0.0), 6),
        }
    return cal


def save_calibration(cal: dict) -> Path:
    """Write ``cal`` to ``bench/calibration/<kind>.json`` (atomic)."""
    from odesr.io import write_text_atomic

    path = calibration_path(cal["kind"])
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in cal.items() if k != "path"}
    write_text_atomic(path, json.dumps(body, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------- pricing


@dataclass
class Estimate:
    """Seconds of one command or plan row on one thread, with the parts they add up from."""

    parts: list[tuple[str, float]]
    notes: list[str]

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.parts)


def _coeffs(cal: dict, stage: str, fam: str, notes: list[str]) -> dict:
    """The calibrated coefficients of ``fam`` (a family not calibrated: the costliest one)."""
    table = cal[stage]
    if fam in table:
        return table[fam]
    if fam != "none":
        notes.append(f"{fam}: not calibrated, priced as the costliest calibrated family")
    return max((v for k, v in table.items() if k in FAMILIES), key=lambda v: v["s_per_gflop"])


def _val_units(cfg: dict, data_root: str | None) -> list[tuple[float, float]]:
    """(output Mpx, forward GFLOP) of one validation pass during training of ``cfg``."""
    from odesr.monitor import validation_scales  # the scales odesr.monitor.validate scores

    vcfg = cfg.get("val") or {}
    if not vcfg.get("every") or not vcfg.get("dataset"):
        return []
    if vcfg["dataset"] == "holdout":
        hold = cfg.get("holdout") or {}
        sizes = list(_sizes(str(hold["dataset"]), data_root)[-int(hold["n_images"]) :])
    else:
        sizes = list(_sizes(str(vcfg["dataset"]), data_root))
    sizes = sizes[: int(vcfg.get("n_images") or 1)]
    ms = vcfg.get("max_size")
    if ms:
        sizes = [(min(h, int(ms)), min(w, int(ms))) for h, w in sizes]
    model = _model_for_spec(cfg["model"])
    solver = model.solver_settings(vcfg.get("solver") or {}) if model.is_ode else None
    out = []
    scales = validation_scales(vcfg.get("scales"), getattr(model, "supported_scales", None))
    for scale in scales:
        for h, w in sizes:
            sh, sw = _protocol_size((h, w), scale)
            nfe = _nfe(model, solver, scale)
            out.append(
                (sh * sw / 1e6, nfe * sh * sw * spec_flops_per_pixel(cfg["model"], scale) / 1e9)
            )
    return out


def _nfe(model, solver, scale: float) -> float:
    """Network evaluations of one image at ``scale`` (adaptive: :data:`ASSUMED_ADAPTIVE_NFE`)."""
    if solver is None:
        return float(getattr(model, "nfe_per_call", 1))
    n = solver.nfe(scale)
    return float(ASSUMED_ADAPTIVE_NFE if n is None else n)


def price_training(
    cfg: dict,
    cal: dict,
    data_root: str | None = None,
    from_step: int = 0,
    startup: bool = True,
) -> Estimate:
    """One-thread seconds of training ``cfg`` from ``from_step`` to ``max_steps`` with the
    calibration ``cal``: start-up, decoding the training images, the run's fixed cost (model,
    checkpoints), the steps and the validation passes."""
    notes: list[str] = []
    fam = family_of(cfg["model"])
    co = _coeffs(cal, "train", fam, notes)
    steps = max(int(cfg["max_steps"]) - int(from_step), 0)
    gflop = step_flops(cfg) / 1e9
    per_step = float(co["step_s"]) + float(co["s_per_gflop"]) * gflop
    from odesr.data import DataError

    missing: list[str] = []  # training sets neither here nor in bench/image_sizes.tsv
    try:
        held = _holdout_names(cfg, data_root)
    except DataError:
        held = set()
    mpx = 0.0
    for name in cfg["data"]:
        try:
            images = dataset_images(name, data_root)
        except DataError:
            missing.append(str(name))
            continue
        for path, h, w in images:
            mpx += 0 if Path(path).name in held else h * w / 1e6
    if missing:
        notes.append(
            f"{', '.join(missing)} not on this machine (sizes unknown): decoding those training "
            "images and validating on them are not priced"
        )
    parts = []
    if startup:
        parts.append(("start-up (python, imports)", float(cal["startup_s"])))
    parts.append(
        (f"decode training images ({mpx:.1f} Mpx)", mpx * cal["decode_s_per_mpx"]["train"])
    )
    parts.append(("model, optimizer, checkpoints", float(cal["train"]["run_s"])))
    parts.append(
        (
            f"{steps} steps x {per_step:.4g} s ({fam}: {float(co['step_s']):.3g} s + "
            f"{float(co['s_per_gflop']):.3g} s/GFLOP x {gflop:.3g} GFLOP)",
            steps * per_step,
        )
    )
    every = int((cfg.get("val") or {}).get("every") or 0)
    n_val = (int(cfg["max_steps"]) // every - int(from_step) // every) if every else 0
    if n_val:
        ev = _coeffs(cal, "eval", fam, notes)
        try:
            units = _val_units(cfg, data_root)
        except DataError:
            units = []
            if not missing:
                notes.append("the validation images are not on this machine: not priced")
        one = sum(m * ev["s_per_mpx"] + g * ev["s_per_gflop"] for m, g in units)
        parts.append((f"{n_val} validation passes", n_val * one))
    return Estimate(parts, notes)


def price_evaluation(
    model,
    spec: dict | None,
    solver,
    datasets: Sequence[str],
    scales: Sequence[float],
    cal: dict,
    data_root: str | None = None,
    limit: int | None = None,
    protocol: str | None = None,
    ensemble: bool = False,
    startup: bool = True,
) -> Estimate:
    """One-thread seconds of evaluating ``model`` (built from ``spec``; None: parameter-free)
    with ``solver`` on ``datasets`` x ``scales``: start-up, decoding, and per image and scale
    ``s_per_mpx x output Mpx + s_per_gflop x forward GFLOP`` of the model's family."""
    from odesr.degrade import DEFAULT_PROTOCOL, protocol_case

    notes: list[str] = []
    fam = family_of(spec)
    co = _coeffs(cal, "eval", fam, notes)
    parts = [("start-up (python, imports, model)", float(cal["startup_s"]))] if startup else []
    for dataset in datasets:
        sizes = _sizes(dataset, data_root)[:limit]
        hr = sum(h * w for h, w in sizes) / 1e6
        mpx = gflop = 0.0
        for scale in scales:
            nfe = _nfe(model, solver, scale) * (8 if ensemble else 1) if spec else 0.0
            fpp = spec_flops_per_pixel(spec, scale) if spec and nfe else 0.0
            for h, w in sizes:
                sh, sw = protocol_case(h, w, scale, protocol or DEFAULT_PROTOCOL).sr_size
                mpx += sh * sw / 1e6
                gflop += nfe * sh * sw * fpp / 1e9
        parts.append(
            (f"decode {dataset} ({len(sizes)} images)", hr * cal["decode_s_per_mpx"]["eval"])
        )
        parts.append(
            (
                f"{dataset}: {len(sizes)} images x {len(scales)} scales ({mpx:.2f} Mpx x "
                f"{co['s_per_mpx']:.3g} s + {gflop:.3g} GFLOP x {co['s_per_gflop']:.3g} s, {fam})",
                mpx * float(co["s_per_mpx"]) + gflop * float(co["s_per_gflop"]),
            )
        )
    return Estimate(parts, notes)


def flop_calibration(costs: Costs) -> dict:
    """The FLOP model of ``bench/costs.yaml`` (convolution FLOPs only, no overheads, the
    threads it was measured with) in the form of a calibration: the fallback."""
    cpu = costs.cpu
    factor = float(cpu.get("train_factor", 3.0))
    rate = {f: float(cpu["gflops"].get(f) or min(cpu["gflops"].values())) for f in FAMILIES}
    return {
        "kind": "flop-model",
        "path": "bench/costs.yaml",
        "threads": None,
        "startup_s": 0.0,
        "decode_s_per_mpx": {"train": 0.0, "eval": 0.0},
        "train": {
            "run_s": 0.0,
            **{f: {"step_s": 0.0, "s_per_gflop": factor / rate[f]} for f in FAMILIES},
        },
        "eval": {f: {"s_per_mpx": 0.0, "s_per_gflop": 1.0 / rate[f]} for f in FAMILIES},
    }


def cost_model(costs: Costs | None = None) -> tuple[dict, str]:
    """(calibration, one line saying which): this machine's stored calibration, else the FLOP
    model of ``bench/costs.yaml`` with a line saying how to calibrate."""
    cal = load_calibration()
    if cal is not None:
        load = "-".join(f"{x:g}" for x in cal.get("loadavg") or [])
        return cal, (
            f"cost model: {cal['path']} (measured {cal['measured']}: CPU seconds of one thread, "
            f"with {cal.get('cpu_share', 1):g} of a core at load average {load})"
        )
    have = ", ".join(sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))) or "none"
    return flop_calibration(costs or Costs.load()), (
        f"cost model: FLOP model of bench/costs.yaml (convolution FLOPs only, no overheads: "
        f"optimistic). No calibration for {device_kind()} (stored: {have}); run "
        "`python -m bench plan --calibrate`"
    )


PRICED = ("train", "eval")


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of an ``odesr train|eval`` command line, parsed by odesr's own parser.

    Leading ``VAR=value`` words and ``odesr`` / ``python -m odesr[.cli]`` are skipped. ``odesr
    eval`` without ``--out`` gets a placeholder: pricing writes nothing. A command odesr would
    refuse exits 2 with odesr's message."""
    from odesr.cli import build_parser

    words = list(argv)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    if words and Path(words[0]).name == "odesr":
        words = words[1:]
    elif len(words) >= 3 and words[1] == "-m" and words[2] in ("odesr", "odesr.cli"):
        words = words[3:]
    if not words or words[0] not in PRICED:
        raise ValueError(f"--price: expected `odesr {' | '.join(PRICED)} ...`, got {argv!r}")
    if words[0] == "eval" and not any(w == "--out" or w.startswith("--out=") for w in words):
        words += ["--out", os.devnull]
    return build_parser(None).parse_args(words)


def price_command(argv: Sequence[str], cal: dict, data_root: str | None = None) -> Estimate:
    """One-thread seconds of an ``odesr train|eval`` command line (:func:`parse_command`)."""
    args = parse_command(argv)
    data_root = args.data_root or data_root
    notes = []
    if str(args.device).startswith("cuda"):
        notes.append("--device cuda: priced as this CPU (calibrate on the GPU machine instead)")
    if args.command == "train":
        from odesr.multiseed import parse_seeds, seed_dirs
        from odesr.train import run_config
        from odesr.train_state import read_checkpoint

        cfg, out = run_config(args)
        seeds = parse_seeds(args.seeds) if getattr(args, "seeds", None) else []
        last = (seed_dirs(out, seeds)[0] if seeds else out) / "last.pt"
        from_step = int(read_checkpoint(last)[1]["step"]) if args.resume and last.exists() else 0
        est = price_training(cfg, cal, data_root, from_step)
        if len(seeds) > 1:  # trained together: every step and validation pass for each seed
            est.parts = [
                (f"{label}, x{len(seeds)} seeds", sec * len(seeds))
                if label.split(" ")[0].isdigit()
                else (label, sec)
                for label, sec in est.parts
            ]
            notes.append(f"--seeds: {len(seeds)} seeds trained together, priced as {len(seeds)}x")
    else:
        from odesr.checkpoints import load_model
        from odesr.evaluate import parse_scales

        model = load_model(args.model if args.model is not None else Path(args.checkpoint), "cpu")
        given = {"method": args.solver, "steps": args.steps, "step_size": args.step_size}
        given.update(rtol=args.rtol, atol=args.atol)
        given = {k: v for k, v in given.items() if v is not None}
        solver = model.solver_settings(given) if model.is_ode else None
        if args.tile is not None:
            notes.append("--tile: the tiles' overlap is not priced")
        est = price_evaluation(
            model,
            dict(model.spec),
            solver,
            args.dataset,
            parse_scales(args.scales),
            cal,
            data_root,
            args.limit,
            args.protocol,
        )
    est.notes[:0] = notes
    return est


def format_estimate(argv: Sequence[str], est: Estimate, model_line: str, share: float) -> str:
    """The ``--price`` report: the parts in CPU seconds (a free core), the share of a core a
    process gets (:func:`core_share`), and last ``estimate: N s``, the wall seconds of one
    thread at that share."""
    import shlex

    lines = [f"price: {shlex.join(argv)}", *textwrap.wrap(model_line, 96, subsequent_indent="  ")]
    width = max(len(label) for label, _ in est.parts)
    lines += [f"  {label:<{width}} {sec:10.1f} s" for label, sec in est.parts]
    lines += [f"  note: {n}" for n in est.notes]
    lines.append(f"one thread on a free core: {est.seconds:.1f} s")
    lines.append(f"share of a core a process gets now: {share:.3g} ({_load_text()})")
    lines.append(f"estimate: {est.seconds / share:.1f} s")
    return "\n".join(lines)


def _load_text() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "no load average"


# ----------------------------------------------------------------------------- measuring


def measure_cpu(threads: int | None = None) -> dict:
    """Conv throughput of the paper backbones here: forward GFLOP/s and (fwd+bwd)/fwd."""
    import os
    import platform
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from odesr.nets import build_backbone

    if threads:
        torch.set_num_threads(threads)
    x = torch.rand(1, 4, 64, 64)
    gflops, factors = {}, []
    for backbone in ("vdsr", "rdn"):
        net = build_backbone(backbone, "paper", in_ch=4, out_ch=3)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        flops = fc.get_total_flops()

        def best(fn, n=3):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        with torch.no_grad():
            fwd = best(lambda net=net: net(x))
        fb = best(lambda net=net: net(x).square().mean().backward())
        gflops[backbone] = round(flops / fwd / 1e9, 1)
        factors.append(fb / fwd)
    load = os.getloadavg()[0]
    return dict(
        machine=f"{platform.machine()} x{torch.get_num_threads()} threads, torch "
        f"{torch.__version__}",
        measured=time.strftime("%Y-%m-%d"),
        how=f"paper VDSR/RDN backbones, 64x64 input, best of 3; load average {load:.1f}",
        gflops=gflops,
        train_factor=round(sum(factors) / len(factors), 2),
    )


def throughput_from_results(csv: str | Path, experiment: str, profile: str, data_root) -> dict:
    """Effective GFLOP/s per backbone of recorded evaluation rows (sum FLOPs / sum seconds)."""
    import pandas as pd

    from bench.runner import REPO

    df = pd.read_csv(csv)
    df = df[df["nfe"] > 0]
    exp = load_experiment(experiment)
    plans = {m: exp.model_plans(m, profile) for m in exp.model_ids()}
    flops: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    for (model, dataset, image, scale), g in df.groupby(["model", "dataset", "image", "scale"]):
        key = round(float(scale), 6)
        cands = [p for p in plans.get(model, []) if not p.only_scales or key in p.only_scales]
        plan = cands[0] if cands else None
        if plan is None or plan.ensemble:
            continue
        sizes = dict(zip(_names(dataset, data_root), _sizes(dataset, data_root), strict=True))
        sh, sw = _protocol_size(sizes[str(image)], float(scale))
        b = backbone_of(plan)
        flops[b] += float(g["nfe"].mean()) * sh * sw * flops_per_pixel(plan, float(scale))
        seconds[b] += float(g["seconds"].mean())
    rel = Path(csv).resolve().relative_to(REPO) if Path(csv).resolve().is_relative_to(REPO) else csv
    return dict(
        device=str(df["device"].iloc[0]),
        gflops={b: round(flops[b] / seconds[b] / 1e9, 1) for b in flops if seconds[b] > 0},
        rows=f"{rel}: {len(df)} rows",
    )


def _names(dataset: str, data_root) -> list[str]:
    from odesr.data import list_images

    return [p.stem for p in list_images(dataset, data_root)]


def _protocol_size(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    from odesr.degrade import protocol_case

    return protocol_case(hw[0], hw[1], scale).sr_size


CHECK_COMMANDS = (
    ("odesr", "train", "cpu/vdsr-ode", "--max-steps", "200"),
    (
        "odesr",
        "eval",
        "--checkpoint",
        "odesr/weights/vdsr-ode-cpu.pt",
        "--dataset",
        "B100",
        "--limit",
        "10",
        "--scales",
        "2,3,4",
    ),
)


def run_timed(argv: Sequence[str], data_root: str | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of an ``odesr train|eval`` command run with ``OMP_NUM_THREADS=1``,
    its ``--out`` in a temporary folder, no progress bar."""
    import subprocess
    import tempfile
    import time

    words = list(argv)
    start_at = next(i for i, w in enumerate(words) if w in PRICED)
    words = words[start_at:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if data_root:
        words += ["--data-root", data_root]
    with tempfile.TemporaryDirectory(prefix="odesr-check-") as tmp:
        out = Path(tmp, "run" if words[0] == "train" else "rows.csv")
        cmd = [sys.executable, "-m", "odesr.cli", *words, "--out", str(out), "--no-progress"]
        cpu0, start = _cpu_seconds(), time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, _cpu_seconds() - cpu0


def check(cal: dict, data_root: str | None = None, commands=CHECK_COMMANDS) -> list[dict]:
    """Price (at the share of a core measured just before, :func:`core_share`), then run and
    time each command with one thread. Rows ``{command, estimate, measured, ratio, cpu_estimate,
    cpu_measured, cpu_ratio, share_probe, share_run, loadavg}``: ratio = estimate / measured
    wall seconds; cpu_ratio the same in CPU seconds (the calibrated model alone, free of how
    the load moved); share_run the run's CPU / wall seconds."""
    import shlex

    rows = []
    for argv in commands:
        cpu_estimate = price_command(argv, cal, data_root).seconds
        share = core_share()
        measured, cpu = run_timed(argv, data_root)
        rows.append(
            dict(
                command=shlex.join(argv),
                estimate=round(cpu_estimate / share, 1),
                measured=round(measured, 1),
                ratio=round(cpu_estimate / share / measured, 3),
                cpu_estimate=round(cpu_estimate, 1),
                cpu_measured=round(cpu, 1),
                cpu_ratio=round(cpu_estimate / cpu, 3),
                share_probe=round(share, 3),
                share_run=round(cpu / measured, 3),
                loadavg=round(os.getloadavg()[0], 2),
            )
        )
        r = rows[-1]
        print(
            f"{r['command']}\n"
            f"  estimate {r['estimate']} s, measured {r['measured']} s, ratio {r['ratio']}\n"
            f"  CPU: estimate {r['cpu_estimate']} s, measured {r['cpu_measured']} s, ratio "
            f"{r['cpu_ratio']}; share of a core: probe {r['share_probe']}, run {r['share_run']}, "
            f"load average {r['loadavg']}",
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None, status: Callable[..., str] | None = None) -> int:
    """``python -m bench plan`` / ``python -m bench.plan``: a plan, a calibration, a price, a check,
    or the FLOP model's data (bench/costs.yaml).

    ``status``: what ``--status`` prints, :func:`bench.plan_status.format_status` (which builds on
    this module, so ``python -m bench`` passes it in); without it ``--status`` is refused with
    the command that has it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    priced: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, priced = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m bench plan",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "experiment", nargs="?", help="name under bench/experiments (table1, ...) or a YAML path"
    )
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | paper")
    parser.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    parser.add_argument(
        "--status",
        action="store_true",
        help="with EXPERIMENT: units done, to copy and to evaluate, checkpoints to train, and "
        "the hours of what is left (bench.plan_status)",
    )
    parser.add_argument("--results", default="results", help="results folder (for --status)")
    parser.add_argument(
        "--checkpoints", default="checkpoints", help="checkpoint folder (for --status)"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="time real work on this machine (one thread, ~20 CPU seconds) into "
        "bench/calibration/<cpu>-torch<version>.json",
    )
    parser.add_argument(
        "--price",
        action="store_true",
        help="price one command given after --, e.g. --price -- odesr train cpu/vdsr-ode "
        "--max-steps 200; the last line is `estimate: N s` (one thread)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="estimate, run and time (one thread) two example commands; print the ratios",
    )
    parser.add_argument(
        "--share",
        type=float,
        default=None,
        help="share of a core a process gets, for wall seconds (default: measured now, 2 s; "
        "1: a free core)",
    )
    parser.add_argument(
        "--measure", action="store_true", help="measure this CPU's conv GFLOP/s into costs.yaml"
    )
    parser.add_argument("--as", dest="key", default="cpu", help="costs.yaml entry to write")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--from-results",
        nargs=3,
        metavar=("CSV", "EXPERIMENT", "PROFILE"),
        help="print the effective GFLOP/s of recorded evaluation rows (e.g. a GPU's)",
    )
    args = parser.parse_args(argv)
    if priced and not args.price:
        parser.error("a command after -- needs --price")
    if args.price and not priced:
        parser.error("--price needs the command after --, e.g. --price -- odesr train cpu/vdsr-ode")
    from bench.experiment import ExperimentError

    try:
        if args.calibrate:
            print(
                f"calibrating {device_kind()} (one thread, load average {os.getloadavg()[0]:.2f})"
            )
            path = save_calibration(calibrate(args.data_root))
            print(f"wrote {path}")
        if args.price:
            cal, line = cost_model()
            est = price_command(priced, cal, args.data_root)
            print(format_estimate(priced, est, line, args.share or core_share()))
        if args.check:
            cal, line = cost_model()
            print(line)
            check(cal, args.data_root)
        if args.from_results:
            print(yaml.safe_dump(throughput_from_results(*args.from_results, args.data_root)))
        if args.measure:
            raw = yaml.safe_load(COSTS.read_text()) if COSTS.exists() else {}
            raw[args.key] = measure_cpu(args.threads)
            from odesr.io import write_text_atomic

            write_text_atomic(COSTS, yaml.safe_dump(raw, sort_keys=False))
            print(yaml.safe_dump({args.key: raw[args.key]}, sort_keys=False))
        if args.experiment and args.status:
            if status is None:
                parser.error("--status: run it as python -m bench plan EXPERIMENT --status")
            exp = load_experiment(args.experiment)
            print(status(exp, args.profile, args.results, args.checkpoints, args.data_root))
        elif args.experiment:
            exp = load_experiment(args.experiment)
            share = args.share or (core_share() if load_calibration() else None)
            print(format_plan(exp, args.profile, Costs.load(), args.data_root, share=share))
        elif not (args.calibrate or args.price or args.check or args.from_results or args.measure):
            parser.print_help()
            return 2
    except (ExperimentError, ValueError, FileNotFoundError) as exc:
        print(f"bench plan: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
