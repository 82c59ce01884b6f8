"""CI regression check: run the smoke profile end to end and compare with a committed baseline.

    python -m bench.regress [--update] [--data-root D] [--experiment ci-smoke]

Trains the smoke checkpoints from scratch in a temporary folder (CPU, seeded, deterministic
algorithms), evaluates them, and compares every row with ``bench/baselines/smoke.csv`` on the
key columns (model, solver_opts, dataset, image, scale) with per-column tolerances (psnr
±0.02 dB, ssim ±0.0005, nfe and seen exact). A missing or extra row, or a number outside its
tolerance, fails with a table of what moved. ``--update`` rewrites the baseline instead.

    python -m bench.regress --rows results/cpu/table1.csv \
        --baseline gpu/results/cpu/table1.csv --common

compares two existing results files instead (e.g. the same weights evaluated on two machines):
only the rows both hold (``--common``; rows also match on ``weights`` when both files have it),
with the same tolerances, plus the mean and largest |delta| per column.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from odesr.cli import HelpFormatter
from odesr.io import write_csv_atomic

__all__ = ["BASELINE", "TOLERANCES", "KEY", "run_smoke", "compare", "main"]

BASELINE = Path(__file__).with_name("baselines") / "smoke.csv"
KEY = ("model", "solver_opts", "dataset", "image", "scale")
TOLERANCES: dict[str, float] = {"psnr": 0.02, "ssim": 0.0005, "nfe": 0.0, "seen": 0.0}


def run_smoke(
    experiment: str = "ci-smoke", data_root: str | None = None, workdir: str | None = None
) -> list[dict]:
    """Run ``experiment`` with the smoke profile on CPU from scratch; returns its rows."""
    from bench.profile import Profile
    from bench.results import ResultsFile
    from bench.runner import run_experiment

    with tempfile.TemporaryDirectory(prefix="odesr-regress-", dir=workdir) as tmp:
        profile = Profile("smoke", Path(tmp) / "results", Path(tmp) / "checkpoints")
        summary = run_experiment(
            experiment,
            profile,
            data_root=data_root,
            device="cpu",
            progress=False,
            log=lambda m: None,
        )
        return ResultsFile(summary.results).read()


def _key(row: dict, key: Sequence[str] = KEY) -> tuple:
    return tuple(f"{float(row[k]):.6g}" if k == "scale" else str(row[k]) for k in key)


def _key_columns(rows: Sequence[dict], baseline: Sequence[dict]) -> tuple[str, ...]:
    """KEY, plus ``weights`` when both sides record it (rows of other weights never match)."""
    if rows and baseline and "weights" in rows[0] and "weights" in baseline[0]:
        return (*KEY, "weights")
    return KEY


def _num(value: object) -> float:
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def _pairs(rows: Sequence[dict], baseline: Sequence[dict]) -> tuple[dict, dict, tuple]:
    key = _key_columns(rows, baseline)
    return {_key(r, key): r for r in rows}, {_key(r, key): r for r in baseline}, key


def compare(rows: Sequence[dict], baseline: Sequence[dict], common_only: bool = False) -> list[str]:
    """Readable differences (empty when everything is within tolerance); ``common_only``
    ignores rows that only one side has."""
    new, old, key = _pairs(rows, baseline)
    problems = []
    if not common_only:
        for k in sorted(set(old) - set(new)):
            problems.append(f"missing row {dict(zip(key, k, strict=True))}")
        for k in sorted(set(new) - set(old)):
            problems.append(f"new row (not in baseline) {dict(zip(key, k, strict=True))}")
    moved = []
    for k in sorted(set(new) & set(old)):
        for col, tol in TOLERANCES.items():
            a, b = _num(old[k].get(col)), _num(new[k].get(col))
            if math.isnan(a) and math.isnan(b):
                continue
            if not (abs(a - b) <= tol) or math.isnan(a) != math.isnan(b):
                moved.append((k, col, a, b))
    if moved:
        lines = [
            f"{'model':<10} {'solver':<14} {'dataset':<7} {'image':<10} {'scale':>5} "
            f"{'column':<6} {'baseline':>10} {'now':>10} {'delta':>9} {'tol':>7}"
        ]
        for k, col, a, b in moved:
            model, solver, dataset, image, scale = k[: len(KEY)]
            lines.append(
                f"{model:<10} {solver:<14} {dataset:<7} {image:<10} {scale:>5} {col:<6} "
                f"{a:>10.4f} {b:>10.4f} {b - a:>+9.4f} {TOLERANCES[col]:>7g}"
            )
        problems.append("values moved beyond tolerance:\n" + "\n".join(lines))
    return problems


def drift(
    rows: Sequence[dict], baseline: Sequence[dict], by: str | None = None
) -> dict[tuple[str, str], tuple[int, float, float]]:
    """Over the rows both sides hold, per (group, tolerance column): (count, mean |delta|,
    max |delta|); the group is the ``by`` column's value (e.g. the model), else ``all``."""
    new, old, _ = _pairs(rows, baseline)
    groups: dict[tuple[str, str], list[float]] = {}
    for k in sorted(set(new) & set(old)):
        group = str(new[k].get(by, "")) if by else "all"
        for col in TOLERANCES:
            d = abs(_num(new[k].get(col)) - _num(old[k].get(col)))
            if not math.isnan(d):
                groups.setdefault((group, col), []).append(d)
    return {g: (len(d), sum(d) / len(d), max(d)) for g, d in groups.items()}


def read_baseline(path: str | Path = BASELINE) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_baseline(rows: Sequence[dict], path: str | Path = BASELINE) -> None:
    cols = [*KEY, *TOLERANCES]
    ordered = sorted(rows, key=_key)
    write_csv_atomic(path, [{c: r.get(c, "") for c in cols} for r in ordered], cols)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.regress",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this run")
    p.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    p.add_argument("--experiment", default="ci-smoke")
    p.add_argument("--baseline", default=str(BASELINE))
    p.add_argument("--rows", default=None, help="compare this results CSV instead of a smoke run")
    p.add_argument("--common", action="store_true", help="only rows both sides hold")
    args = p.parse_args(argv)
    if args.rows:
        if args.update:
            print("bench.regress: --update needs a smoke run, not --rows", file=sys.stderr)
            return 2
        for path in (args.rows, args.baseline):
            if not Path(path).is_file():
                print(f"bench.regress: {path}: no such file", file=sys.stderr)
                return 2
        rows = read_baseline(args.rows)
    else:
        rows = run_smoke(args.experiment, args.data_root)
    if args.update:
        write_baseline(rows, args.baseline)
        print(f"bench.regress: wrote {len(rows)} rows to {args.baseline}")
        return 0
    baseline = read_baseline(args.baseline)
    for (group, col), (n, mean, worst) in drift(rows, baseline, by="model").items():
        if col in ("psnr", "ssim"):
            print(
                f"bench.regress: {group} {col}: {n} common rows, "
                f"mean |delta| {mean:.4g}, max {worst:.4g}"
            )
    problems = compare(rows, baseline, common_only=args.common)
    if problems:
        print(f"bench.regress: {len(problems)} problem(s) vs {args.baseline}:", file=sys.stderr)
        for msg in problems:
            print(msg, file=sys.stderr)
        print("(if the change is intended: python -m bench.regress --update)", file=sys.stderr)
        return 1
    print(f"bench.regress: {len(rows)} rows match {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
