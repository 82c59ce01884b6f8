"""CI quality check: the bundled model (``odesr/weights/vdsr-ode-cpu.pt``) on Set5 at x2 and x4.

It catches regressions, not only changes: per scale, the mean PSNR (Y, default protocol, rk4
one step, one thread) must be

* at least bicubic's PSNR on the same images + ``MARGIN_DB[scale]`` (set from the measured gain,
  see ``bench/baselines/bundled-set5.csv``: a zeroed or broken network falls to bicubic or below),
* within ``TOL_DB`` of the committed numbers in ``bench/baselines/bundled-set5.csv``.

    python -m bench.quality [--data-root D] [--update]

``--update`` rewrites the baseline after a deliberate change (commit it with the change).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from odesr.io import write_csv_atomic

__all__ = ["BASELINE", "MARGIN_DB", "TOL_DB", "measure", "check", "main"]

BASELINE = Path(__file__).with_name("baselines") / "bundled-set5.csv"
SCALES = (2.0, 4.0)
SOLVER = {"method": "rk4", "steps": 1}
# measured gains over bicubic (bench/baselines/bundled-set5.csv): x2 +2.28 dB, x4 +1.46 dB;
# the margins are ~70-80% of them, so a network that stops helping fails
MARGIN_DB = {2.0: 1.7, 4.0: 1.1}
TOL_DB = 0.02
COLUMNS = ["scale", "bicubic_psnr", "psnr", "ssim", "gain"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def measure(data_root: str | None = None) -> list[dict]:
    """Mean PSNR/SSIM of bicubic and the bundled model on Set5 (all 5 images) per scale."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        return _measure(data_root)
    finally:
        torch.set_num_threads(threads)


def _measure(data_root: str | None) -> list[dict]:
    from odesr.checkpoints import load_model
    from odesr.data import list_images, load_image
    from odesr.evaluate import EvalSettings, evaluate_images
    from odesr.models import build

    images = [load_image(f) for f in list_images("Set5", data_root)]
    model = load_model(None)  # the bundled model
    rows = []
    for scale in SCALES:
        ours = evaluate_images(model, images, [scale], EvalSettings(solver=dict(SOLVER)))
        bic = evaluate_images(build({"name": "bicubic"}), images, [scale], EvalSettings())
        psnr, bicubic = _mean([r["psnr"] for r in ours]), _mean([r["psnr"] for r in bic])
        rows.append(
            dict(
                scale=scale,
                bicubic_psnr=bicubic,
                psnr=psnr,
                ssim=_mean([r["ssim"] for r in ours]),
                gain=psnr - bicubic,
            )
        )
    return rows


def read_baseline(path: Path = BASELINE) -> dict[float, dict]:
    import csv

    with open(path, newline="") as fh:
        return {float(r["scale"]): {k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)}


def check(rows: list[dict], baseline: dict[float, dict]) -> list[str]:
    """Problems (empty: pass): below bicubic + margin, or moved from the baseline."""
    problems = []
    for row in rows:
        scale = float(row["scale"])
        floor = row["bicubic_psnr"] + MARGIN_DB[scale]
        if row["psnr"] < floor:
            problems.append(
                f"x{scale:g}: PSNR {row['psnr']:.3f} dB < bicubic {row['bicubic_psnr']:.3f} "
                f"+ margin {MARGIN_DB[scale]:g} dB"
            )
        base = baseline.get(scale)
        if base is None:
            problems.append(f"x{scale:g}: no baseline row")
            continue
        for key in ("psnr", "bicubic_psnr"):
            delta = row[key] - base[key]
            if abs(delta) > TOL_DB:
                problems.append(f"x{scale:g}: {key} moved {delta:+.4f} dB (> {TOL_DB} dB)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    p.add_argument("--update", action="store_true", help="rewrite the committed baseline")
    args = p.parse_args(argv)
    rows = measure(args.data_root)
    for r in rows:
        print(
            f"x{r['scale']:g}: bicubic {r['bicubic_psnr']:.3f} dB, bundled {r['psnr']:.3f} dB "
            f"/ {r['ssim']:.4f}, gain {r['gain']:+.3f} dB (margin {MARGIN_DB[r['scale']]:g})"
        )
    if args.update:
        write_csv_atomic(BASELINE, rows, COLUMNS)
        print(f"wrote {BASELINE}")
        return 0
    problems = check(rows, read_baseline())
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
