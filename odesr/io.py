"""Atomic file writes, CSV reads that detect damage, and file locks.

* A reader never sees a half-written file and a crash never truncates one: data goes to a
  temporary ``.<name>.odesr-<16 hex>.tmp`` beside the target (a random token and the ``odesr-``
  marker: a name only odesr makes), is fsynced, then renamed over it (``overwrite=True``) or
  hard-linked to it, which fails when the target exists (``overwrite=False``: the refusal is
  enforced at write time, not only checked before).
* The writer holds an exclusive ``flock`` on its temporary from before it gets that name (it is
  created as ``....new`` and renamed once locked). A writer killed with SIGKILL leaves its
  temporary behind, unlocked; the next write into that folder removes temporaries of exactly
  this pattern that no process holds locked. Nothing else is ever removed (no file of another
  name, no link, no folder; no guessing from numbers in names).
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
import secrets
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

_TMP_RE = re.compile(r"^\..+\.odesr-[0-9a-f]{16}\.tmp$")
_swept: set[Path] = set()

try:  # POSIX advisory locks mark a temporary as in use by its writer
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: stale temporaries are left alone
    fcntl = None  # type: ignore[assignment]


def _unlocked(path: str) -> bool:
    """Whether the regular file ``path`` can be locked now (no live writer holds it)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove odesr's own temporaries (``.<name>.odesr-<16 hex>.tmp``, regular files) in
    ``folder`` that no writer holds locked; every other file is left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            regular = entry.is_file(follow_symlinks=False)
        except OSError:
            continue
        if not regular or _TMP_RE.match(entry.name) is None or not _unlocked(entry.path):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _new_temporary(parent: Path, name: str) -> tuple[int, str]:
    """An open, locked, new temporary ``.<name>.odesr-<token>.tmp`` in ``parent`` (fd, path).

    It is created under a name the sweep ignores and renamed once locked, so a sweep never sees
    it unlocked while its writer lives."""
    token = secrets.token_hex(8)
    tmp = str(parent / f".{name}.odesr-{token}.tmp")
    fresh = tmp[: -len(".tmp")] + ".new"
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(fresh, tmp)
    except BaseException:
        os.close(fd)
        if os.path.exists(fresh):
            os.unlink(fresh)
        raise
    return fd, tmp


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then move it to ``path``.

    ``overwrite=False`` raises :class:`FileExistsError` if ``path`` exists at the moment of the
    move (hard link, atomic), so two writers never both succeed. Files get the permissions a
    plain ``open(path, "wb")`` would give. OS errors (disk full, permissions) propagate as
    :class:`OSError` after the temporary is removed; ``path`` is then unchanged.
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
        fd, tmp = _new_temporary(parent, path.name)
    except OSError as exc:
        raise PermissionError(f"cannot write to {parent}: {exc.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.chmod(tmp, 0o666 & ~umask)  # created 0600; give the usual permissions
            try:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:  # disk full, file size limit: name the file being written
                raise OSError(exc.errno, exc.strerror, str(path)) from None
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
