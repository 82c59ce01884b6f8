"""Train every missing checkpoint of some experiments, several at a time.

``python -m bench.train_all table1 solver-ablation extrapolation --profile cpu --jobs 6``
``python -m bench.train_all table1 --profile paper --executor slurm --partition gpu
--gpus-per-node 4 --time 2-00:00:00`` (see :mod:`bench.executors`)

The runner (``python -m bench run``) trains missing checkpoints one after the other; on a machine
with many cores or a GPU this pre-trains them in parallel worker processes into the same
``checkpoints/<profile>/<model>-<hash>/`` folders, so a later ``bench run`` only evaluates. Each
worker holds the checkpoint's lock while it trains, so running this beside a sweep is safe.
``--executor submitit-local|slurm`` submits one submitit job per checkpoint instead of the pool.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time

from bench import executors
from bench.checkpoints import (
    ensure_checkpoint,
    ensure_checkpoints_together,
    seedless,
    trained_checkpoint,
)
from bench.experiment import load_experiment
from bench.profile import Profile, add_profile_arguments, profile_from_args
from odesr.arguments import DEVICE_HELP
from odesr.cli import HelpFormatter
from odesr.validate import device as checked_device


def _plans(
    experiments: list[str], profile: Profile, models: str | None = None, seeds: str | None = None
) -> list:
    """The distinct checkpoints the experiments need (every seed of their sweeps), longest
    training first (estimated FLOPs, :func:`bench.cost_model.train_flops`), so a pool of workers
    ends together. ``models`` ("a,b,c"): only these model ids, in this order (seeds in order
    within one); ``seeds`` ("0,1"): only these training seeds. ValueError names an id or a seed
    the experiments do not train."""
    from bench.cost_model import train_flops

    seen: dict[str, object] = {}
    for name in experiments:
        exp = load_experiment(name)
        for plan in exp.all_plans(profile):  # every seed of every trained model
            if plan.train_cfg is not None:
                seen.setdefault(plan.key, plan)
    plans = sorted(seen.values(), key=lambda p: -train_flops(p))
    if seeds:
        try:
            wanted_seeds = {int(s) for s in seeds.split(",") if s.strip()}
        except ValueError:
            raise ValueError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
        known_seeds = ", ".join(map(str, sorted({p.seed for p in plans})))
        missing = sorted(wanted_seeds - {p.seed for p in plans})
        if missing:
            raise ValueError(
                f"--seeds: {', '.join(map(str, missing))} is not a training seed of "
                f"{' '.join(experiments)} (known: {known_seeds})"
            )
        plans = [p for p in plans if p.seed in wanted_seeds]
    if not models:
        return plans
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    known = {p.id for p in plans}
    unknown = [m for m in wanted if m not in known]
    if unknown:
        raise ValueError(
            f"--models: {', '.join(unknown)} is not a trained model of {' '.join(experiments)} "
            f"(known: {', '.join(sorted(known))})"
        )
    rank = {m: i for i, m in enumerate(wanted)}
    return sorted((p for p in plans if p.id in rank), key=lambda p: (rank[p.id], p.seed))


def _together(plans: list, k: int) -> list[list]:
    """``plans`` in order, as groups of at most ``k`` seeds of one training config (a group per
    plan when ``k`` is 1), each group where its first plan was."""
    groups: dict[str, list[list]] = {}
    out: list[list] = []
    for plan in plans:
        config = json.dumps(seedless(plan.train_cfg), sort_keys=True)
        chunks = groups.setdefault(config, [])
        if not chunks or len(chunks[-1]) >= k:
            chunks.append([])
            out.append(chunks[-1])
        chunks[-1].append(plan)
    return out


def _work(args: tuple) -> tuple[str, float, str]:
    group, profile, data_root, device, threads, tf32 = args
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    quiet = lambda *_: None  # noqa: E731
    try:
        if len(group) == 1:
            ensure_checkpoint(group[0], profile, data_root, device, False, quiet, tf32=tf32)
        else:
            ensure_checkpoints_together(group, profile, data_root, device, quiet, tf32)
        status = "ok"
    except Exception as exc:  # reported, the other workers go on
        status = f"failed: {exc.__class__.__name__}: {exc}"
    return " ".join(p.key for p in group), time.perf_counter() - start, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_all",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("experiments", nargs="+", help="experiment names or YAML paths")
    add_profile_arguments(parser)  # published weights under --results need no training
    parser.add_argument(
        "--data-root", default=None, help="datasets folder (default: $ODESR_DATA, else ./data)"
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--jobs", type=int, default=2, help="pool workers (default: 2)")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="GPU training math in TF32 (faster; default: full float32, recorded in trained_on)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker (default: cores // jobs). The thread count changes the "
        "order of float reductions, so weights trained with another count differ slightly "
        "(python -m bench.repro measures how much)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated model ids of the experiments to train, in this order of priority "
        "(default: all, longest first). Use it to train the checkpoints a claim needs first on a "
        "small machine: --models vdsr-ode,rdn-ode,meta-rdn",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated training seeds to train (default: every seed of the sweeps), e.g. "
        "--seeds 0 to get one seed of every model before the others",
    )
    parser.add_argument(
        "--together",
        type=int,
        default=1,
        help="train up to K seeds of one config in one process (odesr.multiseed: one stacked "
        "network; weights equal separate runs' to float tolerance). For a GPU, where small nets "
        "leave the device idle; on a CPU separate processes are as fast or faster "
        "(bench/README.md). --executor here only",
    )
    executors.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.together < 1:
        parser.error(f"--together: at least 1, got {args.together}")
    if args.together > 1 and args.executor != "here":
        parser.error("--together works with --executor here only")
    try:
        args.device = checked_device(args.device)  # auto: cuda when available, else cpu
        profile = profile_from_args(args)
        plans = _plans(args.experiments, profile, args.models, args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    plans = [p for p in plans if trained_checkpoint(p, profile, published=True) is None]
    if args.executor != "here":
        return _submit(plans, args, profile)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    groups = _together(plans, args.together)
    print(
        f"{len(plans)} checkpoints to train with {args.jobs} workers on {args.device}"
        + ("" if args.device != "cpu" else f", {threads} threads each")
        + (f", {len(groups)} processes of up to {args.together} seeds" if args.together > 1 else "")
    )
    work = [(g, profile, args.data_root, args.device, threads, args.tf32) for g in groups]
    failed = 0
    # SIGTERM (kill, pkill) -> SystemExit, so leaving the `with` terminates the workers instead of
    # orphaning them (they would keep training and writing to this process's output)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for key, seconds, status in pool.imap_unordered(_work, work):
            failed += status != "ok"
            print(f"  {key}: {status} in {seconds:.0f} s", flush=True)
    return 1 if failed else 0


def _submit(plans: list, args: argparse.Namespace, profile: Profile) -> int:
    """One submitit job per checkpoint (a SLURM job array on ``slurm``)."""
    if not plans:
        print("0 checkpoints to train")
        return 0
    opts = executors.options_from_args(args, profile)
    executor = executors.make_executor(opts, name="odesr-train")
    print(f"{len(plans)} checkpoints to train as {args.executor} jobs -> {opts.folder}")
    nproc = max(1, opts.gpus_per_node)
    device = "cuda" if opts.gpus_per_node else args.device
    threads = opts.cpus_per_task or None
    jobs = []
    with executor.batch():
        for plan in plans:
            job_fn = executors.TrainJob(
                plan,
                profile,
                args.data_root,
                device,
                nproc,
                threads,
                tf32=args.tf32,
            )
            jobs.append(executor.submit(job_fn))
    failed = executors.wait(
        [(f"{p.id} {p.key}", j) for p, j in zip(plans, jobs, strict=True)], opts
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
