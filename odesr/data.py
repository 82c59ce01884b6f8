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
import warnings
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
    "image_array",
    "ImageHeader",
    "inspect_image",
    "inspect_images",
    "max_pixels",
    "check_pixels",
    "MAX_PIXELS_ENV",
    "DEFAULT_MAX_PIXELS",
    "READ_MODES",
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
    """Sorted image files of a dataset; :class:`DataError` when there are none, when a file
    name is not valid UTF-8 (it could not be written to a results file) or when two files share
    a name stem (``im0.png`` and ``im0.tif``: rows are named by the stem)."""
    folder = dataset_dir(name_or_folder, data_root)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stems: dict[str, Path] = {}
    for f in files:
        try:
            f.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(
                f"{folder}: file name {f.name!r} is not valid UTF-8; rename it"
            ) from None
        if f.stem in stems:
            raise DataError(
                f"{folder}: {stems[f.stem].name} and {f.name} share the name {f.stem!r} "
                "(results rows are named by it); keep one"
            )
        stems[f.stem] = f
    return files


MAX_PIXELS_ENV = "ODESR_MAX_PIXELS"
# Pillow's own decompression-bomb threshold (it only warns between it and twice it)
DEFAULT_MAX_PIXELS = 89_478_485
# Pillow modes read, and what they become (see _pil_array)
READ_MODES = frozenset(
    "1 L LA La P PA RGB RGBA RGBa RGBX CMYK YCbCr LAB HSV I I;16 I;16B I;16L I;16N F".split()
)


def max_pixels() -> int:
    """The most pixels (width x height) an image may declare: ``$ODESR_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS` (about 89.5 Mpx; a float32 RGB copy of it takes about 1 GB)."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before it is decoded: ``size`` (H, W), Pillow ``mode`` and
    the number of ``frames``."""

    path: Path
    size: tuple[int, int]
    mode: str
    frames: int


def check_pixels(where: object, width: int, height: int) -> None:
    """Refuse an image of no pixels or of more than :func:`max_pixels` (one line naming
    ``where``: a file or an argument), before it is decoded or processed."""
    if width < 1 or height < 1:
        raise DataError(f"{where}: image has no pixels")
    limit = max_pixels()
    if width * height > limit:
        raise DataError(
            f"{where}: image too large: {width}x{height} = {width * height} pixels, more than the "
            f"limit of {limit} (set {MAX_PIXELS_ENV} to raise it)"
        )


def _check_declared(where: object, width: int, height: int, mode: str) -> None:
    """Refuse a declared size or mode that odesr does not read (one line naming ``where``)."""
    check_pixels(where, width, height)
    if mode not in READ_MODES:
        raise DataError(f"{where}: image mode {mode!r} is not supported")


def _open(path: Path) -> Image.Image:
    """``Image.open`` with odesr's own pixel limit instead of Pillow's bomb warning/error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombError:
            raise DataError(
                f"{path}: image too large to decode safely (over twice Pillow's limit of "
                f"{Image.MAX_IMAGE_PIXELS} pixels)"
            ) from None


def inspect_image(path: str | os.PathLike) -> ImageHeader:
    """Read and check an image's header only (size against :func:`max_pixels`, mode); nothing
    is decoded. Raises :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        with _open(path) as img:
            width, height = img.size
            header = ImageHeader(path, (height, width), img.mode, getattr(img, "n_frames", 1))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    _check_declared(path, width, height, header.mode)
    return header


def inspect_images(paths: Sequence[str | os.PathLike]) -> list[ImageHeader]:
    """:func:`inspect_image` of every file, before any is decoded (a whole dataset or batch)."""
    return [inspect_image(p) for p in paths]


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to ``(array H x W x C float64 in [0, 1], bit_depth)``, C in {1, 2, 3, 4}.

    See :func:`_decode` for what is read and refused."""
    arr, depth = _decode(path)
    return (arr / 255.0, depth) if arr.dtype == np.uint8 else (arr, depth)


def image_array(image: Image.Image, where: str = "image") -> tuple[np.ndarray, int]:
    """A PIL image (already opened; EXIF orientation applied here) as ``(array H x W x C,
    bit_depth)`` by the rules of :func:`_decode` -- the one reader of files and of the Python
    face's PIL images. ``where`` names the source in errors (a file, an argument)."""
    _check_declared(where, image.size[0], image.size[1], image.mode)
    return _pil_array(ImageOps.exif_transpose(image), where)


def _pil_array(img: Image.Image, where: object) -> tuple[np.ndarray, int]:
    mode = img.mode
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)[..., None]
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not (np.isfinite(arr).all() and lo >= 0 and hi <= 1):
            raise DataError(
                f"{where}: float image with values in [{lo:g}, {hi:g}]; only finite "
                "values in [0, 1] are supported (rescale it first)"
            )
        return arr, 16
    if mode.startswith("I"):
        arr = np.asarray(img).astype(np.float64)[..., None]
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{where}: integer image with values in [{lo:g}, {hi:g}]; only 16-bit values "
                "(0 to 65535) are supported (rescale it first)"
            )
        return arr / 65535.0, 16
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info
    if mode in ("L", "1", "LA", "La"):
        if has_alpha:
            return np.asarray(img.convert("LA")), 8
        return np.asarray(img.convert("L"))[..., None], 8
    if has_alpha:
        return np.asarray(img.convert("RGBA")), 8
    return np.asarray(img.convert("RGB")), 8


def _decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to ``(array H x W x C, bit_depth)``, C in {1, 2, 3, 4} (grey, grey and
    alpha, RGB, RGBA): ``uint8`` as stored for 8-bit images, float64 in [0, 1] otherwise.

    The header is checked first (:func:`inspect_image`: size within :func:`max_pixels`, a
    supported mode). EXIF orientation is applied (the array is the image as displayed).
    Transparency given as a palette or ``tRNS`` colour comes back as an alpha channel. 32-bit
    float grey (Pillow mode ``F``, e.g. float TIFF) must hold finite values in [0, 1] and is
    returned as is with bit_depth 16 (its precision is kept in 16-bit outputs); integer grey
    (modes ``I;16``, ``I``) must hold values in [0, 65535] and is read as 16-bit; other ranges
    are refused, never clipped. Only the first frame of a multi-frame file (GIF, APNG, WebP,
    TIFF pages) is used, with a one-line warning on stderr (once per file and process). Raises
    :class:`DataError` naming the file when it is missing, empty, truncated, too large or not
    an image.
    """
    path = Path(path)
    header = inspect_image(path)
    try:
        with _open(path) as img:
            img.load()
            if header.frames > 1 and path not in _warned_frames:
                _warned_frames.add(path)
                print(
                    f"odesr: warning: {path}: {header.frames} frames; only the first is used",
                    file=sys.stderr,
                )
            arr, depth = image_array(img, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        reason = (
            "truncated or corrupt image"
            if "truncated" in str(exc).lower()
            else "not a readable image"
        )
        raise DataError(f"{path}: {reason} ({exc.__class__.__name__}: {exc})") from None
    return arr, depth


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Load an image for the networks: RGB (3, H, W) float32 in [0, 1] (grey replicated, alpha
    dropped). 8-bit values are ``v / 255`` in float32, the float32 rounding of
    :func:`read_image`'s float64 values (equal for every 8-bit ``v``)."""
    arr, depth = _decode(path)
    channels = arr.shape[2]
    if channels in (2, 4):  # alpha dropped
        arr, channels = arr[..., : channels - 1], channels - 1
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
