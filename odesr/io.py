"""Atomic file writes, CSV reads that detect damage, and file locks.

* A reader never sees a half-written file and a crash never truncates one: data goes to a
  temporary ``.<name>.<pid>.<random>.tmp`` beside the target, is fsynced, then renamed over it
  (``overwrite=True``) or hard-linked to it, which fails when the target exists
  (``overwrite=False``: the refusal is enforced at write time, not only checked before).
* A writer killed with SIGKILL leaves its temporary behind; the next write into that folder
  removes temporaries of this naming pattern whose process is gone (same host).
* Locks: :mod:`filelock` (``<file>.lock``) around results CSVs and ``odesr eval --out``.
* :func:`read_csv_rows` returns the rows of a CSV and the lines that do not parse (wrong field
  count, a last line cut mid-line, a missing column), so no damaged row is ever used.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "write_bytes_atomic",
    "write_text_atomic",
    "write_csv_atomic",
    "read_csv_rows",
    "CSVRows",
    "remove_stale_temporaries",
]

_TMP_RE = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
_swept: set[Path] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.<pid>.<random>.tmp`` files in ``folder`` whose writer (pid) is dead."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then move it to ``path``.

    ``overwrite=False`` raises :class:`FileExistsError` if ``path`` exists at the moment of the
    move (hard link, atomic), so two writers never both succeed. Files get the permissions a
    plain ``open(path, "wb")`` would give.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermissionError(f"cannot create folder {parent}: {exc.strerror}") from None
    if parent.resolve() not in _swept:
        _swept.add(parent.resolve())
        remove_stale_temporaries(parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
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
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _link_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (FileExistsError otherwise)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
    except OSError as exc:  # no hard links here (e.g. FAT): claim the name, then replace it
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


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


@dataclass
class CSVRows:
    """What :func:`read_csv_rows` found: good ``rows`` (dicts of strings) with their 1-based
    ``lines``, and ``damaged`` lines as ``(line number, reason)``."""

    rows: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)


def read_csv_rows(
    path: str | os.PathLike, required: Sequence[str] = (), numeric: Sequence[str] = ()
) -> CSVRows:
    """Read a CSV, separating rows that parse from damaged lines (which are never returned).

    A row is damaged when its field count differs from the header's, when a ``numeric`` column
    does not parse as a number, or when it is the last line and lacks its newline (cut
    mid-line: even a full field count may hold a cut-short value). A header lacking a
    ``required`` column makes the whole file damaged (line 1).
    """
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    out = CSVRows()
    if not text:
        return out
    lines = text.splitlines(keepends=True)
    header = next(csv.reader([lines[0]]), [])
    missing = [c for c in required if c not in header]
    if missing or not lines[0].endswith("\n"):
        why = f"header lacks column(s) {', '.join(missing)}" if missing else "header cut short"
        out.damaged.append((1, why))
        return out
    records = list(csv.reader(io.StringIO(text[len(lines[0]) :], newline="")))
    line = 1
    for k, fields in enumerate(records):
        line += 1
        if not fields:
            continue
        if k == len(records) - 1 and not text.endswith("\n"):
            out.damaged.append((line, "last line cut mid-line (no newline at the end)"))
            continue
        if len(fields) != len(header):
            out.damaged.append((line, f"{len(fields)} of {len(header)} fields"))
            continue
        row = dict(zip(header, fields, strict=True))
        bad = [c for c in numeric if not _is_number(row.get(c, ""))]
        if bad:
            out.damaged.append((line, f"{bad[0]}={row[bad[0]]!r} is not a number"))
            continue
        out.rows.append(row)
        out.lines.append(line)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
