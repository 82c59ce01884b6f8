"""Training steps/s of the cpu-profile ODE models (run: ``python bench/train_speed.py``).

Times ``--steps`` optimisation steps (after 2 warm-up steps) of each config exactly as the
training loop runs them (patch sampling, solve, L1, backward, Adam), one thread, on T91, and
prints the losses so two versions of the code can be compared for identical results. Imports
only ``odesr``, so pointing ``PYTHONPATH`` at another checkout times that version.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from odesr import train


def steps_per_second(config: str, steps: int, data_root: str | None) -> tuple[float, list[float]]:
    cfg = train.load_config(config)
    cfg["data"] = ["T91"]
    torch.manual_seed(int(cfg["seed"]))
    model = train._models().build(copy.deepcopy(cfg["model"])).train()
    kind = getattr(model, "input_kind", "upscaled")
    images = train.load_training_images(cfg["data"], data_root)
    sampler = train.PatchSampler(images, cfg, kind, cfg["objective"], int(cfg["seed"]), 0, None)
    step_module = train._Step(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    losses: list[float] = []
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        batch = sampler.next()
        opt.zero_grad(set_to_none=True)
        loss = train.compute_loss(step_module, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return steps / (time.perf_counter() - start), losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu/vdsr-ode,cpu/rdn-ode")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--data-root", default=os.environ.get("ODESR_DATA"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for config in args.configs.split(","):
        load = os.getloadavg()[0]
        rate, losses = steps_per_second(config, args.steps, args.data_root)
        shown = " ".join(f"{v:.6f}" for v in losses)
        print(f"{config}: {rate:.3f} steps/s (load {load:.1f}); losses {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
