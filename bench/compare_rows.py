"""Paired comparison of ``odesr eval`` CSVs against a reference, per scale (e.g. objectives).

    python -m bench.compare_rows REF.csv A.csv [B.csv ...] --out results/cpu/objective-hr.md
        [--title TEXT] [--note TEXT]

Every file holds the rows of one model and solver (``odesr eval --out``); rows pair on (dataset,
image, scale). Writes a Markdown table with, per scale, the mean PSNR of each file over the
images all files share, and for every file but the reference the paired difference to it: mean
and the smallest per-image difference (``min``), so ``min >= 0`` means no image got worse.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench.tables import md_table
from odesr.io import read_csv_rows, write_text_atomic

__all__ = ["label", "compare", "main"]


def label(rows: Sequence[dict], path: str) -> str:
    """``model solver-label`` of a file's rows (its name when they have no model column)."""
    first = rows[0]
    solver = str(first.get("solver") or "")
    if solver:
        steps, size = first.get("steps"), first.get("step_size")
        solver += f" h={size}" if size not in ("", None) else f" n={steps}" if steps else ""
    return f"{first.get('model', Path(path).stem)} {solver}".strip()


def compare(files: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table; the first entry of ``files`` is the reference."""
    by_file = {
        name: {(r["dataset"], r["image"], float(r["scale"])): float(r["psnr"]) for r in rows}
        for name, rows in files.items()
    }
    common = set.intersection(*(set(v) for v in by_file.values()))
    if not common:
        raise ValueError("the files share no (dataset, image, scale) row")
    scales = sorted({k[2] for k in common})
    names = list(by_file)
    ref = names[0]
    header = ["scale", "n", *(f"{n} PSNR" for n in names)]
    header += [f"{n} - {ref} (mean / min)" for n in names[1:]]
    table = []
    for scale in scales:
        keys = sorted(k for k in common if k[2] == scale)
        diffs: dict[str, list[float]] = defaultdict(list)
        for n in names[1:]:
            diffs[n] = [by_file[n][k] - by_file[ref][k] for k in keys]
        means = [sum(by_file[n][k] for k in keys) / len(keys) for n in names]
        row = [f"x{scale:g}", str(len(keys)), *(f"{m:.2f}" for m in means)]
        row += [f"{sum(d) / len(d):+.3f} / {min(d):+.3f}" for d in (diffs[n] for n in names[1:])]
        table.append(row)
    return header, table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare_rows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", help="eval CSVs; the first is the reference")
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("--title", default="Paired comparison")
    p.add_argument("--note", action="append", default=[], help="a paragraph under the title")
    args = p.parse_args(argv)
    if len(args.files) < 2:
        print("bench.compare_rows: give a reference and at least one more file", file=sys.stderr)
        return 2
    try:
        files = {}
        for path in args.files:
            read = read_csv_rows(path, ("dataset", "image", "scale", "psnr"), ("scale", "psnr"))
            if read.damaged or not read.rows:
                line, why = read.damaged[0] if read.damaged else (1, "no rows")
                raise ValueError(f"{path}: line {line}: {why}")
            rows = read.rows
            files[label(rows, path)] = rows
        header, table = compare(files)
    except (OSError, ValueError, KeyError) as exc:
        print(f"bench.compare_rows: {exc}", file=sys.stderr)
        return 2
    text = "\n\n".join([f"## {args.title}", *args.note, md_table(header, table)])
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
