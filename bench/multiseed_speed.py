"""Seeds trained together (odesr.multiseed) against separate processes, in seed-steps/s.

``python -m bench.multiseed_speed [--configs cpu/vdsr+t,cpu/vdsr-ode] [--ks 1,2,4,8]
[--steps 6] [--warmup 1] [--threads 1] [--rounds 1]``

For each config and each K: one process training seeds 0..K-1 stacked
(:func:`odesr.multiseed.train_seeds`, ``--threads`` torch threads) against separate processes
(:func:`odesr.train.train`, one seed each, ``--threads`` threads, run one after another: the
same thread count busy at any moment, so K of them take K times one's time). A seed's cost does
not depend on the seed, so each (K, round) measures one separate process next to the stacked
one (seed ``round mod K``); odd rounds run it first. Every measurement is a fresh process on T91
(no hold-out, no validation, no checkpoints inside the loop).

Clocks: the main one is the process's CPU time of ``--steps`` steps (a ``warmup + steps``
training less a ``warmup`` one, both after a one-step training that pays for the imports, so
data loading, start-up and saving cancel; batch making counts, as in training). With one thread
it is the time the steps take on a core of their own, whatever else the machine runs; wall
time (from ``metrics.jsonl``'s per-step ``steps_per_s``) is shown beside it and depends on the
share of the cores the process got. seed-steps/s = seeds x steps / seconds, summed over rounds;
the ratio is stacked over separate, > 1 where stacking wins. The load average is printed with
each line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_OVERRIDES = {
    "data": ["T91"],
    "holdout": {"dataset": None, "n_images": 0},
    "val": {"every": 0},
    "log_every": 1,
    "checkpoint_every": 0,
}


def _train_once(config: str, seeds: list[int], stacked: bool, max_steps: int) -> tuple:
    """``(process CPU seconds, metrics.jsonl rows of the first seed)`` of one training of
    ``config`` for ``max_steps`` steps in a fresh folder."""
    from odesr import multiseed, train

    cfg = train.load_config(config, {**CHILD_OVERRIDES, "max_steps": max_steps})
    with tempfile.TemporaryDirectory(prefix="multiseed-speed-") as tmp:
        out = Path(tmp)
        start = time.process_time()
        if stacked:
            dirs = multiseed.seed_dirs(out, seeds)
            multiseed.train_seeds(cfg, seeds, dirs, device="cpu", progress=False)
            log = dirs[0] / "metrics.jsonl"
        else:
            (seed,) = seeds
            train.train({**cfg, "seed": seed}, out, device="cpu", progress=False)
            log = out / "metrics.jsonl"
        cpu = time.process_time() - start
        rows = [json.loads(x) for x in log.read_text().splitlines()]
    return cpu, rows


def measure(config: str, seeds: list[int], stacked: bool, steps: int, warmup: int) -> dict:
    """``{"cpu_seconds", "seconds", "seed_steps"}`` of ``steps`` steps (after ``warmup``) of
    ``config``: all ``seeds`` stacked in this process, or the one seed of ``seeds`` alone.
    CPU seconds: the process's CPU time of a ``warmup + steps`` training less that of a
    ``warmup`` one (after a first one-step training that pays for the imports); wall seconds:
    from the per-step ``steps_per_s`` records of the longer training."""
    _train_once(config, seeds, stacked, 1)
    short, _ = _train_once(config, seeds, stacked, warmup)
    long, rows = _train_once(config, seeds, stacked, warmup + steps)
    timed = [r for r in rows if "steps_per_s" in r and r["step"] > warmup]
    return {
        "cpu_seconds": long - short,
        "seconds": sum(1.0 / r["steps_per_s"] for r in timed),
        "seed_steps": len(seeds) * steps,
    }


def _child(args: list[str], threads: int) -> dict:
    """:func:`measure` in a fresh process with ``threads`` torch threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "bench.multiseed_speed", "--child", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _rate(parts: list[dict], clock: str = "cpu_seconds") -> float:
    """Seed-steps per second of ``clock`` (``cpu_seconds`` or wall ``seconds``) over ``parts``."""
    return sum(p["seed_steps"] for p in parts) / sum(p[clock] for p in parts)


def run(
    configs: list[str], ks: list[int], steps: int, warmup: int, threads: int, rounds: int
) -> list[dict]:
    """Measure every config and K ``rounds`` times (module docstring); prints a line per
    measurement, then the summary, and returns its rows."""
    print(
        f"seed-steps/s, {steps} timed steps after {warmup} (cpu, {threads} thread(s) busy on "
        f"either side; {os.cpu_count()} cores, load average now {_load()}: other work on this "
        "machine makes these numbers noisy)"
    )
    got: dict[tuple[str, int, str], list[dict]] = {}
    for rnd in range(rounds):
        for config in configs:
            common = [config, str(steps), str(warmup), str(threads)]
            for k in ks:
                jobs = [("stacked", ",".join(map(str, range(k)))), ("single", str(rnd % k))]
                for mode, seeds in jobs if rnd % 2 == 0 else jobs[::-1]:
                    part = _child([*common, mode, seeds], threads)
                    got.setdefault((config, k, mode), []).append(part)
                    print(
                        f"  round {rnd}: {config} K={k} {mode} (seeds {seeds}): "
                        f"{_rate([part]):.2f} per CPU-s, {_rate([part], 'seconds'):.2f} per "
                        f"wall-s (load {_load()})",
                        flush=True,
                    )
    rows = []
    print(
        "seed-steps per CPU-second (per wall-second), over all rounds\n"
        "config          K  stacked        separate       ratio"
    )
    for config in configs:
        for k in ks:
            mine, alone = got[(config, k, "stacked")], got[(config, k, "single")]
            rate, sep = _rate(mine), _rate(alone)
            wall, wall_sep = _rate(mine, "seconds"), _rate(alone, "seconds")
            rows.append(
                dict(config=config, k=k, stacked=rate, separate=sep, ratio=rate / sep, wall=wall)
            )
            print(
                f"{config:14s} {k:2d}  {rate:5.2f} ({wall:5.2f})  {sep:5.2f} ({wall_sep:5.2f})  "
                f"{rate / sep:4.2f} ({wall / wall_sep:4.2f})"
            )
    print(f"load average at the end {_load()}")
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        config, steps, warmup, threads, mode, seeds = argv[1:7]
        import torch

        torch.set_num_threads(int(threads))
        result = measure(
            config, [int(s) for s in seeds.split(",")], mode == "stacked", int(steps), int(warmup)
        )
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu/vdsr+t,cpu/vdsr-ode")
    parser.add_argument("--ks", default="1,2,4,8", help="seed counts K")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads busy at a time")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions, order alternating")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    run(args.configs.split(","), ks, args.steps, args.warmup, args.threads, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
