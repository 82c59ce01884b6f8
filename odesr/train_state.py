"""Training state and checkpoints: what one run holds (:class:`TrainingRun`), its optimiser and
schedule, weight averaging, the generator states, and saving / resuming a run exactly
(:func:`save_run`, :func:`restore_run`; ``last.pt`` / ``final.pt``), with the machines and speed of
each segment of training (:func:`machine_segment`).
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from odesr import checkpoints
from odesr.batches import PatchSampler
from odesr.config import LEGACY_VALUES
from odesr.objectives import build_model, loss_weights
from odesr.prefetch import BatchSource, batch_source
from odesr.train_config import TrainError
from odesr.validate import device as usable_device

__all__ = [
    "RESUMABLE_CHANGES",
    "pick_device",
    "TrainingRun",
    "resume_mismatch",
    "read_checkpoint",
    "save_training_checkpoint",
    "machine_segment",
    "seed_everything",
    "lr_factor",
    "make_optimizer",
    "start_run",
    "update_ema",
    "save_run",
    "restore_run",
]


# Config keys a resumed run may change: they do not alter the optimisation trajectory.
RESUMABLE_CHANGES = ("max_steps", "log_every", "checkpoint_every", "val", "checkpoint_recompute")


def resume_mismatch(saved: dict, cfg: dict) -> list[str]:
    """Top-level config keys that differ between a checkpoint's config and ``cfg``, ignoring
    :data:`RESUMABLE_CHANGES` (extending ``max_steps`` is a legitimate resume, except under the
    cosine schedule, which it would change)."""
    saved = {**LEGACY_VALUES, **saved}  # a checkpoint from before a key existed
    free = set(RESUMABLE_CHANGES)
    if "cosine" in (saved.get("lr_schedule"), cfg.get("lr_schedule")):
        free.discard("max_steps")  # the cosine schedule ends at max_steps
    keys = (set(saved) | set(cfg)) - free
    return sorted(k for k in keys if saved.get(k) != cfg.get(k))


def _global_rng_state() -> dict:
    """This process's Python, NumPy, torch (and CUDA) generator states."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _rank_rng_state(rng: dict, rank: int, world: int) -> dict:
    """The global generator state ``rank`` saved; rank 0's when the world size changed or the
    checkpoint predates per-rank states (they held rank 0's state at the top level)."""
    ranks = rng.get("ranks")
    if ranks is None:
        return rng
    return ranks[rank] if len(ranks) == world else ranks[0]


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    ns = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            ns["keys"].numpy().astype(np.uint32),
            ns["pos"],
            ns["has_gauss"],
            ns["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass


def save_training_checkpoint(path: Path, model: nn.Module, extra: dict) -> None:
    """Atomic ``{format, spec, state_dict, extra}`` via :func:`odesr.checkpoints.save_checkpoint`.

    ``extra`` holds optimizer, scheduler, step, RNG states and config, all loadable with
    ``torch.load(weights_only=True)``.
    """
    checkpoints.save_checkpoint(path, model, **extra)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, extra)`` of a training checkpoint."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return payload["state_dict"], payload["extra"]
    except (KeyError, TypeError, RuntimeError, EOFError, OSError) as exc:
        raise TrainError(f"{path}: not a readable training checkpoint ({exc})") from None


@dataclass
class TrainingRun:
    """What one training run holds and a checkpoint stores (``ema``: averaged weights or None)."""

    cfg: dict
    model: nn.Module
    ema: nn.Module | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    sampler: BatchSource  # a PatchSampler, or a Prefetcher around one
    step: int = 0
    trained_on: list[dict] = field(default_factory=list)  # segments, see machine_segment
    scale_weights: dict[float, float] | None = None  # loss weight per scale (odesr.scale_weight)
    # (perf_counter, step, seconds, steps) when the current segment's clock last started
    clock: tuple[float, int, float, int] = (0.0, 0, 0.0, 0)


def machine_segment(run: TrainingRun, dev: torch.device, world: int, together: int = 1) -> None:
    """Record where the next steps run: ``run.trained_on`` (saved in every checkpoint, kept by
    published weights) lists ``{from_step, device, torch, world, tf32}`` segments, a new one each
    time a resume changes any of them. Weights trained on another machine, thread count or
    torch differ by float reduction order, so a report can say which rows came from where.
    Each save adds how fast the segment trains (:func:`_record_speed`). ``together`` > 1: the
    run is one of that many seeds trained in one process (:mod:`odesr.multiseed`), recorded as
    ``seeds_together`` (each step then trains that many seeds)."""
    from odesr.evaluate import device_label

    segment = {
        "device": device_label(dev),
        "torch": str(torch.__version__),  # a plain str: TorchVersion is not weights_only-safe
        "world": world,
        "tf32": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else False,
    }
    if together > 1:
        segment["seeds_together"] = together
    last = run.trained_on[-1] if run.trained_on else None
    keys = (*segment, "seeds_together")
    if last is None or {k: last.get(k) for k in keys} != {k: segment.get(k) for k in keys}:
        run.trained_on.append({"from_step": run.step, **segment})
    current = run.trained_on[-1]
    run.clock = (
        time.perf_counter(),
        run.step,
        float(current.get("seconds", 0.0)),
        int(current.get("steps", 0)),
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (what model init draws from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, cfg: dict) -> float:
    """Learning-rate multiplier after ``step`` steps: linear warm-up over ``warmup_steps``, then
    ``step`` (halved every ``lr_halve_every``) or ``cosine`` (from 1 to 0 at ``max_steps``)."""
    warm = int(cfg["warmup_steps"])
    if step < warm:
        return (step + 1) / warm
    if cfg["lr_schedule"] == "cosine":
        span = max(int(cfg["max_steps"]) - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min((step - warm) / span, 1.0)))
    return 0.5 ** (step // int(cfg["lr_halve_every"]))


def make_optimizer(model: nn.Module, cfg: dict):
    """Adam and its schedule (a plain StepLR for the step schedule without warm-up, as before)."""
    opt = torch.optim.Adam(
        model.parameters(),
        lr=float(cfg["lr"]),
        betas=tuple(float(b) for b in cfg["adam"]["betas"]),
        eps=float(cfg["adam"]["eps"]),
    )
    if cfg["lr_schedule"] == "step" and not int(cfg["warmup_steps"]):
        return opt, torch.optim.lr_scheduler.StepLR(
            opt, step_size=int(cfg["lr_halve_every"]), gamma=0.5
        )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg))


def start_run(
    cfg: dict,
    dev: torch.device,
    images: Sequence[torch.Tensor],
    rank: int = 0,
    data_workers: int = 0,
    check: Callable[[nn.Module, dict], None] | None = None,
) -> tuple[TrainingRun, PatchSampler]:
    """A new run of ``cfg`` on the training ``images``: the model seeded with ``cfg['seed']``
    (``check`` may refuse it), Adam and its schedule, the EMA copy, the sampler of rank
    ``rank`` and its batch source (``data_workers`` processes), the loss weights per scale."""
    seed = int(cfg["seed"])
    seed_everything(seed)
    model, kind, objective = build_model(cfg, dev)
    if check is not None:
        check(model, cfg)
    opt, sched = make_optimizer(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False) if float(cfg["ema"]) > 0 else None
    sampler = PatchSampler(
        images, cfg, kind, objective, seed, rank, model.supported_scales, bool(cfg["mixed_scales"])
    )
    try:
        source = batch_source(sampler, int(data_workers))
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    run = TrainingRun(cfg, model, ema, opt, sched, source)
    run.scale_weights = loss_weights(cfg, images, sampler.scales)
    return run, sampler


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model, d = min(decay, (1 + step) / (10 + step)) (short warm-up
    so the average forgets the initial weights early)."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1.0 - d)


def restore_run(run: TrainingRun, last: Path, rank: int, world: int) -> None:
    """Continue ``run`` from ``last`` (refusing a checkpoint trained with another config)."""
    state, ckpt = read_checkpoint(last)
    differ = resume_mismatch(ckpt.get("config", {}), run.cfg)
    if differ:
        raise TrainError(
            f"{last}: cannot resume, the checkpoint was trained with a different "
            f"{', '.join(differ)} (use a new output folder, or train without --resume)"
        )
    run.model.load_state_dict(state)
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.step = int(ckpt["step"])
    run.trained_on = list(ckpt.get("trained_on", []))
    rng = ckpt["rng"]
    _set_rng_state(_rank_rng_state(rng, rank, world))
    samplers = rng["samplers"]
    if len(samplers) == world:
        run.sampler.load_state_dict(samplers[rank])
    elif rank == 0:
        print(
            f"odesr train: world size changed ({len(samplers)} -> {world}); data streams restart",
            file=sys.stderr,
        )


def _record_speed(run: TrainingRun) -> None:
    """Update the current ``trained_on`` segment with its speed so far: ``threads`` (torch
    threads of this process), ``steps`` and ``seconds`` (steps trained and wall seconds spent in
    the segment, from after the data is loaded to this save, summed over resumes on the same
    machine), ``steps_per_s`` and ``loadavg`` (the 1, 5 and 15 minute load averages now; None
    where the OS has none)."""
    start, step0, seconds0, steps0 = run.clock
    seconds = seconds0 + max(time.perf_counter() - start, 0.0)
    steps = steps0 + run.step - step0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    run.trained_on[-1].update(
        threads=torch.get_num_threads(),
        steps=steps,
        seconds=round(seconds, 3),
        steps_per_s=round(steps / seconds, 4) if seconds > 0 else None,
        loadavg=load,
    )


def save_run(run: TrainingRun, path: Path, world: int, rank: int, final: bool = False) -> None:
    """Write a checkpoint (collective under DDP). ``last.pt`` holds the raw weights (+ ``ema``);
    ``final.pt`` holds the weights to evaluate: the EMA when on (``extra.weights`` says which)."""
    states, globals_ = [run.sampler.state_dict()], [_global_rng_state()]
    if world > 1:
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, (states[0], globals_[0]))
        states = [g[0] for g in gathered]
        globals_ = [g[1] for g in gathered]
    if rank != 0:
        return
    _record_speed(run)
    extra = dict(
        optimizer=run.opt.state_dict(),
        scheduler=run.sched.state_dict(),
        step=run.step,
        rng={"samplers": states, "ranks": globals_},  # index = rank
        config=run.cfg,
        weights="ema" if run.ema is not None else "last",
        trained_on=run.trained_on,
    )
    if run.scale_weights is not None:
        extra["scale_weights"] = {f"{s:g}": w for s, w in run.scale_weights.items()}
    if run.ema is not None and not final:
        extra["ema"] = run.ema.state_dict()
    model = run.ema if (final and run.ema is not None) else run.model
    save_training_checkpoint(path, model, extra)


def pick_device(name: str | None, local_rank: int) -> torch.device:
    """The device ``name`` means (``auto``/None: cuda when available; cuda: ``cuda:local_rank``)."""
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    try:
        return torch.device(usable_device(name))
    except ValueError as exc:
        raise TrainError(str(exc)) from None
