"""Jobs on an existing scheduler: submitit's local executor or SLURM, one code path.

``--executor submitit-local`` runs each job as a local subprocess (here and in the tests);
``--executor slurm`` submits the same job objects to SLURM (``--partition``, ``--gpus-per-node``,
``--time``). A training job with more than one GPU runs ``torchrun --standalone
--nproc_per_node=N -m odesr.train`` (DDP, one process per GPU). Jobs are
:class:`submitit.helpers.Checkpointable`: on preemption or time-out submitit requeues them with the
same arguments, and the job resumes from ``last.pt`` (:func:`bench.checkpoints.ensure_checkpoint`
resumes whenever ``last.pt`` exists), so only the steps since the last checkpoint are redone.
Job logs: ``<jobs-folder>/<job id>_0_log.out`` / ``.err``; by default the jobs folder is the run's
own ``<checkpoints>/<profile>/jobs`` (:attr:`bench.profile.Profile.jobs`), never the current
directory.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from bench.profile import Profile

__all__ = [
    "EXECUTORS",
    "SchedulerOptions",
    "add_arguments",
    "options_from_args",
    "make_executor",
    "TrainJob",
    "EvalJob",
    "wait",
]

EXECUTORS = ("here", "submitit-local", "slurm")
MOVED = ("torchrun_command", "env_for_torchrun")  # to bench.checkpoints, which launches torchrun


def __getattr__(name: str) -> Any:
    """``torchrun_command`` and ``env_for_torchrun``, now in :mod:`bench.checkpoints` (read from
    there on first use, so that importing this module stays free of torch)."""
    if name in MOVED:
        from bench import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class SchedulerOptions:
    """What a submitit job asks the scheduler for (SLURM keys are ignored by the local one)."""

    executor: str = "submitit-local"
    folder: str = "jobs"
    partition: str | None = None
    gpus_per_node: int = 0
    time_min: int = 60 * 24
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    wait: bool = True


def parse_minutes(text: str) -> int:
    """``90``, ``1:30:00`` (H:MM:SS), ``2-00:00:00`` (D-HH:MM:SS, SLURM's) -> whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise argparse.ArgumentTypeError(f"bad --time {text!r}: use minutes, H:MM:SS or D-HH:MM:SS")
    days, first, second, third = match.groups()
    if second is None:  # plain minutes (or D-HH)
        minutes = int(first) * (60 if days else 1)
    elif third is None:  # H:MM (or D-HH:MM)
        minutes = int(first) * 60 + int(second)
    else:  # H:MM:SS
        minutes = int(first) * 60 + int(second) + (1 if int(third) else 0)
    minutes += int(days or 0) * 24 * 60
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"bad --time {text!r}: at least one minute")
    return minutes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor {here,submitit-local,slurm}`` and the scheduler options (bench run and
    bench.train_all: one name and default each)."""
    group = parser.add_argument_group("scheduler (submitit)")
    group.add_argument(
        "--executor",
        default=EXECUTORS[0],
        choices=EXECUTORS,
        help="here: run on this machine without a scheduler (bench.train_all: a pool of --jobs "
        "processes); submitit-local: submitit jobs "
        "as local processes; slurm: submitit jobs on SLURM (preempted jobs requeue and resume "
        "from last.pt)",
    )
    group.add_argument(
        "--jobs-folder",
        default=None,
        help="submitit's folder for job pickles and logs (default: <checkpoints>/<profile>/jobs)",
    )
    group.add_argument("--partition", default=None, help="SLURM partition (slurm only)")
    group.add_argument(
        "--gpus-per-node",
        type=int,
        default=0,
        help="GPUs per job; >1 trains with torchrun DDP, one process per GPU",
    )
    group.add_argument(
        "--time",
        type=parse_minutes,
        default=60 * 24,
        metavar="LIMIT",
        help="time limit per job in minutes, H:MM:SS or D-HH:MM:SS (a job past it is requeued)",
    )
    group.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per job")
    group.add_argument("--mem-gb", type=float, default=None, help="memory per job (GB)")
    group.add_argument(
        "--no-wait",
        action="store_true",
        help="submit and exit (print job ids) instead of waiting for the jobs",
    )


def options_from_args(args: argparse.Namespace, profile: Profile) -> SchedulerOptions:
    """The scheduler options of ``bench run`` / ``bench.train_all``; the jobs folder defaults to
    the profile's (:attr:`~bench.profile.Profile.jobs`, beside its checkpoints, ignored by git)."""
    folder = args.jobs_folder or str(profile.jobs)
    return SchedulerOptions(
        executor=args.executor,
        folder=folder,
        partition=args.partition,
        gpus_per_node=args.gpus_per_node,
        time_min=args.time,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        wait=not args.no_wait,
    )


def make_executor(opts: SchedulerOptions, name: str) -> Any:
    """A ``submitit.AutoExecutor`` for ``opts.executor`` (``submitit-local`` or ``slurm``)."""
    try:
        import submitit
    except ImportError:
        raise SystemExit(
            "bench: --executor submitit-local/slurm needs submitit (pip install submitit)"
        ) from None
    cluster = {"submitit-local": "local", "slurm": "slurm"}[opts.executor]
    executor = submitit.AutoExecutor(folder=opts.folder, cluster=cluster)
    params: dict[str, Any] = dict(
        name=name,
        timeout_min=opts.time_min,
        nodes=1,
        tasks_per_node=1,  # torchrun starts the per-GPU processes itself
        gpus_per_node=opts.gpus_per_node,
        slurm_signal_delay_s=120,  # time to write last.pt before a preemption/time-out kill
    )
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    if opts.partition:
        params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    return executor


class _Job:
    """Base of the jobs: submitit's requeue hook (``checkpoint``) resubmits the same call."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


class TrainJob(_Job):
    """Train one checkpoint (``final.pt``), resuming from ``last.pt`` when it exists."""

    def __init__(
        self,
        plan: Any,
        profile: Profile,
        data_root: str | None,
        device: str,
        nproc: int = 1,
        threads: int | None = None,
        tf32: bool = False,
    ) -> None:
        self.plan, self.profile = plan, profile
        self.data_root, self.device, self.nproc, self.threads = data_root, device, nproc, threads
        self.tf32 = tf32

    def __call__(self) -> str:
        from bench.checkpoints import ensure_checkpoint

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        final = ensure_checkpoint(
            self.plan,
            self.profile,
            self.data_root,
            self.device,
            progress=False,
            log=lambda msg: print(msg, flush=True),
            nproc=self.nproc,
            tf32=self.tf32,
        )
        print(f"bench: {self.plan.key}: {final}", flush=True)
        return str(final)


class EvalJob(_Job):
    """``bench run`` for some models of an experiment (trains what is missing, then evaluates)."""

    def __init__(self, experiment: str, profile: Profile, models: list[str], kwargs: dict) -> None:
        self.experiment, self.profile, self.models, self.kwargs = (
            experiment,
            profile,
            models,
            kwargs,
        )

    def __call__(self) -> str:
        from bench.runner import run_experiment

        summary = run_experiment(
            self.experiment,
            self.profile,
            models=self.models,
            progress=False,
            log=lambda msg: print(msg, flush=True),
            **self.kwargs,
        )
        text = f"{','.join(self.models)}: {summary.done} units run, {summary.skipped} already there"
        print(f"bench: {text}", flush=True)
        return text


def wait(jobs: list[tuple[str, Any]], opts: SchedulerOptions) -> int:
    """Print each job's id and log; with ``opts.wait`` wait for all, print results; failures."""
    for label, job in jobs:
        print(f"  submitted {label}: job {job.job_id}, log {job.paths.stdout}", flush=True)
    if not opts.wait:
        return 0
    failed = 0
    for label, job in jobs:
        try:
            result = job.result()
            print(f"  {label}: ok ({result})", flush=True)
        except Exception as exc:  # reported, the other jobs go on
            failed += 1
            last = str(exc).strip().splitlines()[-1:] or [exc.__class__.__name__]
            print(f"  {label}: failed: {last[0]} (log {job.paths.stderr})", flush=True)
    return failed


def submit_experiment(
    experiment: str,
    profile: Profile,
    models: list[str] | None,
    opts: SchedulerOptions,
    **kwargs: Any,
) -> int:
    """``bench run`` as one submitit job per model of the experiment; the jobs append to the same
    results CSV (whole units, under its lock). Returns the number of failed jobs."""
    from bench.experiment import load_experiment

    exp = load_experiment(experiment)
    ids = list(dict.fromkeys(u.model.id for u in exp.units(profile, models)))
    if opts.gpus_per_node:
        kwargs["device"] = "cuda"
    executor = make_executor(opts, name=f"odesr-{exp.name}")
    print(
        f"bench: {exp.name}/{profile.name}: {len(ids)} model jobs as {opts.executor} -> "
        f"{opts.folder}"
    )
    jobs = []
    with executor.batch():
        for model_id in ids:
            jobs.append(executor.submit(EvalJob(str(experiment), profile, [model_id], kwargs)))
    return wait(list(zip(ids, jobs, strict=True)), opts)
