"""The results CSV of one (profile, experiment): tidy rows, one per image, written per unit.

Writes hold an exclusive lock (:mod:`filelock`) on ``<csv>.lock`` while they re-read the file,
replace the unit's rows (so a re-run never duplicates) and rewrite the whole file atomically
(:func:`odesr.io.write_csv_atomic`). Readers never see a half-written file; two sweeps writing the
same file at once serialise on the lock and keep each other's rows.

A damaged file (a line cut mid-line or with the wrong field count, a scale that is not a number:
only outside damage, since our writes are atomic) is detected on read and repaired under the
lock: it is moved aside to ``<csv>.damaged[-N]`` with a one-line notice on stderr, and only the
rows that parse are kept, minus every row of the units next to a damaged line (that unit may have
lost rows), so those units count as missing and are re-evaluated by the next run. A row whose
PSNR or SSIM is missing, empty, not a number or not finite is kept but its unit is not done
(:func:`complete`): the next run evaluates it again and replaces its rows. A file whose header
lacks one of :data:`REQUIRED_COLUMNS` (or is cut short) is refused with one line, untouched.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from odesr.io import CSVRows, read_csv_rows, write_csv_atomic

__all__ = [
    "COLUMNS",
    "METRIC_COLUMNS",
    "complete",
    "KEY_COLUMNS",
    "REQUIRED_COLUMNS",
    "SHARE_COLUMNS",
    "ResultsFile",
    "SharedRows",
    "unit_key",
    "row_key",
    "share_key",
    "upgrade_row",
    "CurrentUnits",
]

COLUMNS = [
    "experiment",
    "profile",
    "model",
    "backbone",
    "objective",
    "train_solver",
    "solver",
    "steps",
    "dataset",
    "image",
    "scale",
    "seen",
    "psnr",
    "ssim",
    "seconds",
    "nfe",
    "params",
    "checkpoint",
    "weights",
    "seed",
    "code_rev",
    "torch",
    "device",
    "protocol",
    "y_rounding",
    # beyond the brief's list: what makes a unit unique and documents the subset
    "sweep",
    "solver_opts",
    "subset",
    "paper",
    "ensemble",
    "train_steps",
]
# ``weights``: the model's key (odesr.config.weights_hash of its training config, or its spec when
# untrained), so rows made with other weights do not count as done after a config change.
# ``seed``: the training seed ('' untrained); ``code_rev``: git revision that evaluated the row;
# ``protocol``, ``y_rounding``: the evaluation conventions (odesr.evaluate.EvalSettings);
# ``ensemble``: the self-ensemble (``x8``) or '' (rows from before this column: unknown, never
# shared by :class:`SharedRows`). ``train_steps``: the training config's ``max_steps`` (''
# untrained, and in rows from before this column).
KEY_COLUMNS = ("sweep", "model", "weights", "solver_opts", "dataset", "scale", "subset")
# a header lacking one of these is refused (one line), never guessed at
REQUIRED_COLUMNS = (*KEY_COLUMNS, "image", "psnr", "ssim")
# What fixes one image's numbers, whatever experiment or sweep asked for it (SharedRows).
SHARE_COLUMNS = (
    "weights",
    "solver_opts",
    "dataset",
    "image",
    "scale",
    "protocol",
    "y_rounding",
    "ensemble",
)


METRIC_COLUMNS = ("psnr", "ssim")  # a row lacking one of these (or not finite) is not done


def complete(row: dict) -> bool:
    """Whether ``row`` holds a finite number in every :data:`METRIC_COLUMNS` column (a row
    with ``nan``, ``inf``, an empty or unparseable value does not count as evaluated)."""
    for col in METRIC_COLUMNS:
        try:
            if not math.isfinite(float(row.get(col, ""))):
                return False
        except (TypeError, ValueError):
            return False
    return True


def _norm(col: str, value: object) -> object:
    if col == "scale":
        return round(float(value), 6)
    return str(value)


def upgrade_row(row: dict) -> dict:
    """A row of an older results file in today's columns: ``git_rev`` is now ``code_rev``; rows
    from before ``protocol``/``y_rounding`` were recorded were all made with the defaults."""
    if "git_rev" in row:
        row.setdefault("code_rev", row.pop("git_rev"))
    row.setdefault("protocol", "metasr")
    row.setdefault("y_rounding", "matlab")
    return row


def unit_key(row: dict) -> tuple:
    """The unit a row belongs to (see :class:`bench.experiment.Unit.key`)."""
    return tuple(_norm(c, row.get(c, "")) for c in KEY_COLUMNS)


def row_key(row: dict) -> tuple:
    return (*unit_key(row), str(row.get("image", "")))


def share_key(row: dict) -> tuple:
    """The evaluation a row holds: weights, solver, dataset, image, scale, protocol, ensemble."""
    return tuple(_norm(c, row.get(c, "")) for c in SHARE_COLUMNS)


class SharedRows:
    """Per-image rows already evaluated in a profile, from every results CSV in its folder
    (``results/<profile>/*.csv`` with the :data:`SHARE_COLUMNS`), so experiments that need the
    same evaluation (table1, extrapolation, claims) make it once: the runner copies a found row
    (numbers, solver steps, code_rev, device) into the asking experiment's file instead of
    evaluating it again. Rows of a file from before the ``ensemble`` column get theirs from
    ``ensembles(file stem)`` (``{model id: ensemble}`` of the experiment that wrote it; None:
    not an experiment, the file is not used). Damaged lines are not used; reading never
    modifies a file."""

    def __init__(
        self,
        folder: str | os.PathLike,
        ensembles: Callable[[str], dict[str, str] | None] | None = None,
    ) -> None:
        self.rows: dict[tuple, dict] = {}
        required = (*[c for c in SHARE_COLUMNS if c != "ensemble"], "model", "psnr")
        for path in sorted(Path(folder).glob("*.csv")):
            found = read_csv_rows(path, required=required, numeric=("scale",))
            rows = [upgrade_row(r) for r in found.rows]
            if rows and "ensemble" not in rows[0]:
                per_model = ensembles(path.stem) if ensembles is not None else None
                if per_model is None:
                    continue
                rows = [dict(r, ensemble=per_model.get(r["model"], "")) for r in rows]
            self.add(rows)

    def add(self, rows: Iterable[dict]) -> None:
        for row in rows:
            if complete(row):  # an incomplete row is evaluated again, never copied
                self.rows[share_key(row)] = row

    def get(self, row: dict) -> dict | None:
        """The stored row that holds the evaluation ``row`` describes, if any."""
        return self.rows.get(share_key(row))


class ResultsFile:
    """``path`` (CSV) with its lock file ``path.lock``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_path):
            yield

    def read(self) -> list[dict]:
        """All rows (strings), de-duplicated by (unit, image) keeping the last. A damaged file
        is repaired first (under the lock; see the module docstring)."""
        found = self._parse()
        if found.damaged:
            with self.locked():
                found = self._repair()
        return self._dedupe(found.rows)

    def _parse(self) -> CSVRows:
        if not self.path.exists():
            return CSVRows()
        found = read_csv_rows(self.path, required=REQUIRED_COLUMNS, numeric=("scale",))
        if found.damaged and found.damaged[0][0] == 1:  # the header: no row can be trusted
            raise ValueError(
                f"{self.path} line 1: {found.damaged[0][1]}; not a results file this code can "
                "update (restore its header or move it away)"
            )
        return found

    def check_writable(self) -> None:
        """Refuse (ValueError, one line) a results file whose folder or lock cannot be made or
        written, or whose header is damaged, before any unit is evaluated."""
        from odesr import validate

        validate.writable_folder(self.path.parent, "results")
        validate.lock_file(self.path, "results")
        if self.path.exists() and not self.path.is_file():
            raise ValueError(f"results {self.path}: not a regular file")
        self._parse()

    @staticmethod
    def _dedupe(rows: list[dict]) -> list[dict]:
        seen: dict[tuple, dict] = {}
        for r in rows:
            seen[row_key(r)] = upgrade_row(r)
        return list(seen.values())

    def _repair(self) -> CSVRows:
        """(Lock held.) Re-read; if still damaged, move the file aside, keep the rows of units
        not next to a damaged line, rewrite it and say so on one line."""
        found = self._parse()
        if not found.damaged:
            return found
        suspect = set()
        for line, _ in found.damaged:
            before = [i for i, n in enumerate(found.lines) if n < line]
            after = [i for i, n in enumerate(found.lines) if n > line]
            for i in before[-1:] + after[:1]:
                suspect.add(unit_key(found.rows[i]))
        kept = [upgrade_row(r) for r in found.rows if unit_key(r) not in suspect]
        aside = self.path.with_name(self.path.name + ".damaged")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.damaged-{n}")
        os.replace(self.path, aside)
        write_csv_atomic(self.path, kept, COLUMNS)
        line, why = found.damaged[0]
        more = f" (and {len(found.damaged) - 1} more)" if len(found.damaged) > 1 else ""
        print(
            f"bench: {self.path} line {line}: damaged ({why}){more}; moved it to {aside}, kept "
            f"{len(kept)} rows of whole units, the other units will be re-evaluated",
            file=sys.stderr,
        )
        return CSVRows(rows=kept)

    def done_units(self) -> set[tuple]:
        """Units whose every row is :func:`complete`; a unit with a row lacking a finite PSNR
        or SSIM counts as missing (evaluated again, its rows replaced)."""
        rows = self.read()
        broken = {unit_key(r) for r in rows if not complete(r)}
        return {unit_key(r) for r in rows} - broken

    def drop(self, stale: Callable[[dict], bool]) -> list[dict]:
        """Remove every row for which ``stale(row)`` is true (locked, atomic); return them."""
        with self.locked():
            rows = self._dedupe(self._repair().rows)
            gone = [r for r in rows if stale(r)]
            if gone:
                write_csv_atomic(self.path, [r for r in rows if not stale(r)], COLUMNS)
        return gone

    def put_unit(self, rows: Iterable[dict]) -> None:
        """Replace the rows of the unit(s) in ``rows`` by ``rows`` (locked, atomic)."""
        rows = list(rows)
        if not rows:
            return
        keys = {unit_key(r) for r in rows}
        with self.locked():
            kept = [r for r in self._dedupe(self._repair().rows) if unit_key(r) not in keys]
            write_csv_atomic(self.path, kept + rows, COLUMNS)


class CurrentUnits:
    """Which results rows belong to units an experiment plans now: ``keys`` holds each unit's
    (sweep, model, weights, dataset, subset) (:meth:`of` builds it from the units), as the
    rows' columns of those names say it."""

    def __init__(self, keys: Iterable[tuple[str, str, str, str, str]]) -> None:
        self.keys = set(keys)
        self._any_sweep = {key[1:] for key in self.keys}
        self.weights = {key[1:3] for key in self.keys}  # (model, weights)

    @classmethod
    def of(cls, units: Iterable) -> CurrentUnits:
        """From :class:`bench.experiment.Unit` objects (``sweep``, ``model``, ``dataset``,
        ``subset``; the dataset as the rows name it)."""
        from bench.experiment import dataset_label

        return cls(
            (u.sweep, u.model.id, u.model.key, dataset_label(u.dataset), u.subset) for u in units
        )

    def match(self, sweep: str, model: str, weights: str, dataset: str, subset: str) -> bool:
        """A row's fields: all five count; a row without a sweep (older files) is matched on
        the other four."""
        if sweep:
            return (sweep, model, weights, dataset, subset) in self.keys
        return (model, weights, dataset, subset) in self._any_sweep
