"""Training (paper sections 3.3 and 4.1) with exact resume, DDP and simulation-free path training.

One run = one config (``PROFILE/MODEL`` composed from ``odesr/configs``, or a YAML file) + a run
directory holding ``last.pt`` (latest checkpoint, atomic), ``final.pt`` (at ``max_steps``),
``config.yaml`` and ``metrics.jsonl`` (one JSON record per log / validation event).

Batches: one scale per batch, drawn from ``scales`` by a generator shared by all ranks; patch
positions, rotations and flips come from a per-rank generator. HR images are preloaded once.

* ``input_kind == "upscaled"`` models get I(t0) of the HR patch. The patch is cut from the
  (augmented) image *with a margin* (>= the path pad ``ceil(4 t) + 2``, reflected at the image
  border as :func:`odesr.degrade.path_point` pads a full image) and, for scales t = p/q with
  small p, the margin is widened so the crop starts on the LR sampling grid of the full image: the
  patch's I(t) then equals ``path_point(image, t)`` there (up to float rounding). The LR is
  quantised to 8 bits (``quantize_lr=True``) as a stored LR image is at test time. Target: the HR
  patch.
* ``input_kind == "lr"`` models get ``quantize(imresize(hr_patch, 1/s))`` of ``floor(n / s)``
  pixels and the target ``hr_patch[:floor(lr * s)]`` (the ``floor`` protocol on the patch).

Objectives for ODE models: ``endpoint`` (the paper: L1(ODESolve(I(t0), [t0, 1]), HR), backprop
through the solver), ``hr`` (beyond the paper, simulation-free, one network pass per sample: L1
between g(I(t), t) and the HR patch at t drawn uniformly from [1, t_max], on the same 8-bit
I(t) patches as ``endpoint``; the model (``predicts: hr``) is solved with ``path-step``, which
moves the state along P_t of the predicted HR image, see :mod:`odesr.ode`) and ``path`` (kept as
a negative control, it diverges: L1 between f(I(t), t) and a secant of ``path_point`` along t;
that target is dominated by the drift of the LR grid with t and with the crop's origin, results
in results/cpu/objective-path-vs-endpoint.md).

Modules of training: :mod:`odesr.train_config` (``DEFAULTS``, checks, :class:`TrainError`),
:mod:`odesr.batches` (patches, sampler, training images), :mod:`odesr.objectives` (model, forward
pass per objective, loss), :mod:`odesr.train_state` (run state, optimiser, checkpoints, resume),
:mod:`odesr.monitor` (metrics log, validation, progress) and this one (the loop, :func:`train`,
:func:`load_config`, the command line); :mod:`odesr.multiseed` trains several seeds at once.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from odesr import tensorboard_log
from odesr.arguments import train_arguments
from odesr.batches import PatchSampler, holdout_files, load_training_images
from odesr.config import (
    ConfigError,
    apply_overrides,
    check_keys,
    compose,
    config_names,
    deep_merge,
    parse_set,
    read_yaml,
    split_name,
)
from odesr.io import write_text_atomic
from odesr.monitor import (
    MetricsLog,
    load_val_images,
    log_metrics,
    progress_bar,
    scale_text,
    validate,
)
from odesr.objectives import TrainStep, compute_loss
from odesr.scale_weight import weight_of
from odesr.train_config import DEFAULTS, NonFiniteLoss, TrainError, check_config
from odesr.train_state import (
    TrainingRun,
    machine_segment,
    pick_device,
    read_checkpoint,
    restore_run,
    save_run,
    start_run,
    update_ema,
)

__all__ = [
    "TrainError",
    "NonFiniteLoss",
    "config_path",
    "load_config",
    "train",
    "pick_device",
    "add_arguments",
    "run_config",
    "run_from_args",
    "main",
    # defined in odesr.train_state / odesr.batches, named here too for callers of the one-module
    # odesr.train (processes that import them late)
    "read_checkpoint",
    "holdout_files",
    "load_training_images",
]

EXIT_OK, EXIT_USAGE, EXIT_NONFINITE = 0, 2, 3

# ----------------------------------------------------------------------------- configuration


def load_config(
    source: str | os.PathLike | dict, overrides: Sequence[str] | dict | None = None
) -> dict:
    """``DEFAULTS`` <- a composed ``PROFILE/MODEL``, a YAML file or a dict <- overrides.

    Overrides are ``["a.b=value", ...]`` (YAML values) or ``{"a.b": value}``; each replaces what
    its key held (:mod:`odesr.config`). Unknown keys, badly typed values and YAML syntax errors
    raise :class:`TrainError` naming the key, value or file."""
    try:
        composed = None if isinstance(source, dict) else split_name(source)
        if composed is not None:
            cfg = compose(*composed, DEFAULTS)
        else:
            where = "config" if isinstance(source, dict) else str(source)
            raw = source if isinstance(source, dict) else read_yaml(config_path(source))
            cfg = deep_merge(DEFAULTS, check_keys(raw, DEFAULTS, f"{where}: "))
        if overrides is not None and not isinstance(overrides, dict):
            overrides = parse_set(overrides)
        cfg = apply_overrides(cfg, overrides or {}, DEFAULTS)
        cfg = deep_merge(DEFAULTS, check_keys(cfg, DEFAULTS, "--set " if overrides else ""))
    except ConfigError as exc:
        raise TrainError(str(exc)) from None
    check_config(cfg)
    return cfg


def config_path(name: str | os.PathLike) -> Path:
    """A config file given by path (composed ``PROFILE/MODEL`` names have none)."""
    path = Path(name)
    if path.is_file():
        return path
    raise TrainError(
        f"config {str(name)!r} not found (a YAML file or PROFILE/MODEL, one of: "
        f"{', '.join(config_names())})"
    )


# ----------------------------------------------------------------------------- distributed


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _param_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- training


def train(
    cfg: dict,
    run_dir: str | os.PathLike,
    resume: bool = False,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
    data_workers: int = 0,
    tf32: bool = False,
) -> dict:
    """Train per ``cfg`` into ``run_dir``; returns ``{"step", "loss", "final", ...}``.

    ``data_workers`` > 0 makes batches ahead in that many worker processes
    (:mod:`odesr.prefetch`; the same batches, so the same weights). On a GPU the convolutions
    and matmuls run in full float32 unless ``tf32`` (faster, 10-bit mantissa products; PyTorch's
    own default is TF32 for cuDNN convolutions), as evaluation does (``gpu_float32``); the
    checkpoints' ``trained_on`` records which.

    Raises :class:`NonFiniteLoss` on a NaN/inf loss (``last.pt`` keeps the last good state) and
    :class:`TrainError` on config/data problems.
    """
    world, rank, local_rank = _dist_env()
    dev = pick_device(device, local_rank)
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group(backend=backend)
    from odesr.evaluate import gpu_float32

    try:
        with gpu_float32(tf32):
            result = _train(
                cfg, Path(run_dir), resume, dev, data_root, progress, world, rank, data_workers
            )
        if distributed:
            torch.distributed.barrier()  # nobody tears down while a peer is still talking
        return result
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train_step(run: TrainingRun, step_module: nn.Module, batch: dict, dev, world: int, last: Path):
    """One optimiser step; returns ``(loss, grad_norm)``. Raises NonFiniteLoss before updating."""
    cfg = run.cfg
    batch["x"] = batch["x"].to(dev, non_blocking=True)
    batch["target"] = batch["target"].to(dev, non_blocking=True)
    if cfg.get("channels_last"):
        batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
    run.opt.zero_grad(set_to_none=True)
    loss = compute_loss(step_module, batch)
    check = loss.detach().clone()
    if world > 1:
        torch.distributed.all_reduce(check)
        check /= world
    loss_value = float(check)
    if not math.isfinite(loss_value):
        raise NonFiniteLoss(
            f"non-finite loss ({loss_value}) at step {run.step + 1} "
            f"(scale {scale_text(batch['scale'])}); last good checkpoint kept: "
            f"{last if last.exists() else 'none yet'}"
        )
    loss.backward()
    clip = float(cfg["grad_clip"])
    grad_norm = float("nan")
    if clip > 0:
        grad_norm = float(nn.utils.clip_grad_norm_(run.model.parameters(), clip))
    run.opt.step()
    run.sched.step()
    if run.ema is not None:
        update_ema(run.ema, run.model, float(cfg["ema"]), run.step)
    run.step += 1
    return loss_value, grad_norm


def _prepare(
    cfg: dict, dev: torch.device, data_root: str | None, rank: int, data_workers: int
) -> tuple[TrainingRun, PatchSampler, list]:
    """The run before its folder is touched (everything that can refuse it): seeded model,
    optimiser, EMA copy, training images, sampler and batch source, loss weights, and the
    validation images (rank 0 only)."""
    held_out = holdout_files(cfg, data_root)
    images = load_training_images(cfg["data"], data_root, exclude=held_out)
    run, sampler = start_run(cfg, dev, images, rank, data_workers)
    val_images = load_val_images(cfg, data_root) if rank == 0 else []
    return run, sampler, val_images


def _open_run_dir(
    run: TrainingRun,
    run_dir: Path,
    resume: bool,
    dev: torch.device,
    world: int,
    rank: int,
    val_images: list,
):
    """Create ``run_dir``, resume from its ``last.pt`` when asked, record the machine segment,
    write ``config.yaml`` and open the metrics log (+ TensorBoard); returns the log."""
    main_rank, cfg = rank == 0, run.cfg
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / "last.pt"
    if resume and last.exists():
        restore_run(run, last, rank, world)
    elif not resume and last.exists() and main_rank:
        print(
            f"odesr train: {run_dir} has a checkpoint; starting over (use --resume to continue)",
            file=sys.stderr,
        )
    machine_segment(run, dev, world)
    if main_rank:
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    log = MetricsLog(run_dir / "metrics.jsonl", main_rank, run.step if resume else None)
    return (
        tensorboard_log.tee(  # + TensorBoard event files in run_dir when tensorboard is installed
            log,
            run_dir,
            main_rank,
            run.step if resume else None,
            model=run.model,
            val_images=val_images,
            cfg=cfg,
            device=dev,
        )
    )


class _Window:
    """Loss, speed and data-wait totals since the last log record."""

    def __init__(self, step: int) -> None:
        self.start(time.perf_counter(), step)

    def start(self, now: float, step: int) -> None:
        self.t_mark, self.s_mark, self.loss_sum, self.loss_n, self.data_s = now, step, 0.0, 0, 0.0

    def record(self, run: TrainingRun, batch: dict, grad_norm: float) -> dict:
        """The log record of the window ending now (and a new window)."""
        now, step = time.perf_counter(), run.step
        record = dict(
            step=step,
            loss=self.loss_sum / self.loss_n,
            lr=run.opt.param_groups[0]["lr"],
            steps_per_s=(step - self.s_mark) / max(now - self.t_mark, 1e-9),
            data_share=self.data_s / max(now - self.t_mark, 1e-9),
        )
        if not torch.is_tensor(batch["scale"]):  # a mixed batch has no one scale
            record["scale"] = batch["scale"]
        if math.isfinite(grad_norm):
            record["grad_norm"] = grad_norm
        self.start(now, step)
        return record


def _loop(
    run: TrainingRun,
    step_module: nn.Module,
    log,
    bar,
    val_images: list,
    dev,
    world: int,
    rank: int,
    last: Path,
) -> float:
    """Train ``run`` to ``max_steps``: log, validate and checkpoint on their schedules; returns
    the last loss."""
    cfg, model = run.cfg, run.model
    max_steps = int(cfg["max_steps"])
    log_every, ckpt_every = int(cfg["log_every"]), int(cfg["checkpoint_every"])
    val_every = int(cfg["val"].get("every") or 0)
    window = _Window(run.step)
    loss_value = float("nan")
    while run.step < max_steps:
        t_data = time.perf_counter()
        batch = run.sampler.next()
        if run.scale_weights is not None:
            batch["weight"] = weight_of(run.scale_weights, batch["scale"])
        window.data_s += time.perf_counter() - t_data
        loss_value, grad_norm = _train_step(run, step_module, batch, dev, world, last)
        step = run.step
        window.loss_sum, window.loss_n = window.loss_sum + loss_value, window.loss_n + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", t=scale_text(batch["scale"]), refresh=False)
        if step % log_every == 0 or step == max_steps:
            log_metrics(log, bar, window.record(run, batch, grad_norm))
        if val_every and step % val_every == 0 and rank == 0 and val_images:
            v = validate(run.ema if run.ema is not None else model, val_images, cfg, dev)
            record = dict(step=step, val_psnr=v, val_dataset=str(cfg["val"]["dataset"]))
            log_metrics(log, bar, record)
        if ckpt_every and step % ckpt_every == 0 and step < max_steps:
            save_run(run, last, world, rank)
    return loss_value


def _train(
    cfg: dict,
    run_dir: Path,
    resume: bool,
    dev: torch.device,
    data_root: str | None,
    progress: bool,
    world: int,
    rank: int,
    data_workers: int = 0,
) -> dict:
    run, sampler, val_images = _prepare(cfg, dev, data_root, rank, data_workers)
    log = _open_run_dir(run, run_dir, resume, dev, world, rank, val_images)
    last, final = run_dir / "last.pt", run_dir / "final.pt"
    step_module: nn.Module = TrainStep(run.model, cfg)
    if world > 1:
        ids = [dev.index] if dev.type == "cuda" else None
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=ids)
    bar = progress_bar(cfg, run.step, progress and rank == 0)
    run.model.train()
    try:
        loss_value = _loop(run, step_module, log, bar, val_images, dev, world, rank, last)
    finally:
        if bar is not None:
            bar.close()
        if run.sampler is not sampler:
            run.sampler.close()
    save_run(run, last, world, rank)
    save_run(run, final, world, rank, final=True)
    result: dict[str, Any] = {"step": run.step, "loss": loss_value, "final": str(final)}
    if world > 1:
        digests: list = [None] * world
        torch.distributed.all_gather_object(digests, _param_digest(run.model))
        result["ranks_agree"] = len(set(digests)) == 1
    log.write(done=True, **{k: v for k, v in result.items() if k != "final"})
    return result


# ----------------------------------------------------------------------------- CLI


add_arguments = train_arguments  # the argument definitions live in odesr.arguments


def _default_out(config: str) -> Path:
    composed = split_name(config)
    return Path("runs", *composed) if composed else Path("runs") / Path(config).stem


def run_config(args: argparse.Namespace) -> tuple[dict, Path]:
    """``(config, run directory)`` of parsed ``odesr train`` arguments: the config with
    ``--set``, ``--max-steps`` and ``--seed`` applied, and ``--out`` (default
    runs/PROFILE/MODEL)."""
    overrides = list(args.overrides or [])
    if args.max_steps is not None:
        overrides.append(f"max_steps={int(args.max_steps)}")
    if args.seed is not None:
        overrides.append(f"seed={int(args.seed)}")
    cfg = load_config(args.config, overrides)
    return cfg, Path(args.out) if args.out else _default_out(args.config)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``odesr train`` from parsed arguments; returns the exit status. ``--seeds S1,S2``
    trains those seeds together into ``OUT/seed<S>`` (:mod:`odesr.multiseed`)."""
    seeds = getattr(args, "seeds", None)
    try:
        if seeds and args.seed is not None:
            raise TrainError("--seed and --seeds do not go together")
        cfg, out = run_config(args)
        options: dict[str, Any] = dict(
            resume=args.resume,
            device=args.device,
            data_root=args.data_root,
            progress=not args.no_progress,
            data_workers=args.data_workers,
            tf32=args.tf32,
        )
        if seeds:
            from odesr import multiseed  # noqa: PLC0415 (it imports this module)

            seeds = multiseed.parse_seeds(seeds)
            dirs = multiseed.seed_dirs(out, seeds)
            results = multiseed.train_seeds(cfg, seeds, dirs, **options)
        else:
            results = [train(cfg, out, **options)]
    except NonFiniteLoss as exc:
        print(f"odesr train: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    except TrainError as exc:
        print(f"odesr train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if int(os.environ.get("RANK", "0")) == 0:
        for i, result in enumerate(results):
            which = f"seed {seeds[i]} " if seeds else ""
            msg = f"odesr train: {which}done at step {result['step']}, loss {result['loss']:.5f}"
            if "ranks_agree" in result:
                msg += f", ranks agree: {result['ranks_agree']}"
            print(msg + f" -> {result['final']}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m odesr.train CONFIG ...`` (same as ``odesr train``)."""
    parser = add_arguments(argparse.ArgumentParser(prog="odesr train", description=__doc__))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
