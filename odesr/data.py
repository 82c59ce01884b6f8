"""Datasets and image files.

A dataset is named (``Set5``, ``B100``, ...: found as ``<data root>/<Name>/HR/*``) or given as a
folder of images. The data root comes from ``--data-root``, else ``$ODESR_DATA``, else ``./data``.

Images load as float tensors (3, H, W) in [0, 1] for the networks (single-channel files are
replicated to RGB) together with their original channel count, so a grey image can be scored on
its own channel (the convention of the MATLAB scripts behind the published tables).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "KNOWN_DATASETS",
    "IMAGE_SUFFIXES",
    "DataError",
    "LoadedImage",
    "resolve_data_root",
    "dataset_dir",
    "list_images",
    "load_image",
    "load_images",
    "read_image",
]

KNOWN_DATASETS = ("Set5", "Set14", "B100", "Urban100", "Manga109", "DIV2K", "T91", "BSD200")
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


_warned_frames: set[Path] = set()  # multi-frame files already warned about (once per process)


class DataError(ValueError):
    """A data problem a user can fix (missing folder, unreadable image); the message names it."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as the networks see it: ``rgb`` (3, H, W) float32 in [0, 1]; ``channels`` is the
    file's own channel count (1 for grey) and ``bit_depth`` 8 or 16."""

    path: Path
    rgb: torch.Tensor
    channels: int
    bit_depth: int

    @property
    def name(self) -> str:
        return self.path.stem


def resolve_data_root(cli_value: str | os.PathLike | None = None) -> Path:
    """``--data-root`` if given, else ``$ODESR_DATA``, else ``./data``."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("ODESR_DATA")
    return Path(env) if env else Path("data")


def dataset_dir(
    name_or_folder: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> Path:
    """Folder holding a dataset's HR images: a known name under the data root, or a folder."""
    text = str(name_or_folder)
    as_path = Path(text)
    if text not in KNOWN_DATASETS and as_path.is_dir():
        return as_path / "HR" if (as_path / "HR").is_dir() else as_path
    root = resolve_data_root(data_root)
    match = next((n for n in KNOWN_DATASETS if n.lower() == text.lower()), None)
    if match is None:
        raise DataError(
            f"unknown dataset {text!r}: not a folder and not one of {', '.join(KNOWN_DATASETS)}"
        )
    folder = root / match / "HR"
    if not folder.is_dir():
        raise DataError(
            f"dataset {match} not found: no folder {folder} (set --data-root or ODESR_DATA)"
        )
    return folder


def list_images(
    name_or_folder: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[Path]:
    """Sorted image files of a dataset; :class:`DataError` when there are none."""
    folder = dataset_dir(name_or_folder, data_root)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to ``(array H x W x C float64 in [0, 1], bit_depth)``, C in {1, 3, 4}.

    See :func:`_decode` for what is read and refused."""
    arr, depth = _decode(path)
    return (arr / 255.0, depth) if arr.dtype == np.uint8 else (arr, depth)


def _decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to ``(array H x W x C, bit_depth)``, C in {1, 3, 4}: ``uint8`` as stored
    for 8-bit images, float64 in [0, 1] otherwise.

    EXIF orientation is applied (the array is the image as displayed). Transparency given as a
    palette or ``tRNS`` colour comes back as an alpha channel (C = 4). 32-bit float grey
    (Pillow mode ``F``, e.g. float TIFF) must hold finite values in [0, 1] and is returned as is
    with bit_depth 16 (its precision is kept in 16-bit outputs); other ranges are refused. Only
    the first frame of a multi-frame file (GIF, APNG, WebP, TIFF pages) is used, with a one-line
    warning on stderr (once per file and process). Raises :class:`DataError` naming the file
    when it is missing, empty, truncated, too large to decode safely (Pillow's
    decompression-bomb limit) or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            img.load()
            if frames > 1 and path not in _warned_frames:
                _warned_frames.add(path)
                print(
                    f"odesr: warning: {path}: {frames} frames; only the first is used",
                    file=sys.stderr,
                )
            img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode == "F":
                arr = np.asarray(img, dtype=np.float64)[..., None]
                lo, hi = float(arr.min()), float(arr.max())
                if not (np.isfinite(arr).all() and lo >= 0 and hi <= 1):
                    raise DataError(
                        f"{path}: float image with values in [{lo:g}, {hi:g}]; only finite "
                        "values in [0, 1] are supported (rescale it first)"
                    )
                return arr, 16
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)[..., None] / 65535.0
                return np.clip(arr, 0, 1), 16
            if "transparency" in img.info and mode in ("P", "L", "RGB"):
                mode = "RGBA"
            if mode in ("L", "1"):
                arr = np.asarray(img.convert("L"))[..., None]
            elif mode in ("RGBA", "LA", "PA"):
                arr = np.asarray(img.convert("RGBA"))
            else:
                arr = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        reason = (
            "truncated or corrupt image"
            if "truncated" in str(exc).lower()
            else "not a readable image"
        )
        raise DataError(f"{path}: {reason} ({exc.__class__.__name__}: {exc})") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{path}: image has no pixels")
    return arr, 8


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Load an image for the networks: RGB (3, H, W) float32 in [0, 1] (grey replicated, alpha
    dropped). 8-bit values are ``v / 255`` in float32, the float32 rounding of
    :func:`read_image`'s float64 values (equal for every 8-bit ``v``)."""
    arr, depth = _decode(path)
    channels = arr.shape[2]
    if channels == 4:
        arr, channels = arr[..., :3], 3
    if channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    rgb = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).to(torch.float32)
    if arr.dtype == np.uint8:
        rgb.div_(255.0)
    return LoadedImage(Path(path), rgb, channels, depth)


def load_images(
    paths: Sequence[str | os.PathLike], threads: int | None = None
) -> list[LoadedImage]:
    """:func:`load_image` of every path, in order, on ``threads`` threads (None: one per core;
    decoding releases the GIL). The first unreadable file (in order) raises its error."""
    threads = min(threads or os.cpu_count() or 1, len(paths))
    if threads < 2:
        return [load_image(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(load_image, paths))
