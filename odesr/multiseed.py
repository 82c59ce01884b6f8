"""Several seeds of one model trained together in one process, with stacked weights.

``train_seeds(cfg, [s1, ..., sK], [dir1, ..., dirK])`` trains what K runs of
:func:`odesr.train.train` with ``seed: s1 .. sK`` would, into K ordinary run directories
(``last.pt``, ``final.pt``, ``config.yaml``, ``metrics.jsonl``: same checkpoint format and
``extra`` fields, so :func:`odesr.checkpoints.load`, the bench and ``odesr train --resume`` read
them as they read a single run's), but with one forward and one backward pass for all K:

* every seed has its own initialisation (``seed_everything(s)`` then ``build_model``, as a
  single run), its own :class:`odesr.batches.PatchSampler` stream, Adam moments, gradient-norm
  clip (each seed's own global norm) and EMA; the learning-rate schedule (a function of the step
  only) is shared;
* every ``Conv2d`` of the model becomes a :class:`StackedConv2d` holding the K seeds' weights
  ``(K, out, in, kh, kw)``, run as one grouped convolution over the seeds' batches concatenated
  along the batch axis (seed-major). Every other operation of the supported models (backbones'
  ReLU / concatenation / skips, t planes, the ODE solvers, ``solve_per_sample``) works per
  sample, so the concatenated batch needs nothing else; Adam, the EMA and the schedule are
  elementwise, so one optimiser over the stacked tensors is K optimisers;
* a batch with one scale per sample (``mixed_scales``) runs all seeds in one pass; with one
  scale per batch, the seeds whose batch drew the same scale share a pass (a float scale fixes
  the ODE time grid, so seeds at different scales cannot share one);
* results equal the separate runs up to float rounding (a grouped convolution sums in another
  order than K plain ones; a pass holding one seed is the plain convolution).

Models: those taking the upscaled image (``input_kind == "upscaled"``: VDSR / RDN ``+t`` and
ODE models, any objective) whose parameters all sit in ``Conv2d`` layers. LR-input models
(Meta-RDN, the fixed-scale nets) and adaptive training solvers are refused. A non-finite loss
of any seed stops all of them before the update (the message names the seed; every seed keeps
its last good ``last.pt``). Resume: all K continue from their ``last.pt``, which must exist for
every seed and hold the same step; an ordinary run resumes any one of them. Single process only
(no DDP). Checkpoints record ``seeds_together: K`` in their ``trained_on`` segment (each step of
the segment trained K seeds). ``odesr train CONFIG --seeds 0,1,2,3`` writes ``OUT/seed0 ..
OUT/seed3``.

Speed: bench/multiseed_speed.py measures it (results in bench/README.md).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from odesr import tensorboard_log
from odesr.batches import PatchSampler, holdout_files, load_training_images
from odesr.monitor import MetricsLog, load_val_images, progress_bar, validate
from odesr.objectives import TrainStep, compute_loss
from odesr.ode import DEFAULT_SOLVER, grid_options
from odesr.scale_weight import weight_of
from odesr.solvers import is_fixed
from odesr.train_config import NonFiniteLoss, TrainError
from odesr.train_state import (
    TrainingRun,
    machine_segment,
    make_optimizer,
    pick_device,
    restore_run,
    save_run,
    start_run,
    update_ema,
)

__all__ = [
    "StackedConv2d",
    "stack_models",
    "unstack_into",
    "clip_per_seed",
    "seed_dirs",
    "parse_seeds",
    "train_seeds",
]


class StackedConv2d(nn.Module):
    """K ``Conv2d`` layers of equal shape as one: ``weight`` (K, out, in / groups, kh, kw),
    ``bias`` (K, out) or None. Input ``(K' * n, in, H, W)``, seed-major (rows ``i * n ..
    (i + 1) * n`` belong to the i-th active seed); ``active`` (indices into the K seeds, None:
    all) picks the seeds of the current pass. Runs as one convolution with ``groups * K'``
    groups on channels-last tensors; a pass of one seed is that seed's plain convolution."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        same = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
        for conv in convs:
            if any(getattr(conv, a) != getattr(first, a) for a in (*same, "groups")):
                raise TrainError("stacked convolutions differ in shape")
            if conv.padding_mode != "zeros" or (conv.bias is None) != (first.bias is None):
                raise TrainError("stacked convolutions need zero padding and equal bias use")
        self.stride, self.padding = first.stride, first.padding
        self.dilation, self.groups = first.dilation, first.groups
        self.weight = nn.Parameter(torch.stack([c.weight.detach() for c in convs]).clone())
        bias = None
        if first.bias is not None:
            bias = nn.Parameter(torch.stack([c.bias.detach() for c in convs]).clone())
        self.bias = bias
        self.active: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if self.active is not None:
            weight = weight.index_select(0, self.active)
            bias = None if bias is None else bias.index_select(0, self.active)
        k = weight.shape[0]
        args = (self.stride, self.padding, self.dilation)
        if k == 1:
            return F.conv2d(x, weight[0], None if bias is None else bias[0], *args, self.groups)
        n, (c, h, w) = x.shape[0] // k, x.shape[1:]
        # (k n, c, h, w) -> (n, h, w, k, c) -> (n, k c, h, w) channels-last
        xg = x.reshape(k, n, c, h, w).permute(1, 3, 4, 0, 2).reshape(n, h, w, k * c)
        y = F.conv2d(
            xg.permute(0, 3, 1, 2),
            weight.reshape(-1, *weight.shape[2:]),
            None if bias is None else bias.reshape(-1),
            *args,
            self.groups * k,
        )
        ho, wo = y.shape[-2:]
        y = y.permute(0, 2, 3, 1).reshape(n, ho, wo, k, -1).permute(3, 0, 1, 2, 4)
        return y.reshape(k * n, ho, wo, -1).permute(0, 3, 1, 2)


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One model running ``models`` (same architecture, one per seed) as K: a copy of the first
    with every ``Conv2d`` replaced by a :class:`StackedConv2d` of the K models' layers. Its
    parameters have the single models' names, in their order, with a leading seed axis.
    TrainError when a model has parameters outside ``Conv2d`` layers or buffers."""
    template = copy.deepcopy(models[0])
    names = [name for name, m in template.named_modules() if isinstance(m, nn.Conv2d)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = template.get_submodule(parent_name) if parent_name else template
        convs = [m.get_submodule(name) for m in models]
        setattr(parent, child, StackedConv2d(convs))  # keeps the module's place (param order)
    single = [n for n, _ in models[0].named_parameters()]
    stacked = [n for n, _ in template.named_parameters()]
    if single != stacked or any(True for _ in template.buffers()):
        raise TrainError(
            f"--seeds: {models[0].spec.get('name')} has parameters or buffers outside Conv2d "
            "layers; train it one seed per process"
        )
    return template


def set_active(model: nn.Module, active: torch.Tensor | None) -> None:
    """The seeds (indices into K; None: all) the next pass of a stacked model runs."""
    for m in model.modules():
        if isinstance(m, StackedConv2d):
            m.active = active


@torch.no_grad()
def unstack_into(stacked: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy the K seeds' weights of a :func:`stack_models` model into the single models."""
    for k, model in enumerate(models):
        for p, q in zip(stacked.parameters(), model.parameters(), strict=True):
            q.copy_(p[k])


@torch.no_grad()
def clip_per_seed(params: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` for each seed (leading axis) on its own: every seed's
    gradients scaled by ``min(1, max_norm / (norm + 1e-6))``, norm = that seed's global L2 norm.
    Returns the K norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1)
    total = norms.norm(dim=1)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape(-1, *[1] * (g.dim() - 1)).to(g.dtype))
    return total


def _seed_optimizer_state(state: dict, k: int, shapes: list[torch.Size]) -> dict:
    """Seed ``k``'s part of a stacked optimiser's state dict (tensors shaped as the stacked
    parameter are sliced; the step count and hyper-parameters are shared)."""
    out = {"state": {}, "param_groups": copy.deepcopy(state["param_groups"])}
    for i, entry in state["state"].items():
        out["state"][i] = {
            key: v[k].clone() if torch.is_tensor(v) and v.shape == shapes[i] else copy.deepcopy(v)
            for key, v in entry.items()
        }
    return out


def _stacked_optimizer_state(states: Sequence[dict], shapes: list[torch.Size]) -> dict:
    """The inverse of :func:`_seed_optimizer_state`: K single runs' optimiser states stacked."""
    out = {"state": {}, "param_groups": copy.deepcopy(states[0]["param_groups"])}
    for i, entry in states[0]["state"].items():
        out["state"][i] = {
            key: torch.stack([s["state"][i][key] for s in states])
            if torch.is_tensor(v) and v.shape == shapes[i][1:]
            else copy.deepcopy(v)
            for key, v in entry.items()
        }
    return out


def _combine(batches: Sequence[dict]) -> dict:
    """The seeds' batches as one, seed-major: tensors concatenated along the batch axis, the
    scale kept when it is one float (the caller groups by it), other values from the first."""
    out: dict[str, Any] = {}
    for key, value in batches[0].items():
        if key == "weight":
            continue  # per-sample loss weights enter each seed's own loss
        if key == "scale" and not torch.is_tensor(value):
            out[key] = value
        elif torch.is_tensor(value):
            out[key] = torch.cat([b[key] for b in batches])
        else:
            out[key] = value
    return out


def _groups(batches: Sequence[dict]) -> list[list[int]]:
    """Seeds that can share a pass: all of them when scales are per sample, else those whose
    batch drew the same scale."""
    if torch.is_tensor(batches[0]["scale"]):
        return [list(range(len(batches)))]
    by_scale: dict[float, list[int]] = {}
    for k, b in enumerate(batches):
        by_scale.setdefault(float(b["scale"]), []).append(k)
    return list(by_scale.values())


def seed_dirs(out: str | os.PathLike, seeds: Sequence[int]) -> list[Path]:
    """``OUT/seed<s>`` for every seed: where ``odesr train --seeds`` writes its runs."""
    return [Path(out) / f"seed{int(s)}" for s in seeds]


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; TrainError for anything but distinct integers."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise TrainError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise TrainError(f"--seeds: expected distinct integers, got {text!r}")
    return seeds


def _check_model(model: nn.Module, cfg: dict) -> None:
    """TrainError for what cannot be stacked: LR-input models, and adaptive training solvers
    (their step size follows the error of the whole batch, which would mix the seeds)."""
    kind = getattr(model, "input_kind", "upscaled")
    if kind != "upscaled":
        raise TrainError(
            f"--seeds: {cfg['model']['name']} takes the LR image (Meta-RDN and the fixed-scale "
            "nets train one seed per process)"
        )
    method = grid_options(cfg["train_solver"] or {}).get("method", DEFAULT_SOLVER.method)
    if model.is_ode and cfg["objective"] == "endpoint" and not is_fixed(method):
        raise TrainError(
            f"--seeds: train_solver {method!r} is adaptive (its steps follow the whole batch's "
            "error, which would mix the seeds); use a fixed-step method"
        )


def train_seeds(
    cfg: dict,
    seeds: Sequence[int],
    run_dirs: Sequence[str | os.PathLike],
    resume: bool = False,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
    data_workers: int = 0,
    tf32: bool = False,
) -> list[dict]:
    """Train ``cfg`` with each of ``seeds`` into the matching ``run_dirs`` at once (module
    docstring); returns one ``{"step", "loss", "final"}`` per seed, as :func:`odesr.train.train`.

    ``data_workers``: worker processes per seed. Raises :class:`NonFiniteLoss` (naming the seed)
    and :class:`TrainError` as :func:`odesr.train.train` does."""
    seeds = [int(s) for s in seeds]
    dirs = [Path(d) for d in run_dirs]
    if not seeds or len(set(seeds)) != len(seeds) or len(dirs) != len(seeds):
        raise TrainError("--seeds: distinct seeds, one run directory each")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise TrainError("--seeds: the seeds need distinct run directories")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainError("--seeds: one process only (not under torchrun)")
    dev = pick_device(device, 0)
    from odesr.evaluate import gpu_float32

    with gpu_float32(tf32):
        return _train_seeds(cfg, seeds, dirs, resume, dev, data_root, progress, data_workers)


class _Stack:
    """The K seeds' runs (:class:`TrainingRun`, what is saved) and the stacked model, EMA,
    optimizer and schedule that train them together (what is stepped)."""

    def __init__(self, runs: list[TrainingRun], resumed: bool) -> None:
        self.runs = runs
        self.model = stack_models([r.model for r in runs])
        self.ema = None
        if runs[0].ema is not None:
            self.ema = stack_models([r.ema for r in runs]).requires_grad_(False)
        self.opt, self.sched = make_optimizer(self.model, runs[0].cfg)
        self.params = list(self.model.parameters())
        self.shapes = [p.shape for p in self.params]
        if resumed:
            states = [r.opt.state_dict() for r in runs]
            self.opt.load_state_dict(_stacked_optimizer_state(states, self.shapes))
            self.sched.load_state_dict(runs[0].sched.state_dict())
        self.step = runs[0].step

    def batches(self, dev: torch.device) -> list[dict]:
        """Each seed's next batch (its own sampler stream; scale weights as a single run)."""
        out = []
        for run in self.runs:
            batch = run.sampler.next()
            if run.scale_weights is not None:
                batch["weight"] = weight_of(run.scale_weights, batch["scale"])
            out.append(_to_device(batch, dev, bool(run.cfg.get("channels_last"))))
        return out

    def update(self, clip: float, decay: float) -> list[float]:
        """Clip each seed's gradient (its own global norm), step the optimizer, schedule and
        EMA; the seeds' gradient norms before clipping (NaN: no clipping)."""
        norms = [float("nan")] * len(self.runs)
        if clip > 0:
            norms = [float(v) for v in clip_per_seed(self.params, clip)]
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            update_ema(self.ema, self.model, decay, self.step)
        self.step += 1
        return norms

    def sync(self) -> None:
        """The stacked state into the K single runs (before saving or validating)."""
        unstack_into(self.model, [r.model for r in self.runs])
        if self.ema is not None:
            unstack_into(self.ema, [r.ema for r in self.runs])
        state = self.opt.state_dict()
        for k, run in enumerate(self.runs):
            run.opt.load_state_dict(_seed_optimizer_state(state, k, self.shapes))
            run.sched.load_state_dict(self.sched.state_dict())
            run.step = self.step

    def close_samplers(self) -> None:
        for run in self.runs:
            if not isinstance(run.sampler, PatchSampler):
                run.sampler.close()


def _check_finite(
    losses: list[float], batches: list[dict], seeds: list[int], step: int, lasts: list[Path]
) -> None:
    """Stop all seeds, before the update, on a seed's non-finite loss (naming the seed)."""
    for k, value in enumerate(losses):
        if not math.isfinite(value):
            scale = batches[k]["scale"]
            raise NonFiniteLoss(
                f"seed {seeds[k]}: non-finite loss ({value}) at step {step + 1} "
                f"(scale {'mixed' if torch.is_tensor(scale) else f'{scale:.4g}'}); "
                f"last good checkpoint kept: {lasts[k] if lasts[k].exists() else 'none yet'}"
            )


class _SpeedLog:
    """Each seed's mean loss, steps/s and data share since the last log record."""

    def __init__(self, logs: list, step: int) -> None:
        self.logs = logs
        self.t_mark, self.s_mark, self.data_s = time.perf_counter(), step, 0.0
        self.loss_sum, self.loss_n = [0.0] * len(logs), 0

    def add(self, losses: list[float], data_s: float) -> None:
        self.loss_sum = [a + b for a, b in zip(self.loss_sum, losses, strict=True)]
        self.loss_n += 1
        self.data_s += data_s

    def write(self, step: int, lr: float, batches: list[dict], norms: list[float]) -> None:
        now = time.perf_counter()
        seconds = max(now - self.t_mark, 1e-9)
        for k, log in enumerate(self.logs):
            log.write(
                step=step,
                loss=self.loss_sum[k] / self.loss_n,
                lr=lr,
                steps_per_s=(step - self.s_mark) / seconds,
                data_share=self.data_s / seconds,
                **_batch_record(batches[k], norms[k]),
            )
        self.t_mark, self.s_mark, self.data_s = now, step, 0.0
        self.loss_sum, self.loss_n = [0.0] * len(self.logs), 0


def _train_seeds(
    cfg: dict,
    seeds: list[int],
    dirs: list[Path],
    resume: bool,
    dev: torch.device,
    data_root: str | None,
    progress: bool,
    data_workers: int,
) -> list[dict]:
    K = len(seeds)  # noqa: N806 (the number of seeds, as in the docs)
    cfgs = [{**copy.deepcopy(cfg), "seed": s} for s in seeds]
    runs = _seed_runs(cfgs, dev, data_root, data_workers)
    lasts = [d / "last.pt" for d in dirs]
    have = _restore_seed_runs(runs, seeds, lasts, resume)
    stack = _Stack(runs, resume and all(have))
    c0 = cfgs[0]
    val_images = load_val_images(c0, data_root)
    logs = _open_seed_logs(runs, dirs, dev, stack.step if resume else None, val_images)

    step_module = TrainStep(stack.model, c0)
    max_steps = int(c0["max_steps"])
    log_every, ckpt_every = int(c0["log_every"]), int(c0["checkpoint_every"])
    val_every = int(c0["val"].get("every") or 0)
    clip, decay = float(c0["grad_clip"]), float(c0["ema"])
    bar = progress_bar(c0, stack.step, progress, f" x {K} seeds")
    stack.model.train()
    speed = _SpeedLog(logs, stack.step)
    losses = [float("nan")] * K
    try:
        while stack.step < max_steps:
            t_data = time.perf_counter()
            batches = stack.batches(dev)
            data_s = time.perf_counter() - t_data
            stack.opt.zero_grad(set_to_none=True)
            _backward(stack.model, step_module, batches, losses, dev)
            _check_finite(losses, batches, seeds, stack.step, lasts)
            norms = stack.update(clip, decay)
            speed.add(losses, data_s)
            step = stack.step
            if bar is not None:
                bar.update(1)
            if step % log_every == 0 or step == max_steps:
                speed.write(step, stack.opt.param_groups[0]["lr"], batches, norms)
            if val_every and step % val_every == 0 and val_images:
                stack.sync()
                for run, log in zip(runs, logs, strict=True):
                    net = run.ema if run.ema is not None else run.model
                    v = validate(net, val_images, run.cfg, dev)
                    log.write(step=step, val_psnr=v, val_dataset=str(run.cfg["val"]["dataset"]))
            if ckpt_every and step % ckpt_every == 0 and step < max_steps:
                stack.sync()
                for run, last in zip(runs, lasts, strict=True):
                    save_run(run, last, 1, 0)
    finally:
        if bar is not None:
            bar.close()
        stack.close_samplers()
    stack.sync()
    results = []
    for k, (run, d, log) in enumerate(zip(runs, dirs, logs, strict=True)):
        save_run(run, lasts[k], 1, 0)
        save_run(run, d / "final.pt", 1, 0, final=True)
        log.write(done=True, step=stack.step, loss=losses[k])
        results.append({"step": stack.step, "loss": losses[k], "final": str(d / "final.pt")})
    return results


def _seed_runs(
    cfgs: list[dict], dev: torch.device, data_root: str | None, data_workers: int
) -> list[TrainingRun]:
    """One :class:`TrainingRun` per seed's config: its own init, optimizer, EMA and sampler
    stream over the same training images."""
    held_out = holdout_files(cfgs[0], data_root)
    images = load_training_images(cfgs[0]["data"], data_root, exclude=held_out)
    return [start_run(c, dev, images, 0, data_workers, check=_check_model)[0] for c in cfgs]


def _restore_seed_runs(
    runs: list[TrainingRun], seeds: list[int], lasts: list[Path], resume: bool
) -> list[bool]:
    """With ``resume``, every seed's ``last.pt`` into its run (all of them, at one step); which
    seeds had a ``last.pt``."""
    have = [p.exists() for p in lasts]
    if resume and any(have):
        if not all(have):
            missing = [str(s) for s, h in zip(seeds, have, strict=True) if not h]
            raise TrainError(
                f"--seeds --resume: no last.pt for seed(s) {', '.join(missing)}; resume needs "
                "every seed's run (or train those seeds on their own)"
            )
        for run, last in zip(runs, lasts, strict=True):
            restore_run(run, last, 0, 1)
        if len({run.step for run in runs}) != 1:
            steps = ", ".join(f"seed {s}: {r.step}" for s, r in zip(seeds, runs, strict=True))
            raise TrainError(f"--seeds --resume: the runs are at different steps ({steps})")
    elif not resume and any(have):
        print(
            "odesr train: the seeds' run directories have checkpoints; starting over "
            "(use --resume to continue)",
            file=sys.stderr,
        )
    return have


def _open_seed_logs(
    runs: list[TrainingRun],
    dirs: list[Path],
    dev: torch.device,
    resumed_at: int | None,
    val_images: list,
) -> list:
    """Each seed's run folder (config.yaml, the machine segment) and its metrics log (jsonl,
    TensorBoard when installed), continued from ``resumed_at``."""
    logs = []
    for run, d in zip(runs, dirs, strict=True):
        machine_segment(run, dev, 1, together=len(runs))
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "config.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(run.cfg, fh, sort_keys=False)
        log = MetricsLog(d / "metrics.jsonl", True, resumed_at)
        logs.append(
            tensorboard_log.tee(
                log,
                d,
                True,
                resumed_at,
                model=run.model,
                val_images=val_images,
                cfg=run.cfg,
                device=dev,
            )
        )
    return logs


def _backward(
    model: torch.nn.Module,
    step_module: TrainStep,
    batches: list[dict],
    losses: list[float],
    dev: torch.device,
) -> None:
    """Forward and backward of the K seeds' batches, one pass per group of seeds that can share
    one (:func:`_groups`); each seed's loss goes into ``losses``."""
    k_seeds = len(batches)
    for group in _groups(batches):
        # backward per pass, while its seeds are active: recomputed activations
        # (checkpoint_recompute) need the same seeds; gradients add up per seed
        active = None if len(group) == k_seeds else torch.tensor(group, device=dev)
        set_active(model, active)
        pred = step_module(_combine([batches[k] for k in group]))
        n = pred.shape[0] // len(group)
        total = torch.zeros((), device=dev)
        for i, k in enumerate(group):
            part = pred[i * n : (i + 1) * n]
            loss = compute_loss(lambda _batch, part=part: part, batches[k])
            losses[k] = float(loss.detach())
            total = total + loss
        total.backward()
        set_active(model, None)


def _batch_record(batch: dict, grad_norm: float) -> dict:
    """What a log record says of a seed's last batch: its scale (one-scale batches), the
    gradient norm before clipping (when clipped)."""
    record: dict = {}
    if not torch.is_tensor(batch["scale"]):
        record["scale"] = batch["scale"]
    if math.isfinite(grad_norm):
        record["grad_norm"] = grad_norm
    return record


def _to_device(batch: dict, dev: torch.device, channels_last: bool) -> dict:
    """A batch's images on ``dev`` (as the single-run step moves them)."""
    out = dict(batch)
    for key in ("x", "target"):
        out[key] = batch[key].to(dev, non_blocking=True)
    if channels_last:
        out["x"] = out["x"].contiguous(memory_format=torch.channels_last)
    return out
