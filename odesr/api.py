"""The Python face of odesr (re-exported by ``odesr/__init__.py``; torch is imported here, on
first use, not by ``import odesr``).

* :func:`load_model` -- :func:`odesr.models.load_model` (bundled model, name, checkpoint path);
* :func:`upscale` -- numpy uint8/uint16 (H, W[, C]) arrays or PIL images in, the same type out,
  at MATLAB's output size ``ceil(size * scale)`` (as ``odesr upscale``);
* :func:`evaluate` -- the rows ``odesr eval`` writes, as a pandas DataFrame.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["load_model", "upscale", "evaluate"]


def load_model(name_or_path: str | os.PathLike | None = None, device: str = "cpu"):
    """A model in eval mode: None = the bundled small vdsr-ODE, a registered name such as
    ``"bicubic"``, or a checkpoint path made by ``odesr train``."""
    from odesr.models import load_model as _load

    return _load(name_or_path, device)


def _model(model: Any, device: str):
    import torch

    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    return load_model(model, device)


def _as_array(image: Any) -> tuple[np.ndarray, str | None]:
    """(array (H, W) or (H, W, C) uint8/uint16, PIL mode or None for a numpy input)."""
    if isinstance(image, np.ndarray):
        return image, None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        mode = image.mode
        if mode not in ("L", "I;16", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
        return np.asarray(image), image.mode
    raise TypeError(f"upscale takes a numpy array or a PIL image, got {type(image).__name__}")


def upscale(
    image: Any,
    scale: float,
    model: Any = None,
    *,
    device: str = "cpu",
    tile: int | None = None,
    **solver: Any,
):
    """Super-resolve ``image`` by ``scale`` (a real number > 1) with ``model`` (a model, a name,
    a checkpoint path, or None for the bundled model).

    ``image``: numpy uint8 or uint16 array (H, W) grey, (H, W, 1|3|4), or a PIL image (L, I;16,
    RGB, RGBA; other modes are converted to RGB/RGBA). Returns the same type (and dtype / mode)
    of size ``ceil(H * scale) x ceil(W * scale)``. Grey stays grey, alpha is enlarged with
    MATLAB bicubic. ``solver``: ``method``, ``steps``, ``step_size``, ``rtol``, ``atol`` (ODE
    models). ``tile``: output tile side (default: automatic, exact for fixed-step solvers).
    """
    from odesr.upscale import _auto_tile, _to_uint, output_shape, upscale_array

    arr, mode = _as_array(image)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image dtype must be uint8 or uint16, got {arr.dtype}")
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image shape must be (H, W) or (H, W, 1|3|4), got {arr.shape}")
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 1):
        raise ValueError(f"scale must be a finite number > 1, got {scale!r}")
    net = _model(model, device)
    if solver and not net.is_ode:
        raise ValueError(f"model {net.spec.get('name')!r} is not an ODE model: {sorted(solver)}")
    settings = net.solver_settings(solver) if net.is_ode else None
    bits = 16 if arr.dtype == np.uint16 else 8
    size = output_shape(arr.shape[0], arr.shape[1], scale)
    if tile is None and net.input_kind == "upscaled":
        tile = _auto_tile(net, scale, settings, size)
    res = upscale_array(
        net,
        arr.astype(np.float32) / (65535.0 if bits == 16 else 255.0),
        scale,
        size,
        tile=tile,
        solver=settings,
        device=device,
    )
    rgb = res.rgb.mean(axis=2, keepdims=True) if arr.shape[2] == 1 else res.rgb  # as the CLI
    out = _to_uint(rgb, bits)
    if res.alpha is not None:
        out = np.concatenate([out, _to_uint(res.alpha, bits)[..., None]], axis=2)
    if squeeze:
        out = out[..., 0]
    if mode is None:
        return out
    from PIL import Image

    return Image.fromarray(out)  # uint16 (H, W) -> I;16, uint8 -> L / RGB / RGBA


def evaluate(
    model: Any,
    dataset: str | os.PathLike | Iterable[str | os.PathLike],
    scales: Iterable[float] | str,
    protocol: str = "metasr",
    *,
    data_root: str | os.PathLike | None = None,
    y_rounding: str = "matlab",
    batch_size: int = 16,
    device: str = "cpu",
    limit: int | None = None,
    tile: int | None = None,
    label: str | None = None,
    **solver: Any,
):
    """Evaluate ``model`` (a model, a registered name, a checkpoint path, None = bundled) on
    ``dataset`` (a name under the data root -- ``data_root``, else ``$ODESR_DATA``, else
    ``./data`` -- an image folder, or a list of them) at ``scales`` (numbers or
    ``"1.1:4.0:0.1"``). Returns a pandas DataFrame with the rows and columns ``odesr eval``
    writes (one row per model, dataset, image, scale). ``solver``: ODE solver overrides."""
    import pandas as pd

    from odesr.evaluate import EVAL_COLUMNS, EvalSettings, eval_table, parse_scales

    net = _model(model, device)
    if label is None:
        named = isinstance(model, str) and not model.endswith(".pt") and "/" not in model
        label = model if named else net.spec.get("name", "model")
    if isinstance(scales, str):
        scales = parse_scales(scales)
    if solver and not net.is_ode:
        raise ValueError(f"model {net.spec.get('name')!r} is not an ODE model: {sorted(solver)}")
    settings = EvalSettings(
        protocol=protocol,
        y_rounding=y_rounding,
        batch_size=batch_size,
        device=device,
        solver=net.solver_settings(solver) if net.is_ode else None,
        tile=tile,
    )
    datasets = [dataset] if isinstance(dataset, str | os.PathLike) else list(dataset)
    root = None if data_root is None else str(data_root)
    rows: list[dict] = []
    for name in datasets:
        rows += eval_table(net, str(label), str(name), [float(s) for s in scales], settings, root)
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)
