"""The paper's tables (``bench/reference/paper_tables.csv``: table, dataset, method, solver,
scale, psnr): where they are read from, and one value looked up.

Used by the reports (:mod:`bench.report`, :mod:`bench.claims`) and by the recipe sweeps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

__all__ = [
    "PAPER_CSV",
    "PAPER_TABLES_ENV",
    "PACKAGED_PAPER_TABLES",
    "paper_tables_path",
    "paper_values",
    "lookup_paper",
]

PAPER_CSV = "paper_tables.csv"
PAPER_TABLES_ENV = "ODESR_PAPER_TABLES"
PACKAGED_PAPER_TABLES = Path(__file__).with_name("reference") / PAPER_CSV  # the paper's tables


def paper_tables_path(
    data_root: str | os.PathLike | None = None, override: str | os.PathLike | None = None
) -> Path:
    """Where the paper's tables are read from (the one place): ``override``, else
    ``$ODESR_PAPER_TABLES``, else ``reference/paper_tables.csv`` next to the datasets folder
    (``--data-root``, else ``$ODESR_DATA``, else ``./data``; by default ``../shared/reference``)
    when it exists, else the copy shipped with bench (:data:`PACKAGED_PAPER_TABLES`)."""
    if override:
        return Path(override)
    if os.environ.get(PAPER_TABLES_ENV):
        return Path(os.environ[PAPER_TABLES_ENV])
    root = Path(data_root or os.environ.get("ODESR_DATA") or "data").resolve()
    beside = root.parent / "reference" / PAPER_CSV
    return beside if beside.is_file() else PACKAGED_PAPER_TABLES


def paper_values(path: str | os.PathLike) -> pd.DataFrame:
    """The paper's tables as a frame (scales rounded to 6 digits); empty when ``path`` is
    missing."""
    if not Path(path).exists():
        return pd.DataFrame(columns=["table", "dataset", "method", "solver", "scale", "psnr"])
    ref = pd.read_csv(path, dtype={"solver": str}, keep_default_na=False)
    ref["scale"] = ref["scale"].astype(float).round(6)
    return ref


def lookup_paper(
    ref: pd.DataFrame,
    table: str | None,
    dataset: str,
    method: str | None,
    scale: float,
    solver: str | None = None,
) -> float:
    """The paper's PSNR of ``method`` on ``dataset`` at ``scale`` in ``table`` (of the rows of
    ``solver`` when given) from :func:`paper_values`' frame; NaN where it reports none."""
    if not table or not method or ref.empty:
        return math.nan
    m = (ref["table"] == table) & (ref["dataset"] == dataset) & (ref["method"] == method)
    m &= ref["scale"] == round(float(scale), 6)
    if solver is not None:
        m &= ref["solver"] == solver
    vals = ref.loc[m, "psnr"]
    return float(vals.iloc[0]) if len(vals) else math.nan
