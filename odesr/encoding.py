"""Encoding SR results: float images to 8/16-bit integers (:func:`to_uint`), the output formats
(:data:`FORMATS`, by file suffix; :data:`FOLDER_SUFFIX`, by ``--format``), one image in memory
(:func:`encode`) and a trajectory's animated GIF (:func:`encode_gif`). Used by ``odesr upscale``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["FORMATS", "FOLDER_SUFFIX", "to_uint", "encode", "encode_gif"]

FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
FOLDER_SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "jpg": ".jpg",
    "tiff": ".tif",
    "tif": ".tif",
    "webp": ".webp",
}
GIF_MAX_SIDE = 1024
JPEG_QUALITY = 95
WEBP_QUALITY = 95


def to_uint(x: np.ndarray, bits: int) -> np.ndarray:
    """Float values in [0, 1] (clipped) to ``bits``-bit integers, rounded half up."""
    peak = 65535.0 if bits == 16 else 255.0
    q = np.floor(np.clip(x, 0.0, 1.0) * peak + 0.5)
    return q.astype(np.uint16 if bits == 16 else np.uint8)


def encode(arr: np.ndarray, fmt: str) -> bytes:
    """Encode a uint8 (H, W[, C]) or uint16 (H, W) array in ``fmt`` (PNG, JPEG, TIFF, WEBP)."""
    img = Image.fromarray(arr)  # (H, W, 2) uint8 is grey and alpha (LA)
    if img.mode == "LA" and fmt == "WEBP":  # WebP has no grey: RGBA holding grey values
        img = img.convert("RGBA")
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    elif fmt == "WEBP":
        img.save(buf, format="WEBP", quality=WEBP_QUALITY)
    elif fmt == "TIFF":
        img.save(buf, format="TIFF", compression="tiff_deflate")
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def encode_gif(frames: list[np.ndarray]) -> bytes:
    """Animated GIF (loops; first and last frames held longer), long side <= GIF_MAX_SIDE."""
    images = [Image.fromarray(f) for f in frames]
    h, w = frames[0].shape[:2]
    if max(h, w) > GIF_MAX_SIDE:
        k = GIF_MAX_SIDE / max(h, w)
        new = (max(1, round(w * k)), max(1, round(h * k)))
        images = [im.resize(new, Image.Resampling.LANCZOS) for im in images]
    durations = [120] * len(images)
    durations[0] = durations[-1] = 800
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
    )
    return buf.getvalue()
