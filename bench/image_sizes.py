"""The benchmark images' sizes, shipped as ``bench/image_sizes.tsv`` so that ``bench plan`` prices
a run on a machine without the datasets.

    python -m bench.image_sizes [--data-root D]      # rewrite the table from the data

Columns: ``dataset``, ``file`` (the name in ``<data root>/<dataset>/HR``), ``height``, ``width``;
rows in :func:`odesr.data.list_images` order (sorted), the datasets of ``bench/datasets.yaml``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import sys
from pathlib import Path

import yaml

from odesr.cli import HelpFormatter

__all__ = ["SIZES_FILE", "shipped_sizes", "measure_sizes", "main"]

SIZES_FILE = Path(__file__).with_name("image_sizes.tsv")
DATASETS_FILE = Path(__file__).with_name("datasets.yaml")


@functools.cache
def shipped_sizes() -> dict[str, tuple[tuple[str, int, int], ...]]:
    """dataset -> ``(file, height, width)`` per image, in sorted order, from the shipped table."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    with open(SIZES_FILE, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            out.setdefault(row["dataset"], []).append(
                (row["file"], int(row["height"]), int(row["width"]))
            )
    return {k: tuple(v) for k, v in out.items()}


def measure_sizes(dataset: str, data_root: str | None = None) -> list[tuple[str, int, int]]:
    """``(file, height, width)`` of every image of ``dataset`` (headers only, no decoding)."""
    from PIL import Image

    from odesr.data import list_images

    out = []
    for path in list_images(dataset, data_root):
        with Image.open(path) as im:
            out.append((path.name, im.height, im.width))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.image_sizes", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA)")
    args = parser.parse_args(argv)
    from odesr.io import write_text_atomic

    names = [e["name"] for e in yaml.safe_load(DATASETS_FILE.read_text())["datasets"]]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["dataset", "file", "height", "width"])
    for name in sorted(names):
        writer.writerows([name, *row] for row in measure_sizes(name, args.data_root))
    write_text_atomic(SIZES_FILE, buf.getvalue())
    print(f"bench.image_sizes: {buf.getvalue().count(chr(10)) - 1} images -> {SIZES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
