"""Atomic file writes: a reader never sees a half-written file, a crash never truncates one."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_text_atomic", "write_csv_atomic"]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermissionError(f"cannot create folder {parent}: {exc.strerror}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise PermissionError(f"cannot write to {parent}: {exc.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[dict], columns: Sequence[str]) -> None:
    """Write dict rows as CSV with ``columns`` first (extra keys appended in first-seen order)."""
    rows = list(rows)
    cols = list(columns)
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k, "")) for k in cols})
    write_text_atomic(path, buf.getvalue())


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return repr(value) if value == value else "nan"
    return value
