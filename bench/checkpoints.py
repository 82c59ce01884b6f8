"""Checkpoints keyed by their training config: ``<checkpoints>/<profile>/<model>-<hash>/final.pt``
(:meth:`bench.profile.Profile.checkpoint_dir`).

A missing checkpoint is trained with :func:`odesr.train.train` (resuming from ``last.pt`` when an
earlier run was killed). Training holds a lock (:mod:`filelock`) on ``<dir>.lock`` so two sweeps
needing the same model train it once: the second waits and then finds ``final.pt``.

Weights published with the results (``<results>/<profile>/weights/<key>.pt``,
:meth:`~bench.profile.Profile.published_weights`, :mod:`bench.publish`) stand in for a missing
``final.pt`` where the caller asks (``published=True``), so a fresh clone evaluates the committed
weights instead of training them again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from bench.experiment import ModelPlan
from bench.profile import Profile

__all__ = [
    "trained_checkpoint",
    "ensure_checkpoint",
    "ensure_checkpoints_together",
    "seedless",
    "deterministic",
    "torchrun_command",
    "env_for_torchrun",
]


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block (CPU training is then
    bit-reproducible for a given thread count); restores the previous setting."""
    if not enabled:
        yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        yield


def trained_checkpoint(plan: ModelPlan, profile: Profile, published: bool = False) -> Path | None:
    """The weights of ``plan`` that exist now, without training: ``final.pt``, else (with
    ``published``) the copy published with the profile's results; None when neither exists (or
    the model needs no training)."""
    if plan.train_cfg is None:
        return None
    final = profile.checkpoint_dir(plan.key) / "final.pt"
    if final.exists():
        return final
    copy = profile.published_weights(plan.key) if published else None
    return copy if copy is not None and copy.exists() else None


def ensure_checkpoint(
    plan: ModelPlan,
    profile: Profile,
    data_root: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    log=print,
    nproc: int = 1,
    published: bool = False,
    tf32: bool = False,
) -> Path | None:
    """``final.pt`` of ``plan`` (trained now if missing); None for models without training.

    With ``published``, the weights published with the profile's results are returned when
    there is no ``final.pt``. ``nproc > 1`` trains with ``torchrun`` (DDP, one process per GPU)
    in a subprocess. ``tf32``: GPU math in TF32 instead of float32 (:func:`odesr.train.train`)."""
    if plan.train_cfg is None:
        return None
    existing = trained_checkpoint(plan, profile, published)
    if existing is not None:
        return existing
    out = profile.checkpoint_dir(plan.key)
    final = out / "final.pt"
    with _dir_lock(out):
        if final.exists():
            return final
        from odesr.train import train

        resume = (out / "last.pt").exists()
        log(f"bench: training {plan.id} -> {out}" + (" (resuming)" if resume else ""))
        if nproc > 1:
            _train_torchrun(plan, out, resume, nproc, device, data_root, tf32)
            return final
        with deterministic(torch.device(device).type == "cpu"):
            train(
                plan.train_cfg,
                out,
                resume=resume,
                device=device,
                data_root=data_root,
                progress=progress,
                tf32=tf32,
            )
    return final


def seedless(cfg: dict) -> dict:
    """A training config without its seed: what the seeds trained together share."""
    return {k: v for k, v in cfg.items() if k != "seed"}


def ensure_checkpoints_together(
    plans: list[ModelPlan],
    profile: Profile,
    data_root: str | None = None,
    device: str = "cpu",
    log=print,
    tf32: bool = False,
) -> list[Path | None]:
    """``final.pt`` of several seeds of one training config, those missing trained in one
    process (:func:`odesr.multiseed.train_seeds`: one stacked network; each seed its own init,
    batches and optimiser state; the weights equal separate runs' to float tolerance, and each
    checkpoint's ``trained_on`` records ``seeds_together``). Falls back to
    :func:`ensure_checkpoint` per seed when fewer than two are missing, when only some of them
    have a ``last.pt`` to resume, or when the model cannot be stacked (LR-input models,
    adaptive training solvers)."""
    from odesr.multiseed import train_seeds
    from odesr.train_config import TrainError

    def one_by_one() -> list[Path | None]:
        return [
            ensure_checkpoint(p, profile, data_root, device, False, log, tf32=tf32) for p in plans
        ]

    base = seedless(plans[0].train_cfg or {})
    if any(seedless(p.train_cfg or {}) != base for p in plans):
        raise ValueError("ensure_checkpoints_together: the plans differ in more than the seed")
    todo = [p for p in plans if trained_checkpoint(p, profile) is None]
    dirs = [profile.checkpoint_dir(p.key) for p in todo]
    have = [(d / "last.pt").exists() for d in dirs]
    if len(todo) < 2 or (any(have) and not all(have)):
        return one_by_one()
    stacked = True  # False: one by one (see below), after the locks are released
    with contextlib.ExitStack() as locks:
        for d in sorted(dirs):  # one order: two runs never wait on each other
            locks.enter_context(_dir_lock(d))
        if any((d / "final.pt").exists() for d in dirs):
            stacked = False  # another process trained some of them meanwhile
        else:
            seeds = [int(p.seed) for p in todo]
            log(f"bench: training {todo[0].id} seeds {seeds} together -> {dirs[0].parent}")
            try:
                with deterministic(torch.device(device).type == "cpu"):
                    train_seeds(base, seeds, dirs, resume=all(have), device=device,
                                data_root=data_root, progress=False, tf32=tf32)  # fmt: skip
            except TrainError as exc:
                if not str(exc).startswith("--seeds"):
                    raise
                stacked = False
                log(f"bench: {todo[0].id}: {exc}; training the seeds one by one")
    if not stacked:
        return one_by_one()
    return [trained_checkpoint(p, profile) for p in plans]


def _train_torchrun(
    plan: ModelPlan,
    out: Path,
    resume: bool,
    nproc: int,
    device: str,
    data_root: str | None,
    tf32: bool = False,
) -> None:
    import subprocess

    import yaml

    from odesr.io import write_text_atomic

    config_file = out / "job-config.yaml"  # the resolved config, so the hash key is unchanged
    write_text_atomic(config_file, yaml.safe_dump(plan.train_cfg, sort_keys=False))
    cmd = torchrun_command(
        config_file, out, nproc, resume=resume, device=device, data_root=data_root, tf32=tf32
    )
    proc = subprocess.run(cmd, env=env_for_torchrun())
    if proc.returncode != 0 or not (out / "final.pt").exists():
        raise RuntimeError(f"torchrun training of {plan.id} failed (exit {proc.returncode})")


def torchrun_command(config_file: Path, out: Path, nproc: int, **flags: Any) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N -m odesr.train CONFIG --out OUT ...``."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # = torchrun, with this interpreter
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "odesr.train",
        str(config_file),
        "--out",
        str(out),
        "--no-progress",
    ]
    for key, value in flags.items():
        if value is True:
            cmd.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def env_for_torchrun() -> dict:
    """The job's environment for torchrun (OMP threads per process set when unset)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
