"""Training steps/s of the cpu-profile models (run: ``python -m bench.train_speed``).

Times ``--steps`` optimisation steps (after 2 warm-up steps) of each config exactly as the
training loop runs them (patch sampling, solve, L1, backward, Adam), one thread, on T91, and
prints the losses so two versions of the code can be compared for identical results, and the
share of the float32 matmul peak measured in the same run that the step reaches, counting a
training step as 3x the forward FLOPs of its convolutions (backward = 2x forward) over the NFE
per sample: how much a faster step can still gain without changing the numerics. Imports only
``odesr`` and ``baselines`` (and the peak from :mod:`bench.inference_speed`), so running it from
another checkout times that version. (Run as a module: as a script, ``bench/`` would come first
on the path and ``bench/profile.py`` would shadow the standard library's ``profile``.)
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from odesr import models, train
from odesr.batches import PatchSampler, load_training_images
from odesr.objectives import TrainStep, compute_loss


def step_flops(model: torch.nn.Module, cfg: dict) -> float:
    """Training FLOPs of one step: 3 x 2 x conv multiply-adds of a forward pass on the batch's
    patches x the mean NFE per sample (:func:`bench.cost_model.train_nfe_per_step`)."""
    from bench.cost_model import train_nfe_per_step
    from bench.inference_speed import conv_macs

    size = int(cfg["patch_size"])
    macs = conv_macs(model, size, size) * int(cfg["batch_size"])
    return 3 * 2 * macs * train_nfe_per_step(cfg)


def steps_per_second(
    config: str, steps: int, data_root: str | None
) -> tuple[float, list[float], float]:
    """(steps/s, losses, training FLOPs per step) of ``config`` on T91, one process."""
    cfg = train.load_config(config)
    cfg["data"] = ["T91"]
    torch.manual_seed(int(cfg["seed"]))
    model = models.build(copy.deepcopy(cfg["model"])).train()
    kind = getattr(model, "input_kind", "upscaled")
    images = load_training_images(cfg["data"], data_root)
    sampler = PatchSampler(images, cfg, kind, cfg["objective"], int(cfg["seed"]), 0, None)
    step_module = TrainStep(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    losses: list[float] = []
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        batch = sampler.next()
        opt.zero_grad(set_to_none=True)
        loss = compute_loss(step_module, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return steps / (time.perf_counter() - start), losses, step_flops(model, cfg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu/vdsr-ode,cpu/rdn-ode")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--data-root", default=os.environ.get("ODESR_DATA"))
    args = parser.parse_args()
    from bench.inference_speed import matmul_peak

    torch.set_num_threads(1)
    for config in args.configs.split(","):
        load = os.getloadavg()[0]
        peak = matmul_peak()
        rate, losses, flops = steps_per_second(config, args.steps, args.data_root)
        shown = " ".join(f"{v:.6f}" for v in losses)
        achieved = rate * flops / 1e9
        print(
            f"{config}: {rate:.3f} steps/s (load {load:.1f}), {flops / 1e9:.1f} GFLOP/step = "
            f"{achieved:.1f} GFLOP/s = {achieved / peak:.0%} of the matmul peak "
            f"({peak:.1f} GFLOP/s, 1 thread, same run); losses {shown}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
