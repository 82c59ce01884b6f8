"""Calibration of the cost model on the machine at hand: real training steps and evaluations
timed here (:func:`calibrate`, stored per CPU model and torch version under
``bench/calibration/``), the share of a core a process gets, and the convolution throughput
fallback (:func:`measure_cpu`, :func:`flop_calibration`)."""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.cost_model import (
    Costs,
    backbone_of,
    dataset_names,
    dataset_sizes,
    flops_per_pixel,
    protocol_size,
    spec_flops_per_pixel,
    step_flops,
)
from bench.experiment import load_experiment
from bench.profile import Profile

__all__ = [
    "CALIBRATION_DIR",
    "FAMILIES",
    "CALIBRATION_IMAGES",
    "CALIBRATION_STEPS",
    "CALIBRATION_BATCHES",
    "cpu_model",
    "device_kind",
    "calibration_path",
    "load_calibration",
    "fit_line",
    "cpu_seconds",
    "core_share",
    "calibrate",
    "save_calibration",
    "flop_calibration",
    "cost_model",
    "measure_cpu",
    "throughput_from_results",
]


CALIBRATION_DIR = Path(__file__).with_name("calibration")


FAMILIES = ("vdsr", "rdn")  # the backbone families calibrated, by their cpu-profile ODE model


CALIBRATION_IMAGES = 2  # B100 images per evaluation probe


CALIBRATION_STEPS = {"vdsr": 12, "rdn": 5}  # training steps timed after 2 warm-up steps


CALIBRATION_BATCHES = (8, 2)  # two batch sizes per family: per-step and per-FLOP costs apart


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() or c == "." else " " for c in text).lower().split())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` knows)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_kind(device: str = "cpu") -> str:
    """``<cpu model or gpu name>-torch<version>``, lower case, the name of a calibration file."""
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_model()
    return f"{_slug(name)}-torch{_slug(str(torch.__version__))}"


def calibration_path(kind: str | None = None) -> Path:
    return CALIBRATION_DIR / f"{kind or device_kind()}.json"


def load_calibration(kind: str | None = None) -> dict | None:
    """The stored calibration of ``kind`` (default: this CPU and torch); None when there is none
    (calibrate with ``python -m bench plan --calibrate``)."""
    path = calibration_path(kind)
    if not path.is_file():
        return None
    cal = json.loads(path.read_text(encoding="utf-8"))
    cal["path"] = str(path.relative_to(CALIBRATION_DIR.parent.parent))
    return cal


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of the line through two points (x, y), both kept >= 0 (noise): a
    negative slope gives a flat line at the mean, a negative intercept a line through 0 (least
    squares)."""
    (x0, y0), (x1, y1) = sorted(points)
    slope = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
    if slope <= 0:
        return (y0 + y1) / 2, 0.0
    if y0 - slope * x0 < 0:
        return 0.0, (x0 * y0 + x1 * y1) / (x0 * x0 + x1 * x1)
    return y0 - slope * x0, slope


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    import resource

    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Meter:
    """Wall and CPU seconds of timed calls, each returned and all summed (their ratio: the
    share of a core this process got)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __call__(self, fn: Callable, *args, **kwargs) -> tuple[object, float, float]:
        """``(fn(*args, **kwargs), wall seconds, CPU seconds)``."""
        import time

        cpu0, start = cpu_seconds(), time.perf_counter()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
        self.wall += wall
        self.cpu += cpu
        return out, wall, cpu


STARTUP_CODE = (
    "import odesr.cli, odesr.evaluate, odesr.models, odesr.train, odesr.tensorboard_log\n"
    "try:\n    from torch.utils.tensorboard import SummaryWriter\n"
    "except ImportError:\n    pass\n"
    "odesr.models.build({'name': 'vdsr-ode', 'preset': 'smoke'})\n"
)  # what a command does before its work: imports, and a first model build (torch's lazy imports)


def _startup() -> None:
    """A fresh one-thread interpreter running :data:`STARTUP_CODE`."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", STARTUP_CODE], env=env, check=True)


def core_share(seconds: float = 2.0) -> float:
    """The share of a core a one-thread process gets now, in (0, 1]: CPU / wall seconds of a
    busy loop of ``seconds``. 1 on a free core, less where other processes compete for the
    cores; a command's wall seconds are its CPU seconds (the calibration's unit) / this share."""
    import time

    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        sum(range(10_000))
    share = (time.process_time() - cpu0) / (time.perf_counter() - start)
    return min(max(share, 0.01), 1.0)


def _train_cpu(meter: _Meter, cfg: dict, data_root: str | None, steps: int) -> float:
    """CPU seconds of a real :func:`odesr.train.train` call of ``steps`` steps of ``cfg`` in a
    temporary run directory, checkpoints at the end only."""
    import tempfile

    from odesr.train import train

    cfg = {**cfg, "max_steps": steps, "checkpoint_every": 0}
    with tempfile.TemporaryDirectory(prefix="odesr-calibrate-") as tmp:
        return meter(train, cfg, tmp, device="cpu", data_root=data_root, progress=False)[2]


def _eval_images(model, images: list, scale: float, steps: int) -> None:
    """:func:`odesr.evaluate.evaluate_images` of ``model`` with ``steps`` Euler steps."""
    from odesr.evaluate import EvalSettings, evaluate_images

    solver = model.solver_settings({"method": "euler", "steps": steps})
    evaluate_images(model, images, [scale], EvalSettings(solver=solver, batch_size=16))


def calibrate(data_root: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Measure this machine with one torch thread and return its calibration.

    Real work, timed in CPU seconds of one thread (what a free core would take; steadier than
    wall seconds under load, see :func:`core_share`): start-up of a fresh
    interpreter (:data:`STARTUP_CODE`); decoding (T91, B100 images); training
    (:func:`odesr.train.train` runs of the cpu-profile ODE model of each family on Set5 at batch
    8 and 2, of 2 and 2 + K steps: their difference gives seconds per step = ``step_s +
    s_per_gflop x forward GFLOP per step``, the 2-step run less its steps and decoding the fixed
    cost of a run ``run_s``: model, first-step warm-up, checkpoints); evaluation
    (:func:`odesr.evaluate.evaluate_images` of the same nets, random weights, on B100 images at
    x3 with one and four Euler steps; one least-squares fit of seconds per image and scale =
    ``s_per_mpx x output Mpx + s_per_gflop[family] x forward GFLOP``)."""

    import numpy as np
    import torch

    from odesr.batches import load_training_images
    from odesr.data import list_images, load_images
    from odesr.models import build
    from odesr.train import load_config

    load0, meter = os.getloadavg()[0], _Meter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, _, startup = meter(_startup)
        imgs, _, cpu = meter(load_training_images, ["T91"], data_root)
        decode_train = cpu / (sum(int(i.shape[-1]) * int(i.shape[-2]) for i in imgs) / 1e6)
        files = list_images("B100", data_root)[:CALIBRATION_IMAGES]
        images, _, cpu = meter(load_images, files)
        decode_eval = cpu / (sum(int(m.rgb.shape[-1]) * int(m.rgb.shape[-2]) for m in images) / 1e6)
        set5 = sum(h * w for h, w in dataset_sizes("Set5", data_root)) / 1e6 * decode_train
        scale = 3.0
        out_mpx = (
            sum(
                math.prod(protocol_size((int(m.rgb.shape[-2]), int(m.rgb.shape[-1])), scale))
                for m in images
            )
            / 1e6
        )
        train, run_s, rows, ys = {}, [], [], []
        for k, fam in enumerate(FAMILIES):
            cfg = load_config(f"cpu/{fam}-ode", [])
            cfg.update(data=["Set5"], holdout={"dataset": None, "n_images": 0})
            cfg["val"] = {**cfg["val"], "every": 0}
            if k == 0:  # untimed: the first call's one-time imports belong to start-up
                _train_cpu(_Meter(), {**cfg, "batch_size": 1}, data_root, 1)
            points, n = [], CALIBRATION_STEPS[fam]
            for batch in CALIBRATION_BATCHES:
                part = {**cfg, "batch_size": batch}
                short = _train_cpu(meter, part, data_root, 2)  # warm-up steps, checkpoints
                step = (_train_cpu(meter, part, data_root, 2 + n) - short) / n
                points.append((step_flops(part) / 1e9, step))
                run_s.append(short - 2 * step - set5)
            a, b = fit_line(points)
            train[fam] = {"step_s": a, "s_per_gflop": b, "points": points}
            model = build(dict(cfg["model"])).eval()
            gflop = out_mpx * 1e6 * spec_flops_per_pixel(cfg["model"], scale) / 1e9
            for n in (1, 4):
                _, _, cpu = meter(_eval_images, model, images, scale, n)
                rows.append(
                    [out_mpx] + [n * gflop if j == k else 0.0 for j in range(len(FAMILIES))]
                )
                ys.append(cpu)
            log(f"  {fam}: train {points[0][1]:.3f} s/step at batch 8, eval {ys[-1]:.2f} s (CPU)")
        coef = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0]
        if coef[0] < 0:  # noise: all of it per FLOP
            coef = np.concatenate(
                [[0.0], np.linalg.lstsq(np.array(rows)[:, 1:], ys, rcond=None)[0]]
            )
    finally:
        torch.set_num_threads(threads)
    return _calibration_record(
        meter, load0, startup, (decode_train, decode_eval), run_s, train, [float(c) for c in coef]
    )


def _calibration_record(
    meter: _Meter,
    load0: float,
    startup: float,
    decode: tuple[float, float],
    run_s: list[float],
    train: dict,
    coef: list[float],
) -> dict:
    """The calibration file's content from :func:`calibrate`'s measurements: ``decode`` (train,
    eval) seconds per Mpx, ``run_s`` the fixed costs of the short runs, ``train`` the per-family
    step fits, ``coef`` the evaluation fit (s per output Mpx, then s per GFLOP per family)."""
    import time

    import torch

    decode_train, decode_eval = decode
    cal: dict = {
        "kind": device_kind(),
        "cpu": cpu_model(),
        "torch": str(torch.__version__),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "threads": 1,
        "cores": os.cpu_count(),
        "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "cpu_share": round(meter.cpu / meter.wall, 3),
        "seconds": round(meter.wall, 1),
        "how": "CPU seconds of real work with one torch thread, i.e. wall seconds on a free "
        "core (cpu_share: the share of a core the calibration got at that load average)",
        "startup_s": round(startup, 3),
        "decode_s_per_mpx": {
            "train": round(decode_train, 4),
            "eval": round(decode_eval, 4),
        },
        "train": {"run_s": round(max(sum(run_s) / len(run_s), 0.0), 3)},
        "eval": {},
    }
    for fam, t in train.items():
        cal["train"][fam] = {
            "step_s": round(t["step_s"], 5),
            "s_per_gflop": round(t["s_per_gflop"], 6),
            "cpu_points": [[round(x, 3), round(y, 4)] for x, y in t["points"]],
        }
    for j, fam in enumerate(FAMILIES):
        cal["eval"][fam] = {
            "s_per_mpx": round(max(float(coef[0]), 0.0), 5),
            "s_per_gflop": round(max(float(coef[1 + j]), 0.0), 6),
        }
    return cal


def save_calibration(cal: dict) -> Path:
    """Write ``cal`` to ``bench/calibration/<kind>.json`` (atomic)."""
    from odesr.io import write_text_atomic

    path = calibration_path(cal["kind"])
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in cal.items() if k != "path"}
    write_text_atomic(path, json.dumps(body, indent=1) + "\n")
    return path


def flop_calibration(costs: Costs) -> dict:
    """The FLOP model of ``bench/costs.yaml`` (convolution FLOPs only, no overheads, the
    threads it was measured with) in the form of a calibration: the fallback."""
    cpu = costs.cpu
    factor = float(cpu.get("train_factor", 3.0))
    rate = {f: float(cpu["gflops"].get(f) or min(cpu["gflops"].values())) for f in FAMILIES}
    return {
        "kind": "flop-model",
        "path": "bench/costs.yaml",
        "threads": None,
        "startup_s": 0.0,
        "decode_s_per_mpx": {"train": 0.0, "eval": 0.0},
        "train": {
            "run_s": 0.0,
            **{f: {"step_s": 0.0, "s_per_gflop": factor / rate[f]} for f in FAMILIES},
        },
        "eval": {f: {"s_per_mpx": 0.0, "s_per_gflop": 1.0 / rate[f]} for f in FAMILIES},
    }


def cost_model(costs: Costs | None = None) -> tuple[dict, str]:
    """(calibration, one line saying which): this machine's stored calibration, else the FLOP
    model of ``bench/costs.yaml`` with a line saying how to calibrate."""
    cal = load_calibration()
    if cal is not None:
        load = "-".join(f"{x:g}" for x in cal.get("loadavg") or [])
        return cal, (
            f"cost model: {cal['path']} (measured {cal['measured']}: CPU seconds of one thread, "
            f"with {cal.get('cpu_share', 1):g} of a core at load average {load})"
        )
    have = ", ".join(sorted(p.stem for p in CALIBRATION_DIR.glob("*.json"))) or "none"
    return flop_calibration(costs or Costs.load()), (
        f"cost model: FLOP model of bench/costs.yaml (convolution FLOPs only, no overheads: "
        f"optimistic). No calibration for {device_kind()} (stored: {have}); run "
        "`python -m bench plan --calibrate`"
    )


def measure_cpu(threads: int | None = None) -> dict:
    """Conv throughput of the paper backbones here: forward GFLOP/s and (fwd+bwd)/fwd."""
    import os
    import platform
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from odesr.nets import build_backbone

    if threads:
        torch.set_num_threads(threads)
    x = torch.rand(1, 4, 64, 64)
    gflops, factors = {}, []
    for backbone in ("vdsr", "rdn"):
        net = build_backbone(backbone, "paper", in_ch=4, out_ch=3)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        flops = fc.get_total_flops()

        def best(fn, n=3):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        with torch.no_grad():
            fwd = best(lambda net=net: net(x))
        fb = best(lambda net=net: net(x).square().mean().backward())
        gflops[backbone] = round(flops / fwd / 1e9, 1)
        factors.append(fb / fwd)
    load = os.getloadavg()[0]
    return dict(
        machine=f"{platform.machine()} x{torch.get_num_threads()} threads, torch "
        f"{torch.__version__}",
        measured=time.strftime("%Y-%m-%d"),
        how=f"paper VDSR/RDN backbones, 64x64 input, best of 3; load average {load:.1f}",
        gflops=gflops,
        train_factor=round(sum(factors) / len(factors), 2),
    )


def throughput_from_results(csv: str | Path, experiment: str, profile: Profile, data_root) -> dict:
    """Effective GFLOP/s per backbone of recorded evaluation rows (sum FLOPs / sum seconds)."""
    import pandas as pd

    from bench.runner import REPO

    df = pd.read_csv(csv)
    df = df[df["nfe"] > 0]
    exp = load_experiment(experiment)
    plans = {m: exp.model_plans(m, profile) for m in exp.model_ids()}
    flops: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    for (model, dataset, image, scale), g in df.groupby(["model", "dataset", "image", "scale"]):
        key = round(float(scale), 6)
        cands = [p for p in plans.get(model, []) if not p.only_scales or key in p.only_scales]
        plan = cands[0] if cands else None
        if plan is None or plan.ensemble:
            continue
        sizes = dict(
            zip(dataset_names(dataset, data_root), dataset_sizes(dataset, data_root), strict=True)
        )
        sh, sw = protocol_size(sizes[str(image)], float(scale))
        b = backbone_of(plan)
        flops[b] += float(g["nfe"].mean()) * sh * sw * flops_per_pixel(plan, float(scale))
        seconds[b] += float(g["seconds"].mean())
    rel = Path(csv).resolve().relative_to(REPO) if Path(csv).resolve().is_relative_to(REPO) else csv
    return dict(
        device=str(df["device"].iloc[0]),
        gflops={b: round(flops[b] / seconds[b] / 1e9, 1) for b in flops if seconds[b] > 0},
        rows=f"{rel}: {len(df)} rows",
    )
