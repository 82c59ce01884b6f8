"""CI regression check: run the smoke profile end to end and compare with a committed baseline.

    python -m bench.regress [--update] [--data-root D] [--experiment ci-smoke]

Trains the smoke checkpoints from scratch in a temporary folder (CPU, seeded, deterministic
algorithms), evaluates them, and compares every row with ``bench/baselines/smoke.csv`` on the
key columns (model, solver_opts, dataset, image, scale) with per-column tolerances (psnr
±0.02 dB, ssim ±0.0005, nfe and seen exact). A missing or extra row, or a number outside its
tolerance, fails with a table of what moved. ``--update`` rewrites the baseline instead.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from odesr.io import write_csv_atomic

__all__ = ["BASELINE", "TOLERANCES", "KEY", "run_smoke", "compare", "main"]

BASELINE = Path(__file__).with_name("baselines") / "smoke.csv"
KEY = ("model", "solver_opts", "dataset", "image", "scale")
TOLERANCES: dict[str, float] = {"psnr": 0.02, "ssim": 0.0005, "nfe": 0.0, "seen": 0.0}


def run_smoke(
    experiment: str = "ci-smoke", data_root: str | None = None, workdir: str | None = None
) -> list[dict]:
    """Run ``experiment`` with the smoke profile on CPU from scratch; returns its rows."""
    from bench.results import ResultsFile
    from bench.runner import results_path, run_experiment

    with tempfile.TemporaryDirectory(prefix="odesr-regress-", dir=workdir) as tmp:
        summary = run_experiment(
            experiment,
            "smoke",
            data_root=data_root,
            device="cpu",
            results_dir=Path(tmp) / "results",
            checkpoints_dir=Path(tmp) / "checkpoints",
            progress=False,
            log=lambda msg: None,
        )
        path = results_path(Path(tmp) / "results", "smoke", summary.results.stem)
        return ResultsFile(path).read()


def _key(row: dict) -> tuple:
    return tuple(f"{float(row[k]):.6g}" if k == "scale" else str(row[k]) for k in KEY)


def _num(value: object) -> float:
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def compare(rows: Sequence[dict], baseline: Sequence[dict]) -> list[str]:
    """Readable differences (empty when everything is within tolerance)."""
    new = {_key(r): r for r in rows}
    old = {_key(r): r for r in baseline}
    problems = []
    for k in sorted(set(old) - set(new)):
        problems.append(f"missing row {dict(zip(KEY, k, strict=True))}")
    for k in sorted(set(new) - set(old)):
        problems.append(f"new row (not in baseline) {dict(zip(KEY, k, strict=True))}")
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
            model, solver, dataset, image, scale = k
            lines.append(
                f"{model:<10} {solver:<14} {dataset:<7} {image:<10} {scale:>5} {col:<6} "
                f"{a:>10.4f} {b:>10.4f} {b - a:>+9.4f} {TOLERANCES[col]:>7g}"
            )
        problems.append("values moved beyond tolerance:\n" + "\n".join(lines))
    return problems


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
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this run")
    p.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    p.add_argument("--experiment", default="ci-smoke")
    p.add_argument("--baseline", default=str(BASELINE))
    args = p.parse_args(argv)
    rows = run_smoke(args.experiment, args.data_root)
    if args.update:
        write_baseline(rows, args.baseline)
        print(f"bench.regress: wrote {len(rows)} rows to {args.baseline}")
        return 0
    problems = compare(rows, read_baseline(args.baseline))
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
