"""Published trained weights by name: ``<weights folder>/index.csv`` maps a model name and a
training seed to a weights file in that folder.

The folder is ``$ODESR_WEIGHTS`` when set, else ``results/cpu/weights`` of the repository this
package is installed from (an editable install: the folder beside the ``odesr`` package).
The index is read here and written by the ``weights_index`` command of the bench package (odesr
never imports it); its columns are :data:`INDEX_COLUMNS` (``file`` relative to the folder;
``seed`` an integer; a file serves every name an experiment gives it, so it may appear on
several rows).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WEIGHTS_ENV",
    "INDEX_NAME",
    "INDEX_COLUMNS",
    "DEFAULT_SEED",
    "PublishedError",
    "Published",
    "weights_dir",
    "read_index",
    "find_published",
]

WEIGHTS_ENV = "ODESR_WEIGHTS"
INDEX_NAME = "index.csv"
INDEX_COLUMNS = (
    "file",
    "model",
    "seed",
    "experiments",
    "recipe",
    "steps",
    "trained_on",
    "b100_images",
    "b100_gain_x2",
    "b100_gain_x4",
)
DEFAULT_SEED = 0
_REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "results" / "cpu" / "weights"


class PublishedError(ValueError):
    """No published weights for a name/seed, one line saying what exists. ``reason``:
    ``no-index`` (no index file), ``name`` (an unknown name), ``seed`` (a known name without
    that seed) or ``file`` (the index names a missing or malformed file); ``available``: the
    published names and seeds as text (empty without an index)."""

    def __init__(self, message: str, reason: str = "file", available: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.available = available


@dataclass(frozen=True)
class Published:
    """One row of the index: ``path`` is the weights file, the rest as written."""

    path: Path
    model: str
    seed: int
    row: dict


def weights_dir() -> Path:
    """The published weights folder: ``$ODESR_WEIGHTS``, else the repository's
    ``results/cpu/weights`` (not checked here)."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else _REPO_WEIGHTS


def read_index(folder: str | os.PathLike | None = None) -> list[Published]:
    """The rows of ``<folder>/index.csv`` (default :func:`weights_dir`); raises
    :class:`PublishedError` when the folder or its index is missing or malformed."""
    folder = Path(folder) if folder is not None else weights_dir()
    index = folder / INDEX_NAME
    if not index.is_file():
        where = f"${WEIGHTS_ENV}" if os.environ.get(WEIGHTS_ENV) else "the repository"
        raise PublishedError(
            f"no published weights index at {index} (from {where}); set {WEIGHTS_ENV} to a "
            "folder holding index.csv, or pass a checkpoint path",
            "no-index",
        )
    with open(index, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("file", "model", "seed") if c not in (reader.fieldnames or [])]
        if missing:
            raise PublishedError(f"{index}: no column {missing[0]!r}")
        out = []
        for line, row in enumerate(reader, start=2):
            try:
                seed = int(row["seed"])
            except (TypeError, ValueError):
                raise PublishedError(
                    f"{index}:{line}: seed {row['seed']!r} is not an integer"
                ) from None
            out.append(Published(folder / row["file"], row["model"], seed, dict(row)))
    return out


def _names_text(rows: list[Published]) -> str:
    """``name (seeds 0-2)`` per name, in index order."""
    seeds: dict[str, list[int]] = {}
    for r in rows:
        seeds.setdefault(r.model, []).append(r.seed)
    parts = []
    for name, ks in seeds.items():
        ks = sorted(set(ks))
        contiguous = ks == list(range(ks[0], ks[-1] + 1))
        text = f"{ks[0]}-{ks[-1]}" if contiguous and len(ks) > 2 else ",".join(map(str, ks))
        parts.append(f"{name} (seed{'s' if len(ks) > 1 else ''} {text})")
    return ", ".join(parts)


def find_published(
    name: str, seed: int | None = None, folder: str | os.PathLike | None = None
) -> Published:
    """The published weights of model ``name`` trained with ``seed`` (default
    :data:`DEFAULT_SEED`); :class:`PublishedError` lists the names and seeds there are."""
    rows = read_index(folder)
    seed = DEFAULT_SEED if seed is None else int(seed)
    same = [r for r in rows if r.model == name]
    if not same:
        names = _names_text(rows)
        raise PublishedError(f"unknown model {name!r}; published: {names}", "name", names)
    hit = next((r for r in same if r.seed == seed), None)
    if hit is None:
        raise PublishedError(f"no published {name!r} of seed {seed}: {_names_text(same)}", "seed")
    if not hit.path.is_file():
        raise PublishedError(f"published {name!r} seed {seed}: {hit.path} is missing")
    return hit
