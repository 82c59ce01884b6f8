"""Checks for a CUDA machine (run it when a GPU is lent; what it measures is GPU-made).

    python -m bench.device_check --data-root DATA --out DIR [--workers 12]

1. Cross-device evaluation: the published cpu-profile weights of seed 0 (vdsr+t, vdsr-ODE,
   RDN+t, RDN-ODE with the paper's unweighted loss, Meta-SR's Meta-RDN;
   ``results/cpu/weights``) on B100's first 10 images at x2, x3, x4,
   x6 on the GPU, in float32 (the evaluation default) and in TF32, each paired per image with
   the CPU rows committed in ``results/cpu/claims-psnr.csv``.
2. Paper-profile training: a few steps of ``paper/<model>`` on CUDA, batches made in the main
   process (``--data-workers 0``) and ahead by ``--workers`` processes: steps/s, the share of the
   time spent waiting for batches, peak GPU memory; float32, as ``odesr.train`` runs on a GPU.
   Each run records its config's ``step_key`` (:func:`bench.cost_model.step_key`): ``bench
   plan`` prices the GPU training of those configs from the measured steps/s when
   ``bench/costs.yaml``'s ``gpu.device_check`` names this file. DIV2K, the paper's data, is
   not in the shared datasets, so the check trains on T91 (the per-step cost depends on patch
   and batch size, not on the images).

3. Small models against the GPU targets: the cpu profile's Table 1 models (vdsr+t, vdsr-ODE,
   RDN+t, RDN-ODE) in float32. Training: seed-steps/s with K seeds in one process
   (:mod:`odesr.multiseed`, ``--ks``, default 1 and 8; batches made ahead by the ``--workers``
   processes, ``workers // K`` per seed) against the one-thread steps/s of one
   seed on the CPU this repository was calibrated on (``bench/calibration/*.json``, the same
   config: ``step_s + s_per_gflop x GFLOP per step``); target: K seeds together at least 10x.
   Evaluation: milliseconds per image and scale of the whole pipeline
   (:func:`odesr.evaluate.evaluate_images` on B100 images already decoded: bicubic input,
   solve, crop, metrics) against the network's own share (the same solve on the same bicubic
   inputs, nothing else); target: the pipeline within 3x of the network.

Writes ``DIR/device-check.json`` (every number) and ``DIR/device-check.md`` (the tables).
``--small-profile smoke --ks 1,2 --small-steps 4 --device cpu`` is a dry run of section 3.
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
SMALL_MODELS = ("vdsr+t", "vdsr-ode", "rdn+t", "rdn-ode")  # Table 1's, on the chosen recipe
SMALL_SCALES = (2.0, 3.0, 4.0)
TRAIN_TARGET = 10.0  # K seeds together vs one seed on one CPU thread
EVAL_TARGET = 3.0  # the evaluation pipeline vs the network's own time
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


def paper_train_config(model_name: str, steps: int) -> dict:
    """``paper/<model_name>`` as the check trains it: T91 (DIV2K is not in the shared data),
    ``steps`` steps, no validation or checkpoints (only :data:`RUN_ONLY_KEYS
    <bench.cost_model.RUN_ONLY_KEYS>` change, so its step costs what the paper config's does)."""
    from odesr.train import load_config

    overrides = {"data": ["T91"], "val": {"every": 0}, "log_every": 5, "checkpoint_every": 0}
    return load_config(f"paper/{model_name}", overrides | {"max_steps": steps})


def train_speed(
    data_root: str, out: Path, workers: int, device: str = "cuda", fraction: float = 1.0
) -> list[dict]:
    """Steps/s, data share and peak memory of a few paper-profile steps per model and mode
    (``fraction`` of the steps: a dry run on the CPU)."""
    import torch

    from bench.cost_model import step_key
    from odesr.train import train

    cuda = device.startswith("cuda")

    results = []
    for model_name, serial_steps, ahead_steps in TRAIN_RUNS:
        for n_workers, steps in ((0, serial_steps), (workers, ahead_steps)):
            steps = max(int(steps * fraction), 2) if steps else 0
            if not steps:
                continue
            cfg = paper_train_config(model_name, steps)
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
            timed = _timed_records(run_dir / "metrics.jsonl")
            results.append(
                dict(
                    model=model_name,
                    step_key=step_key(cfg),
                    math="float32",  # odesr.train's default on a GPU (--tf32 would make it TF32)
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


def _timed_records(metrics: Path) -> list[dict]:
    """A run's log records that carry a speed, the first left out (warm-up, cuDNN's tuning)
    when there are others."""
    log = [json.loads(x) for x in metrics.read_text().splitlines()]
    timed = [r for r in log if "steps_per_s" in r]
    return timed[1:] or timed


def _cpu_step_seconds(cfg: dict, calibration: dict | None) -> float | None:
    """One-thread seconds per step of one seed of ``cfg`` on the calibrated CPU."""
    if calibration is None:
        return None
    from bench.price import step_seconds

    return step_seconds(cfg, calibration)


def small_train(
    data_root: str,
    out: Path,
    device: str,
    ks: Sequence[int],
    steps: int,
    profile: str = "cpu",
    calibration: dict | None = None,
    workers: int = 0,
) -> list[dict]:
    """Seed-steps/s of the small models with K seeds together (float32), against the
    calibrated CPU's one-thread steps/s of one seed; batches made ahead by ``workers // K``
    processes per seed (at least one, so K of them when K > ``workers``; 0: in the main
    process), and the share of the time spent waiting for them."""
    from bench.cost_model import step_key
    from odesr.multiseed import seed_dirs, train_seeds
    from odesr.train import load_config

    results = []
    for model_name in SMALL_MODELS:
        for k in ks:
            cfg = load_config(
                f"{profile}/{model_name}",
                {"val": {"every": 0}, "log_every": max(steps // 4, 1), "checkpoint_every": 0}
                | {"max_steps": steps},
            )
            run = out / f"small-{model_name}-k{k}"
            per_seed = max(workers // k, 1) if workers else 0
            start = time.perf_counter()
            try:
                train_seeds(cfg, list(range(k)), seed_dirs(run, range(k)), device=device,
                            data_root=data_root, progress=False,
                            data_workers=per_seed)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a check reports every failure and goes on
                results.append(dict(model=model_name, k=k, error=repr(exc)))
                print(json.dumps(results[-1]), flush=True)
                continue
            timed = _timed_records(run / "seed0" / "metrics.jsonl")
            steps_per_s = statistics.median(r["steps_per_s"] for r in timed)
            cpu_step = _cpu_step_seconds(cfg, calibration)
            results.append(
                dict(
                    model=model_name,
                    k=k,
                    step_key=step_key(cfg),
                    math="float32",
                    steps=steps,
                    batch=cfg["batch_size"],
                    patch=cfg["patch_size"],
                    data_workers=per_seed * k,
                    data_share=statistics.median(r["data_share"] for r in timed),
                    seed_steps_per_s=k * steps_per_s,
                    cpu_one_thread_steps_per_s=None if cpu_step is None else 1.0 / cpu_step,
                    vs_cpu=None if cpu_step is None else k * steps_per_s * cpu_step,
                    wall_s=time.perf_counter() - start,
                )
            )
            print(json.dumps(results[-1]), flush=True)
    return results


class _OpCount:
    """Aten operators dispatched during an evaluation (on a GPU each is about one kernel
    launch), split into those inside ``model.super_resolve`` (bicubic input and solve) and the
    rest of the pipeline (HR stack, degradation, metrics, copies to the host)."""

    def __init__(self) -> None:
        self.network = 0
        self.other = 0
        self.inside = False

    def run(self, model, images: Sequence, scales: Sequence[float], settings) -> None:
        """Count the operators of ``evaluate_images(model, images, scales, settings)``."""
        from torch.utils._python_dispatch import TorchDispatchMode

        from odesr.evaluate import evaluate_images

        counter = self
        inner = model.super_resolve

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if counter.inside:
                    counter.network += 1
                else:
                    counter.other += 1
                return func(*args, **(kwargs or {}))

        def counted(*args, **kwargs):
            counter.inside = True
            try:
                return inner(*args, **kwargs)
            finally:
                counter.inside = False

        model.super_resolve = counted
        try:
            with Mode():
                evaluate_images(model, images, scales, settings)
        finally:
            del model.super_resolve


def small_eval(data_root: str, device: str, n_images: int, profile: str = "cpu") -> list[dict]:
    """Milliseconds per image and scale of the evaluation pipeline (wall time of
    :func:`odesr.evaluate.evaluate_images` on decoded images: degradation, bicubic input, solve,
    crop, metrics) and of the model's super-resolution alone (the rows' ``seconds``: bicubic
    input and solve), random weights of the profile's configs (the cost does not depend on
    them); and, in a separate pass, the operators each dispatches per image and scale
    (:class:`_OpCount`: what a launch-bound GPU pays for), in the steady state a run of units
    reaches: after the timed pass, so the resize matrices and each batch's HR stack and
    reference are made already (a first pass over new images adds their ops once)."""
    from odesr.data import list_images, load_images
    from odesr.evaluate import EvalSettings, evaluate_images
    from odesr.models import build
    from odesr.train import load_config

    images = load_images(list_images("B100", data_root)[:n_images])
    results = []
    for model_name in SMALL_MODELS:
        model = build(dict(load_config(f"{profile}/{model_name}", [])["model"])).to(device).eval()
        settings = EvalSettings(device=device, workers=1)
        evaluate_images(model, images[:1], SMALL_SCALES[:1], settings)  # warm-up
        _sync(device)
        start = time.perf_counter()
        rows = evaluate_images(model, images, SMALL_SCALES, settings)
        _sync(device)
        pipeline = time.perf_counter() - start
        network = sum(float(r["seconds"]) for r in rows)
        ops = _OpCount()
        ops.run(model, images, SMALL_SCALES, settings)
        results.append(
            dict(
                model=model_name,
                image_scales=len(rows),
                pipeline_ms=1000 * pipeline / len(rows),
                network_ms=1000 * network / len(rows),
                ratio=pipeline / network if network > 0 else None,
                network_ops=ops.network / len(rows),
                other_ops=ops.other / len(rows),
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
        "## Paper-profile training steps on the GPU (T91 data, "
        + ("float32" if info.get("train_math") == "float32" else "TF32: PyTorch's default then")
        + ")",
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
    lines += _small_markdown(info.get("small_train") or [], info.get("small_eval") or [])
    return "\n".join(lines) + "\n"


def _small_markdown(train: list[dict], evals: list[dict]) -> list[str]:
    if not (train or evals):
        return []
    lines = [
        "",
        "## Small models: K seeds trained together (float32) against one seed on one CPU thread",
        "",
        f"Target: at least {TRAIN_TARGET:g}x. CPU: the committed calibration "
        "(`bench/calibration/`), the same config.",
        "",
        "| model | K | patch x batch | data workers | waiting for data | seed-steps/s "
        "| CPU steps/s (1 thread, 1 seed) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in train:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['k']} | failed: {r['error']} | | | | | |")
            continue
        cpu = r["cpu_one_thread_steps_per_s"]
        ratio = "-" if r["vs_cpu"] is None else f"{r['vs_cpu']:.1f}x"
        lines.append(
            f"| {r['model']} | {r['k']} | {r['patch']} x {r['batch']} | {r['data_workers']} | "
            f"{r['data_share']:.0%} | {r['seed_steps_per_s']:.1f} | "
            f"{'-' if cpu is None else f'{cpu:.2f}'} | {ratio} |"
        )
    lines += [
        "",
        "## Small models: evaluation pipeline against the network (ms per image and scale)",
        "",
        f"Target: the pipeline within {EVAL_TARGET:g}x of the network; B100, "
        f"x{'/x'.join(f'{s:g}' for s in SMALL_SCALES)}.",
        "",
        "Operators: aten calls per image and scale (about one kernel launch each on a GPU), "
        "inside the network's call and in the rest of the pipeline.",
        "",
        "| model | image-scales | pipeline ms | network ms | ratio | network ops | other ops |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in evals:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        ops = [f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in ("network_ops", "other_ops")]
        lines.append(
            f"| {r['model']} | {r['image_scales']} | {r['pipeline_ms']:.1f} | "
            f"{r['network_ms']:.1f} | {ratio} | {ops[0]} | {ops[1]} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder holding B100/HR and T91/HR")
    p.add_argument("--out", required=True, help="folder for device-check.json/.md and the runs")
    p.add_argument(
        "--workers",
        type=int,
        default=12,
        help="data workers of the prefetch runs (and, shared by the K seeds, of the small runs)",
    )
    p.add_argument("--skip", action="append", default=[], choices=["eval", "train", "small"])
    p.add_argument("--device", default="cuda", help="cuda; cpu: a dry run of the script")
    p.add_argument("--images", type=int, default=10, help="B100 images of the evaluation")
    p.add_argument("--fraction", type=float, default=1.0, help="of the training steps (dry run)")
    p.add_argument("--ks", default="1,8", help="seeds trained together (small models)")
    p.add_argument("--small-steps", type=int, default=60, help="training steps (small models)")
    p.add_argument("--small-profile", default="cpu", help="configs of the small models")
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
        "train_math": "float32",  # what odesr.train runs on a GPU unless given --tf32
        "cross_device": []
        if "eval" in args.skip
        else cross_device(args.data_root, args.device, args.images),
        "train": []
        if "train" in args.skip
        else train_speed(args.data_root, out, args.workers, args.device, args.fraction),
    }
    if "small" not in args.skip:
        from bench.calibrate import CALIBRATION_DIR

        files = sorted(CALIBRATION_DIR.glob("*.json"))
        calibration = json.loads(files[0].read_text()) if files else None
        ks = [int(k) for k in args.ks.split(",")]
        info["small_cpu_calibration"] = files[0].name if files else None
        info["small_train"] = small_train(
            args.data_root, out, args.device, ks, args.small_steps, args.small_profile,
            calibration, args.workers if args.device != "cpu" else 0,
        )  # fmt: skip
        info["small_eval"] = small_eval(
            args.data_root, args.device, args.images, args.small_profile
        )
    (out / "device-check.json").write_text(json.dumps(info, indent=1))
    (out / "device-check.md").write_text(markdown(info))
    print(markdown(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
