"""``python -m bench plan EXPERIMENT --profile P``: what a run trains and evaluates, and its cost.

For every checkpoint to train and every evaluation unit: NFE (backbone evaluations; fixed-step
solvers: steps x stages, x8 for the self-ensemble), FLOPs, and projected hours

* on this CPU, from the conv throughput (GFLOP/s) measured here and stored in
  ``bench/costs.yaml`` (``python -m bench.plan --measure`` re-measures it);
* on the GPU recorded in ``bench/costs.yaml`` (which one, when, from which rows).

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
import math
import sys
import textwrap
from collections import defaultdict
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
        from odesr.models import load

        return load(fixed_checkpoint(plan.model_spec), map_location="meta")
    return build(dict(spec))


_PLANS: dict[str, ModelPlan] = {}  # weights key -> plan, for the cached FLOP counts


def flops_per_pixel(plan: ModelPlan, scale: float) -> float:
    """FLOPs of one network evaluation (NFE) per output pixel at ``scale``.

    Networks at the output size (``input_kind == "upscaled"``): one probe, the same at every
    scale. Networks at LR size: FLOPs = a * LR pixels + b * output pixels (convs on the LR image,
    an upsampler per output pixel), fitted exactly from probes at x2 and x4 -- or probed at the
    model's own scale(s) when it has at most two."""
    _PLANS.setdefault(plan.key, plan)
    scale = round(float(scale), 6)
    model = _model(plan.key)
    if getattr(model, "input_kind", "upscaled") == "upscaled":
        flops, out_px = _probe(plan.key, 2.0)
        return flops / out_px
    if (plan.only_scales and len(plan.only_scales) <= 2) or scale in (2.0, 4.0):
        flops, out_px = _probe(plan.key, scale)
        return flops / out_px
    (f2, o2), (f4, o4) = _probe(plan.key, 2.0), _probe(plan.key, 4.0)
    per_out = (f4 - f2) / (o4 - o2)
    per_lr = (f2 - per_out * o2) / PROBE_LR**2
    out_px = math.ceil(PROBE_LR * scale) ** 2
    return (per_lr * PROBE_LR**2 + per_out * out_px) / out_px


@functools.cache
def _model(key: str):
    return _build(_PLANS[key]).to("meta").eval()


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
    spec = (plan.train_cfg or {}).get("model") or plan.model_spec or {}
    name = str(spec.get("name", ""))
    return next((b for b in ("rdn", "vdsr") if b in name), "none")


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


def train_flops(plan: ModelPlan) -> float:
    """Forward FLOPs of training ``plan`` (steps x batch pixels x NFE per sample x FLOPs per
    pixel averaged over the training scales); 0 for an untrained model."""
    cfg = plan.train_cfg
    if cfg is None:
        return 0.0
    scales = [float(s) for s in cfg["scales"]]
    fpp = sum(flops_per_pixel(plan, s) for s in scales) / len(scales)
    px = int(cfg["batch_size"]) * int(cfg["patch_size"]) ** 2
    return int(cfg["max_steps"]) * px * train_nfe_per_step(cfg) * fpp


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
            label, plan.key, backbone_of(plan), int(cfg["max_steps"]), samples, per_step, flops
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


def format_plan(exp: Experiment, profile: str, costs: Costs, data_root: str | None) -> str:
    train, evals = plan_experiment(exp, profile, data_root)
    cpu, gpu = costs.cpu, costs.gpu
    lines = [f"bench plan {exp.name} --profile {profile}", "", "throughputs (bench/costs.yaml):"]

    def where(label: str, entry: dict, name: str) -> None:
        rates = ", ".join(f"{b} {v:g}" for b, v in entry["gflops"].items())
        lines.append(f"  {label:<4} {name}, measured {entry['measured']}: {rates} GFLOP/s")
        lines.extend(
            textwrap.wrap(
                entry["how"], 92, initial_indent=" " * 7 + "how: ", subsequent_indent=" " * 12
            )
        )
        lines.append(f"       training = {float(entry['train_factor']):g} x forward FLOPs time")

    where("CPU", cpu, cpu["machine"])
    if costs.busy:
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

    def both(flops: float, backbone: str, is_train: bool) -> tuple[str, str]:
        c = Costs.seconds(cpu, flops, backbone, is_train)
        g = Costs.seconds(gpu, flops, backbone, is_train) if gpu else math.nan
        tot["cpu"] += c
        tot["gpu"] += 0 if math.isnan(g) else g
        return _hours(c), ("-" if math.isnan(g) else _hours(g))

    lines.append(f"train: {len(train)} checkpoints")
    header = f"  {'model':<16} {'steps':>8} {'batch':>10} {'NFE/sample':>10} {'FLOPs':>12}"
    lines.append(header + f" {'CPU h':>9} {'GPU h':>8}")
    for r in train:
        c, g = both(r.flops, r.backbone, True)
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
        c, g = both(r.flops, r.backbone, False)
        lines.append(
            f"  {r.model:<16} {r.solver:<14} {r.dataset:<8} {_scales_text(r.scales):<15} "
            f"{r.images:>6} {_nfe_text(r.nfe, r.exact):>10} {_flops(r.flops):>12} {c:>9} {g:>8}"
        )
    if any(not r.exact for r in evals):
        lines.append(f"  ~: adaptive solver, NFE assumed {ASSUMED_ADAPTIVE_NFE} per image")
    lines.append("")
    gpu_text = f", {_hours(tot['gpu'])} h on the {gpu['name']}" if gpu else ""
    lines.append(f"total: {_hours(tot['cpu'])} h on this CPU (quiet){gpu_text}")
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.plan --measure`` / ``--from-results``: the data of bench/costs.yaml."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.plan",
        description="Measure the throughputs `python -m bench plan` projects hours from.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--measure", action="store_true", help="measure this CPU into costs.yaml")
    parser.add_argument("--as", dest="key", default="cpu", help="costs.yaml entry to write")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--from-results",
        nargs=3,
        metavar=("CSV", "EXPERIMENT", "PROFILE"),
        help="print the effective GFLOP/s of recorded evaluation rows (e.g. a GPU's)",
    )
    parser.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    args = parser.parse_args(argv)
    if args.from_results:
        print(yaml.safe_dump(throughput_from_results(*args.from_results, args.data_root)))
        return 0
    if not args.measure:
        parser.print_help()
        return 2
    raw = yaml.safe_load(COSTS.read_text()) if COSTS.exists() else {}
    raw[args.key] = measure_cpu(args.threads)
    from odesr.io import write_text_atomic

    write_text_atomic(COSTS, yaml.safe_dump(raw, sort_keys=False))
    print(yaml.safe_dump({args.key: raw[args.key]}, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
