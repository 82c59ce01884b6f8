"""Prices: a training run or an evaluation in seconds of one thread from the calibration
(:class:`Estimate`), any ``odesr train|eval`` command line (:func:`price_command`, ``bench plan
--price -- ...``), and :func:`check`, which prices, runs and times two commands."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.calibrate import FAMILIES, core_share, cpu_seconds
from bench.cost_model import (
    ASSUMED_ADAPTIVE_NFE,
    dataset_images,
    dataset_sizes,
    family_of,
    holdout_names,
    model_for_spec,
    protocol_size,
    spec_flops_per_pixel,
    step_flops,
)

__all__ = [
    "Estimate",
    "coefficients",
    "price_training",
    "step_seconds",
    "price_evaluation",
    "PRICED",
    "parse_command",
    "price_command",
    "format_estimate",
    "CHECK_COMMANDS",
    "run_timed",
    "check",
]


@dataclass
class Estimate:
    """Seconds of one command or plan row on one thread, with the parts they add up from."""

    parts: list[tuple[str, float]]
    notes: list[str]

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.parts)


def coefficients(cal: dict, stage: str, fam: str, notes: list[str]) -> dict:
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
        sizes = list(dataset_sizes(str(hold["dataset"]), data_root)[-int(hold["n_images"]) :])
    else:
        sizes = list(dataset_sizes(str(vcfg["dataset"]), data_root))
    sizes = sizes[: int(vcfg.get("n_images") or 1)]
    ms = vcfg.get("max_size")
    if ms:
        sizes = [(min(h, int(ms)), min(w, int(ms))) for h, w in sizes]
    model = model_for_spec(cfg["model"])
    solver = model.solver_settings(vcfg.get("solver") or {}) if model.is_ode else None
    out = []
    scales = validation_scales(vcfg.get("scales"), getattr(model, "supported_scales", None))
    for scale in scales:
        for h, w in sizes:
            sh, sw = protocol_size((h, w), scale)
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


def _step_cost(cfg: dict, cal: dict, notes: list[str]) -> tuple[float, dict, float]:
    """(one-thread seconds of one training step of ``cfg``, the family's coefficients, forward
    GFLOP per step): ``step_s + s_per_gflop x GFLOP``."""
    co = coefficients(cal, "train", family_of(cfg["model"]), notes)
    gflop = step_flops(cfg) / 1e9
    return float(co["step_s"]) + float(co["s_per_gflop"]) * gflop, co, gflop


def step_seconds(cfg: dict, cal: dict) -> float:
    """One-thread seconds of one training step of one seed of ``cfg`` with the calibration
    ``cal`` (no start-up, decoding or validation)."""
    return _step_cost(cfg, cal, [])[0]


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
    per_step, co, gflop = _step_cost(cfg, cal, notes)
    steps = max(int(cfg["max_steps"]) - int(from_step), 0)
    from odesr.data import DataError

    missing: list[str] = []  # training sets neither here nor in bench/image_sizes.tsv
    try:
        held = holdout_names(cfg, data_root)
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
        ev = coefficients(cal, "eval", fam, notes)
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
    co = coefficients(cal, "eval", fam, notes)
    parts = [("start-up (python, imports, model)", float(cal["startup_s"]))] if startup else []
    for dataset in datasets:
        sizes = dataset_sizes(dataset, data_root)[:limit]
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
        cpu0, start = cpu_seconds(), time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, cpu_seconds() - cpu0


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
