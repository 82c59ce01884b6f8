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
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml

from bench.calibrate import (
    calibrate,
    core_share,
    cost_model,
    device_kind,
    load_calibration,
    measure_cpu,
    save_calibration,
    throughput_from_results,
)
from bench.cost_model import (
    ASSUMED_ADAPTIVE_NFE,
    COSTS,
    Costs,
    backbone_of,
    dataset_images,
    dataset_sizes,
    flops_per_pixel,
    is_ode_plan,
    nfe_per_image,
    output_pixels,
    step_key,
    train_flops,
    train_nfe_per_step,
)
from bench.experiment import Experiment, Unit, load_experiment, solver_label
from bench.price import (
    check,
    coefficients,
    format_estimate,
    price_command,
    price_training,
)
from bench.profile import Profile, add_profile_arguments, profile_from_args
from odesr.cli import HelpFormatter

__all__ = ["COSTS", "Costs", "plan_experiment", "format_plan", "dataset_images", "main"]


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


def plan_experiment(exp: Experiment, profile: Profile, data_root: str | None = None) -> tuple:
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
        label = solver_label(unit.solver) if is_ode_plan(plan) else "-"
        gkey = (unit.sweep, plan.id, plan.key, label, unit.dataset, unit.limit)
        n_images = len(dataset_sizes(unit.dataset, data_root)[: unit.limit])
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
        row.hr_mpx += (
            sum(h * w for h, w in dataset_sizes(unit.dataset, data_root)[: unit.limit]) / 1e6
        )
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


def _throughput_lines(label: str, entry: dict, name: str) -> list[str]:
    """A costs.yaml entry: its GFLOP/s per backbone, how it was measured, the training factor."""
    rates = ", ".join(f"{b} {v:g}" for b, v in entry["gflops"].items())
    lines = [f"  {label:<4} {name}, measured {entry['measured']}: {rates} GFLOP/s"]
    lines += textwrap.wrap(
        entry["how"], 92, initial_indent=" " * 7 + "how: ", subsequent_indent=" " * 12
    )
    lines.append(f"       training = {float(entry['train_factor']):g} x forward FLOPs time")
    return lines


def _cost_model_lines(costs: Costs, model_line: str, calibrated: bool) -> list[str]:
    """The plan's header after its title: where CPU and GPU hours come from."""
    lines = textwrap.wrap(model_line, 96, subsequent_indent="  ")
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
    cpu, gpu = costs.cpu, costs.gpu
    if not calibrated:
        lines += _throughput_lines("CPU", cpu, cpu["machine"])
    if costs.busy and not calibrated:
        ratio = min(cpu["gflops"][b] / v for b, v in costs.busy["gflops"].items())
        rates = ", ".join(f"{b} {v:g}" for b, v in costs.busy["gflops"].items())
        when = f"{costs.busy['measured']}, {costs.busy['how'].split('; ')[-1]}"
        lines.append(f"       busy (measured {when}): {rates} GFLOP/s, {ratio:.0f}x+ slower")
    if gpu:
        lines += _throughput_lines("GPU", gpu, gpu["name"])
        if gpu.get("device_check"):
            found = len(costs.gpu_steps)
            text = (
                f"measured float32 steps/s of {found} config(s), used where a checkpoint's "
                "config is one of them (the FLOP model for the others)"
                if found
                else "no float32 training runs in it (older runs: TF32), so the FLOP model"
            )
            lines += textwrap.wrap(
                f"training: {gpu['device_check']}: {text}",
                92,
                initial_indent=" " * 7,
                subsequent_indent=" " * 12,
            )
    else:
        lines.append("  GPU  no measurement recorded in bench/costs.yaml")
    return lines


def _row_seconds(
    r: TrainRow | EvalRow, is_train: bool, cal: dict, costs: Costs, data_root: str | None
) -> tuple[float, float]:
    """(CPU seconds from the calibration, GPU seconds or NaN) of a row: a training row whose
    config the GPU's device check trained (:attr:`Costs.gpu_steps`) from its measured steps/s,
    the others from the FLOP model."""
    if is_train:
        c = price_training(r.cfg, cal, data_root, startup=False).seconds
    else:
        co = coefficients(cal, "eval", r.backbone, [])
        c = r.hr_mpx * float(cal["decode_s_per_mpx"]["eval"]) + r.mpx * float(co["s_per_mpx"])
        c += r.flops / 1e9 * float(co["s_per_gflop"])
    measured = costs.gpu_steps.get(step_key(r.cfg)) if is_train and r.cfg else None
    if measured:
        return c, r.steps / measured
    gpu = costs.gpu
    return c, (Costs.seconds(gpu, r.flops, r.backbone, is_train) if gpu else math.nan)


def _total_line(cpu_s: float, gpu_s: float, gpu: dict | None, calibrated: bool, share) -> str:
    gpu_text = f", {_hours(gpu_s)} h on the {gpu['name']}" if gpu else ""
    if calibrated:
        how = "one thread per process on a free core, calibrated"
        if share:
            how += f"; {_hours(cpu_s / share)} h at the {share:.2g} of a core a process gets"
    else:
        how = "FLOP model, quiet: optimistic"
    return f"total: {_hours(cpu_s)} h on this CPU ({how}){gpu_text}"


def format_plan(
    exp: Experiment,
    profile: Profile,
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
    if cal is None:
        cal, model_line = cost_model(costs)
    else:
        model_line = f"cost model: {cal.get('path', 'given calibration')}"
    calibrated = cal.get("kind") != "flop-model"
    lines = [f"bench plan {exp.name} --profile {profile.name}", ""]
    lines += _cost_model_lines(costs, model_line, calibrated)
    lines.append("")
    tot = {"cpu": 0.0, "gpu": 0.0}

    def both(r: TrainRow | EvalRow, is_train: bool) -> tuple[str, str]:
        c, g = _row_seconds(r, is_train, cal, costs, data_root)
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
    lines.append(_total_line(tot["cpu"], tot["gpu"], costs.gpu, calibrated, share))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    """The options of ``bench plan`` (a command to price comes after ``--``, split off first)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench plan",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "experiment", nargs="?", help="name under bench/experiments (table1, ...) or a YAML path"
    )
    add_profile_arguments(parser)  # --results, --checkpoints: read by --status
    parser.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    parser.add_argument(
        "--status",
        action="store_true",
        help="with EXPERIMENT: units done, to copy and to evaluate, checkpoints to train, and "
        "the hours of what is left (bench.plan_status)",
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
    return parser


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
    parser = _parser()
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
            csv, experiment, name = args.from_results
            found = throughput_from_results(csv, experiment, Profile(name), args.data_root)
            print(yaml.safe_dump(found))
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
            print(status(exp, profile_from_args(args), args.data_root))
        elif args.experiment:
            exp = load_experiment(args.experiment)
            share = args.share or (core_share() if load_calibration() else None)
            profile = profile_from_args(args)
            print(format_plan(exp, profile, Costs.load(), args.data_root, share=share))
        elif not (args.calibrate or args.price or args.check or args.from_results or args.measure):
            parser.print_help()
            return 2
    except (ExperimentError, ValueError, FileNotFoundError) as exc:
        print(f"bench plan: {exc}", file=sys.stderr)
        return 2
    return 0
