"""Checks for a CUDA machine (run it when a GPU is lent; what it measures is GPU-made).

    python -m bench.device_check --data-root DATA --out DIR [--workers 12]

1. Cross-device evaluation: the published cpu-profile weights of seed 0 (vdsr+t, vdsr-ODE,
   RDN+t, RDN-ODE with the paper's unweighted loss, Meta-SR's Meta-RDN;
   ``results/cpu/weights``) on B100's first 10 images at x2, x3, x4,
   x6 on the GPU, in float32 (the evaluation default) and in TF32, each paired per image with
   the CPU rows committed in ``results/cpu/claims-psnr.csv``.
2. Paper-profile training: a few steps of ``paper/<model>`` on CUDA, batches made in the main
   process (``--data-workers 0``) and ahead by ``--workers`` processes: steps/s, the share of the
   time spent waiting for batches, peak GPU memory. DIV2K, the paper's data, is not in the shared
   datasets, so the check trains on T91 (the per-step cost depends on patch and batch size, not
   on the images).

Writes ``DIR/device-check.json`` (every number) and ``DIR/device-check.md`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLAIMS_ROWS = REPO / "results/cpu/claims-psnr.csv"
# seed 0 of each, as committed at x2/x3/x4/x6 on B100's first 20 (claims.yaml's main sweep)
MODELS = (
    "vdsr+t-unweighted",
    "vdsr-ode-unweighted",
    "rdn+t",
    "rdn-ode-unweighted",
    "meta-rdn-noskip",
)
SCALES = (2.0, 3.0, 4.0, 6.0)
# (model, steps with workers 0, steps with workers N)
TRAIN_RUNS = (
    ("vdsr-ode", 30, 60),
    ("vdsr+t", 60, 60),
    ("rdn-ode", 8, 12),
    ("rdn+t", 0, 20),
    ("meta-rdn", 0, 30),
)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cross_device(data_root: str, device: str, n_images: int = 10) -> list[dict]:
    """Per model and math mode: mean, max |GPU - CPU| per-image PSNR over the shared rows."""
    from odesr.checkpoints import load_model
    from odesr.data import list_images, load_images
    from odesr.evaluate import EvalSettings, evaluate_images
    from odesr.io import read_csv_rows

    images = load_images(list_images("B100", data_root)[:n_images])
    seed0 = [
        r
        for r in read_csv_rows(CLAIMS_ROWS).rows
        if r["seed"] == "0" and r["dataset"] == "B100" and r["model"] in MODELS
    ]
    out = []
    for model_name in MODELS:
        mine = [r for r in seed0 if r["model"] == model_name]
        weights = mine[0]["weights"]  # the published weights' key
        ref = {(r["image"], float(r["scale"])): float(r["psnr"]) for r in mine}
        model = load_model(REPO / "results/cpu/weights" / f"{weights}.pt", device)
        for tf32 in (False, True):
            start = time.perf_counter()
            rows = evaluate_images(model, images, SCALES, EvalSettings(device=device, tf32=tf32))
            _sync(device)
            diffs = [
                r["psnr"] - ref[(r["image"], float(r["scale"]))]
                for r in rows
                if (r["image"], float(r["scale"])) in ref
            ]
            out.append(
                dict(
                    model=model_name,
                    weights=weights,
                    math="tf32" if tf32 else "float32",
                    n_pairs=len(diffs),
                    mean_diff=statistics.fmean(diffs) if diffs else None,
                    max_abs_diff=max(map(abs, diffs)) if diffs else None,
                    seconds=time.perf_counter() - start,
                )
            )
            print(json.dumps(out[-1]), flush=True)
    return out


def train_speed(
    data_root: str, out: Path, workers: int, device: str = "cuda", fraction: float = 1.0
) -> list[dict]:
    """Steps/s, data share and peak memory of a few paper-profile steps per model and mode
    (``fraction`` of the steps: a dry run on the CPU)."""
    import torch

    from odesr.train import load_config, train

    cuda = device.startswith("cuda")

    results = []
    for model_name, serial_steps, ahead_steps in TRAIN_RUNS:
        for n_workers, steps in ((0, serial_steps), (workers, ahead_steps)):
            steps = max(int(steps * fraction), 2) if steps else 0
            if not steps:
                continue
            cfg = load_config(
                f"paper/{model_name}",
                {
                    "data": ["T91"],
                    "val": {"every": 0},
                    "log_every": 5,
                    "checkpoint_every": 0,
                    "max_steps": steps,
                },
            )
            run_dir = out / f"train-{model_name}-w{n_workers}"
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                train(
                    cfg,
                    run_dir,
                    device=device,
                    data_root=data_root,
                    progress=False,
                    data_workers=n_workers,
                )
            except Exception as exc:  # noqa: BLE001 - a check reports every failure and goes on
                results.append(dict(model=model_name, workers=n_workers, error=repr(exc)))
                print(json.dumps(results[-1]), flush=True)
                continue
            log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
            timed = [r for r in log if "steps_per_s" in r]
            timed = timed[1:] or timed  # the first holds cuDNN's tuning
            results.append(
                dict(
                    model=model_name,
                    workers=n_workers,
                    steps=steps,
                    patch=cfg["patch_size"],
                    batch=cfg["batch_size"],
                    steps_per_s=statistics.median(r["steps_per_s"] for r in timed),
                    data_share=statistics.median(r["data_share"] for r in timed),
                    peak_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                    wall_s=time.perf_counter() - start,
                )
            )
            print(json.dumps(results[-1]), flush=True)
    return results


def markdown(info: dict) -> str:
    lines = [
        "# Device check",
        "",
        f"Machine: {info['device']}; torch {info['torch']}. "
        "Command: `python -m bench.device_check`.",
        "",
        "## Cross-device evaluation (GPU - committed CPU rows, per image, dB)",
        "",
        "| model | math | pairs | mean | max abs |",
        "|---|---|---|---|---|",
    ]
    for r in info["cross_device"]:
        lines.append(
            f"| {r['model']} | {r['math']} | {r['n_pairs']} | {r['mean_diff']:+.4f} | "
            f"{r['max_abs_diff']:.4f} |"
        )
    lines += [
        "",
        "## Paper-profile training steps on the GPU (T91 data)",
        "",
        "| model | patch x batch | data workers | steps/s | waiting for data | peak GB "
        "| 600k steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in info["train"]:
        if "error" in r:
            lines.append(f"| {r['model']} | | {r['workers']} | failed: {r['error']} | | | |")
            continue
        days = 600_000 / r["steps_per_s"] / 86400
        lines.append(
            f"| {r['model']} | {r['patch']} x {r['batch']} | {r['workers']} | "
            f"{r['steps_per_s']:.2f} | {r['data_share']:.0%} | {r['peak_gb']:.1f} | "
            f"{days:.1f} days |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder holding B100/HR and T91/HR")
    p.add_argument("--out", required=True, help="folder for device-check.json/.md and the runs")
    p.add_argument("--workers", type=int, default=12, help="data workers of the prefetch runs")
    p.add_argument("--skip", action="append", default=[], choices=["eval", "train"])
    p.add_argument("--device", default="cuda", help="cuda; cpu: a dry run of the script")
    p.add_argument("--images", type=int, default=10, help="B100 images of the evaluation")
    p.add_argument("--fraction", type=float, default=1.0, help="of the training steps (dry run)")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench.device_check: no CUDA device here", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "device": torch.cuda.get_device_name() if args.device != "cpu" else "cpu",
        "torch": torch.__version__,
        "train_cudnn_tf32": torch.backends.cudnn.allow_tf32,  # PyTorch's default, kept by training
        "cross_device": []
        if "eval" in args.skip
        else cross_device(args.data_root, args.device, args.images),
        "train": []
        if "train" in args.skip
        else train_speed(args.data_root, out, args.workers, args.device, args.fraction),
    }
    (out / "device-check.json").write_text(json.dumps(info, indent=1))
    (out / "device-check.md").write_text(markdown(info))
    print(markdown(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
