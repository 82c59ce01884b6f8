"""Reproducibility of training (issue 9 item 4): the same config trained with another thread count,
set against the spread between seeds.

    python -m bench.repro vdsr+t rdn+t --profile cpu --threads 2 --seeds 0,1,2 \
        [--images 20] [--scales 2,3,4] [--out results/cpu/reproducibility]

For each model id of ``table1`` (its plan, so seed 0 with one thread is table1's checkpoint):
seed 0 is trained again with ``--threads`` torch threads into ``CHECKPOINTS/threads-N/`` (resumed
when killed), seeds 1.. with one thread into the usual ``CHECKPOINTS/<profile>/`` folders (the
claim experiments reuse them). Each checkpoint is scored on B100's first ``--images`` images
(default protocol, Y-PSNR, ODE models with their own solver). Reported per model and scale:

* thread delta: PSNR(N threads) - PSNR(1 thread), mean and mean |.| over images;
* seed spread: the standard deviation over seeds of the mean PSNR, and the mean |.| of the
  per-image differences between seed pairs.

Training on the CPU is deterministic for a given thread count (``bench.checkpoints
.deterministic``); another thread count changes the order of float reductions, so the two runs
drift apart like two seeds would, only less. Writes ``OUT.csv`` and ``OUT.md`` atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
from pathlib import Path

import torch

from bench.checkpoints import ensure_checkpoint
from bench.experiment import load_experiment
from bench.profile import Profile, add_profile_arguments, profile_from_args
from odesr.checkpoints import load
from odesr.data import list_images, load_image
from odesr.evaluate import EvalSettings, evaluate_images, parse_scales
from odesr.io import write_text_atomic

__all__ = ["main", "thread_and_seed_figures"]


def _plan(model_id: str, profile: Profile, seed: int):
    (plan,) = load_experiment("table1").model_plans(model_id, profile)
    return dataclasses.replace(plan, train_cfg={**plan.train_cfg, "seed": seed})


def _psnr(final: Path, images, scales: list[float]) -> dict[tuple[str, float], float]:
    rows = evaluate_images(load(final), images, scales, EvalSettings(workers=1))
    return {(r["image"], float(r["scale"])): float(r["psnr"]) for r in rows}


def thread_and_seed_figures(
    one_thread: dict, other_threads: dict, seeds: list[dict], scale: float
) -> dict[str, float]:
    """The report's numbers at ``scale`` from {(image, scale): psnr} maps (see module doc)."""
    keys = sorted(k for k in one_thread if k[1] == scale)
    delta = [other_threads[k] - one_thread[k] for k in keys]
    out = {
        "thread_delta_mean": statistics.fmean(delta),
        "thread_delta_abs": statistics.fmean(abs(d) for d in delta),
    }
    if len(seeds) >= 2:
        means = [statistics.fmean(s[k] for k in keys) for s in seeds]
        pairs = [
            statistics.fmean(abs(a[k] - b[k]) for k in keys)
            for a, b in itertools.combinations(seeds, 2)
        ]
        out["seed_sd_of_means"] = statistics.stdev(means)
        out["seed_pair_abs"] = statistics.fmean(pairs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repro", description=__doc__)
    parser.add_argument("models", nargs="+", help="table1 model ids, e.g. vdsr+t rdn-ode")
    add_profile_arguments(parser)
    parser.add_argument("--threads", type=int, default=2, help="the other thread count")
    parser.add_argument("--seeds", default="0,1,2", help="seeds for the spread (1 thread)")
    parser.add_argument("--images", type=int, default=20, help="B100's first N images")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default=None, help="default <results>/<profile>/reproducibility")
    args = parser.parse_args(argv)
    profile = profile_from_args(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    scales = parse_scales(args.scales)
    images = [load_image(f) for f in list_images("B100", args.data_root)[: args.images]]
    out = Path(args.out or profile.results / "reproducibility")
    other_threads = dataclasses.replace(
        profile, checkpoints_root=profile.checkpoints_root / f"threads-{args.threads}"
    )
    lines, rows = [], ["model,scale,figure,value_db"]
    for model_id in args.models:
        torch.set_num_threads(args.threads)
        other = ensure_checkpoint(
            _plan(model_id, profile, 0), other_threads, args.data_root, progress=False
        )
        torch.set_num_threads(1)
        finals = [
            ensure_checkpoint(_plan(model_id, profile, s), profile, args.data_root, progress=False)
            for s in seeds
        ]
        by_seed = [_psnr(f, images, scales) for f in finals]
        other_psnr = _psnr(other, images, scales)
        base = by_seed[seeds.index(0)]
        for scale in scales:
            figs = thread_and_seed_figures(base, other_psnr, by_seed, scale)
            rows += [f"{model_id},{scale:g},{k},{v:.4f}" for k, v in figs.items()]
            lines.append(
                f"| {model_id} | x{scale:g} | {figs['thread_delta_mean']:+.3f} | "
                f"{figs['thread_delta_abs']:.3f} | {figs.get('seed_sd_of_means', float('nan')):.3f}"
                f" | {figs.get('seed_pair_abs', float('nan')):.3f} |"
            )
        print(lines[-1], flush=True)
    header = (
        f"# Training reproducibility ({profile.name} profile)\n\n"
        f"Generated by `python -m bench.repro {' '.join(args.models)} --profile {profile.name} "
        f"--threads {args.threads} --seeds {args.seeds} --images {args.images} --scales "
        f"{args.scales}` (do not edit by hand). B100 first {args.images} images, Y-PSNR in dB, "
        f"default protocol. Thread delta: seed 0 trained with {args.threads} threads minus seed 0 "
        f"with 1 thread (table1's checkpoint), per image. Seed spread: seeds {args.seeds} with 1 "
        "thread: standard deviation of their mean PSNR, and mean |difference| per image over "
        "seed pairs.\n\n"
        f"| model | scale | thread delta, mean | thread delta, mean abs | seed sd of means | "
        "seed pairs, mean abs |\n|---|---|---|---|---|---|\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".csv"), "\n".join(rows) + "\n")
    write_text_atomic(out.with_suffix(".md"), header + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
