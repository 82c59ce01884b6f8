"""Publish trained weights next to the results they made: ``results/<profile>/weights/<key>.pt``.

    python -m bench.publish table1 --profile cpu [--results results] [--checkpoints checkpoints]

For every trained plan of the experiments whose ``final.pt`` exists, writes its weights and spec
only (no optimizer, scheduler or RNG state; :func:`odesr.checkpoints.weights_only_extra`) under the
plan's weights key. ``bench run`` and ``bench.train_all`` use a published file when the checkpoint
folder has no ``final.pt`` (:func:`bench.checkpoints.ensure_checkpoint`), so a fresh clone
re-derives the committed numbers without training. A file already published for a key is left
alone (the key names the config, recipe and seed, so the weights are the same run's).

``<results>/<profile>/training-log.csv``, rewritten each time: one row per ``trained_on``
segment of every published weights file that records its speed (steps, seconds, steps/s,
device, threads, load averages; :mod:`odesr.train`), what ``bench plan`` can be checked against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.experiment import ExperimentError, load_experiment
from bench.profile import ProfileError, add_profile_arguments, profile_from_args
from odesr.checkpoints import load_checkpoint, save_checkpoint, weights_only_extra
from odesr.cli import HelpFormatter

__all__ = ["main", "publish", "training_log"]

LOG_COLUMNS = [
    "weights",
    "model",
    "from_step",
    "steps",
    "seconds",
    "steps_per_s",
    "device",
    "threads",
    "world",
    "torch",
    "tf32",
    "loadavg_1m",
    "loadavg_15m",
]


def publish(final: Path, out: Path) -> int:
    """Write the weights-only copy of ``final`` to ``out`` (atomic); returns its size in bytes."""
    model, extra = load_checkpoint(final)
    save_checkpoint(out, model, **weights_only_extra(extra))
    return out.stat().st_size


def training_log(weights_dir: Path) -> list[dict]:
    """Rows of :data:`LOG_COLUMNS`: the ``trained_on`` segments with a speed record of the
    weights files in ``weights_dir``, sorted by file name."""
    from odesr.train_state import read_checkpoint

    rows = []
    for path in sorted(weights_dir.glob("*.pt")):
        extra = read_checkpoint(path)[1]
        for seg in extra.get("trained_on") or []:
            if "steps_per_s" not in seg:
                continue
            load = seg.get("loadavg") or [None, None, None]
            rows.append(
                dict(
                    weights=path.stem,
                    model=(extra.get("config") or {}).get("model", {}).get("name", ""),
                    **{k: seg.get(k) for k in LOG_COLUMNS[2:-2]},
                    loadavg_1m=load[0],
                    loadavg_15m=load[-1],
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("experiments", nargs="+", help="experiment names or YAML paths")
    add_profile_arguments(parser)
    args = parser.parse_args(argv)
    try:
        profile = profile_from_args(args)
        plans = {
            p.key: p
            for name in args.experiments
            for p in load_experiment(name).all_plans(profile)
            if p.train_cfg is not None
        }
    except (ExperimentError, ProfileError) as exc:
        print(f"bench.publish: {exc}", file=sys.stderr)
        return 2
    written = kept = missing = 0
    total = 0
    for key in sorted(plans):
        out = profile.published_weights(key)
        final = profile.checkpoint_dir(key) / "final.pt"
        if out.exists():
            kept += 1
            total += out.stat().st_size
        elif final.exists():
            size = publish(final, out)
            total += size
            written += 1
            print(f"  {key}: {size / 1e6:.2f} MB -> {out}")
        else:
            missing += 1
    weights_dir = profile.weights
    rows = training_log(weights_dir) if weights_dir.is_dir() else []
    if rows:
        from odesr.io import write_csv_atomic

        write_csv_atomic(weights_dir.parent / "training-log.csv", rows, LOG_COLUMNS)
    print(
        f"bench.publish: {written} written, {kept} already published, {missing} not trained; "
        f"{total / 1e6:.1f} MB under {weights_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
