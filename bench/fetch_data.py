"""Download the benchmark datasets listed in ``bench/datasets.yaml`` into the data root.

    python -m bench.fetch_data [NAME ...] [--data-root D] [--manifest bench/datasets.yaml]

Each entry: ``name`` (the folder made: ``<root>/<name>/HR``), ``url``, ``sha256`` of the archive,
``subdir`` (the folder inside the archive holding the HR images) and optionally ``pattern``
(glob of the files to keep, default every image). The archive is streamed to
``<root>/.downloads/``, its SHA-256 checked (a mismatch deletes it and fails; an entry without a
checksum is refused unless ``--allow-unpinned``, which prints the hash to pin), then unpacked
(zip or tar) into a temporary folder beside the target and moved into place; an existing
``<root>/<name>/HR`` is left alone unless ``--force``.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from odesr.cli import HelpFormatter

__all__ = ["MANIFEST", "FetchError", "load_manifest", "sha256_of", "fetch", "main"]

MANIFEST = Path(__file__).with_name("datasets.yaml")
IMAGE_GLOB = ("*.png", "*.bmp", "*.jpg", "*.jpeg", "*.tif", "*.tiff")


class FetchError(RuntimeError):
    """Download, checksum or archive problem; the message names the dataset and file."""


def load_manifest(path: str | os.PathLike = MANIFEST) -> dict[str, dict]:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    entries = raw.get("datasets", raw)
    return {e["name"]: e for e in entries}


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, dest)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"cannot download {url}: {exc}") from None


def _safe_members(names: Sequence[str]) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise FetchError(f"archive member {n!r} points outside the archive")


def _unpack(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf.namelist())
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _safe_members(tf.getnames())
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 (members were checked above)
                tf.extractall(into)
    else:
        raise FetchError(f"{archive}: neither a zip nor a tar archive")


def fetch(
    name: str,
    data_root: str | os.PathLike,
    manifest: str | os.PathLike = MANIFEST,
    force: bool = False,
    allow_unpinned: bool = False,
    timeout: float = 60.0,
    log=print,
) -> Path:
    """Fetch one dataset; returns ``<root>/<name>/HR``."""
    entries = load_manifest(manifest)
    if name not in entries:
        raise FetchError(f"unknown dataset {name!r}; the manifest lists {', '.join(entries)}")
    e = entries[name]
    root = Path(data_root)
    target = root / name / "HR"
    if target.is_dir() and any(target.iterdir()) and not force:
        log(f"fetch_data: {target} exists; skipped (use --force to replace)")
        return target
    if not e.get("url"):
        raise FetchError(f"{name}: the manifest has no URL for it; copy its images to {target}")
    url = str(e["url"])
    archive = root / ".downloads" / (e.get("file") or Path(url.split("?")[0]).name or name)
    if not archive.exists():
        log(f"fetch_data: {name}: downloading {url}")
        _download(url, archive, timeout)
    digest = sha256_of(archive)
    want = (e.get("sha256") or "").lower()
    if not want:
        if not allow_unpinned:
            raise FetchError(
                f"{name}: no sha256 in the manifest; refusing to use an unverified archive "
                f"(got sha256 {digest}; pin it in {manifest} or pass --allow-unpinned)"
            )
        log(f"fetch_data: {name}: UNPINNED archive, sha256 {digest}")
    elif digest != want:
        archive.unlink()
        raise FetchError(
            f"{name}: checksum mismatch for {archive.name}: expected {want}, "
            f"got {digest} (file deleted)"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=root) as tmp:
        _unpack(archive, Path(tmp) / "x")
        src = Path(tmp) / "x" / str(e.get("subdir", "."))
        if not src.is_dir():
            raise FetchError(f"{name}: no folder {e.get('subdir')!r} in {archive.name}")
        patterns = [e["pattern"]] if e.get("pattern") else list(IMAGE_GLOB)
        files = sorted(
            p
            for p in src.iterdir()
            if p.is_file() and any(fnmatch.fnmatch(p.name.lower(), pt) for pt in patterns)
        )
        if not files:
            raise FetchError(f"{name}: no images in {e.get('subdir')!r} of {archive.name}")
        stage = Path(tmp) / "HR"
        stage.mkdir()
        for f in files:
            shutil.move(str(f), stage / f.name)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage, target)
    if e.get("count") and len(files) != int(e["count"]):
        log(f"fetch_data: warning: {name} has {len(files)} images, manifest says {e['count']}")
    log(f"fetch_data: {name}: {len(files)} images -> {target}")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.fetch_data",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("names", nargs="*", help="datasets to fetch (default: all in the manifest)")
    p.add_argument("--data-root", default=None, help="target folder (else $ODESR_DATA, ./data)")
    p.add_argument("--manifest", default=str(MANIFEST))
    p.add_argument("--force", action="store_true", help="replace existing folders")
    p.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="accept entries without sha256 (prints the hash to pin)",
    )
    args = p.parse_args(argv)
    from odesr.data import resolve_data_root

    root = resolve_data_root(args.data_root)
    names = args.names or list(load_manifest(args.manifest))
    failed = 0
    for name in names:
        try:
            fetch(name, root, args.manifest, args.force, args.allow_unpinned)
        except FetchError as exc:
            print(f"fetch_data: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
