"""The Python face of odesr (re-exported by ``odesr/__init__.py``; torch is imported here, on
first use, not by ``import odesr``).

* :func:`load_model` -- :func:`odesr.checkpoints.load_model` (bundled model, name, checkpoint path);
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


def load_model(
    name_or_path: str | os.PathLike | None = None, device: str = "auto", seed: int | None = None
):
    """A model in eval mode: None = the bundled small vdsr-ODE, ``"bicubic"``, the name of
    published weights (``"vdsr-ode"``, ``"rdn-ode"``, ... with their training ``seed``, default
    0; :mod:`odesr.published`), or a checkpoint path made by ``odesr train``."""
    from odesr import validate
    from odesr.checkpoints import load_model as _load

    return _load(name_or_path, validate.device(device, "device"), seed)


def _model(model: Any, device: str):
    import torch

    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    return load_model(model, device)


_SOLVER_ARGS = ("solver", "steps", "step_size", "rtol", "atol")


def _solver_options(solver: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The solver overrides given by name (``solver`` = the CLI's ``--solver``; ``method`` a
    deprecated alias), as :meth:`SolverSettings.replace` takes them. Unknown names: TypeError."""
    import warnings

    options = dict(options)
    if "method" in options:
        warnings.warn("method= is deprecated; use solver=", DeprecationWarning, stacklevel=3)
        method = options.pop("method")
        if solver is not None and method is not None and method != solver:
            raise TypeError(f"solver={solver!r} and method={method!r} disagree; give solver=")
        solver = solver if solver is not None else method
    unknown = sorted(set(options) - set(_SOLVER_ARGS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(unknown)}; solver options are "
            f"{', '.join(_SOLVER_ARGS)}"
        )
    if solver is not None and not isinstance(solver, str):
        raise TypeError(
            f"solver must be a method name (euler, rk4, ...), got {solver!r}; give steps=, "
            "step_size=, rtol=, atol= as keyword arguments of their own"
        )
    given = {"method": solver, **options}
    return {k: v for k, v in given.items() if v is not None}


def _check_solver(net: Any, given: dict[str, Any]) -> Any:
    """Resolved solver settings of ``net`` with ``given`` (None: not an ODE model); the
    tolerances are bounded as on the command line."""
    from odesr import validate

    if not net.is_ode:
        if given:
            names = ", ".join("solver" if k == "method" else k for k in sorted(given))
            raise ValueError(f"model {net.spec.get('name')!r} is not an ODE model: {names}")
        return None
    for name in ("rtol", "atol"):
        validate.tolerance(given.get(name), name)
    try:
        return net.solver_settings(given)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"solver options {given}: {exc}") from None


def _positive_int(value: Any, name: str, minimum: int = 1) -> int | None:
    """``value`` (None allowed) as an int >= ``minimum``; ValueError naming the argument."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Input:
    """An image given to :func:`upscale`, read once: ``arr`` (H, W, C) float32 in [0, 1], C in
    {1, 2, 3, 4} (grey, grey+alpha, RGB, RGBA), ``bits`` (8 or 16: the precision quantised
    outputs keep) and what is needed to give the result back in the input's type."""

    def __init__(self, image: Any, name: str = "image") -> None:
        import torch
        from PIL import Image

        from odesr.data import DataError, check_pixels, image_array, read_image

        self.kind, self.mode, self.dtype, self.layout = "numpy", None, None, ""
        if isinstance(image, str | os.PathLike):
            self.kind = "path"
            arr, self.bits = read_image(image)
        elif isinstance(image, Image.Image):
            self.kind, self.mode = "pil", image.mode
            arr, self.bits = image_array(image, name)
        elif isinstance(image, torch.Tensor):
            self.kind, self.dtype = "torch", image.dtype
            if image.dim() not in (3, 4):
                raise ValueError(
                    f"{name}: tensor shape must be (C, H, W) or (N, C, H, W), got "
                    f"{tuple(image.shape)}"
                )
            self.layout = "CHW" if image.dim() == 3 else "NCHW"
            batch = image[None] if image.dim() == 3 else image
            if batch.shape[0] != 1:
                raise ValueError(f"{name}: a batch of {batch.shape[0]} images; give one (N = 1)")
            arr = batch[0].detach().cpu().permute(1, 2, 0).numpy()
            arr, self.bits = self._numeric(arr, name)
        elif isinstance(image, np.ndarray):
            self.dtype = image.dtype
            self.layout = "HW" if image.ndim == 2 else "HWC"
            arr, self.bits = self._numeric(image[..., None] if image.ndim == 2 else image, name)
        else:
            raise TypeError(
                f"{name}: expected a path, a PIL image, a numpy array or a torch tensor, got "
                f"{type(image).__name__}"
            )
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise ValueError(
                f"{name}: shape must be (H, W) or (H, W, C) (tensors (C, H, W)) with C in 1..4, "
                f"got {arr.shape}"
            )
        try:
            check_pixels(name, arr.shape[1], arr.shape[0])
        except DataError as exc:
            raise ValueError(str(exc)) from None
        self.arr = (arr / 255.0 if arr.dtype == np.uint8 else arr).astype(np.float32)

    @staticmethod
    def _numeric(arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
        """uint8 as is, uint16 / 65535, float (finite, in [0, 1]) as is; others refused."""
        if arr.dtype == np.uint8:
            return arr, 8
        if arr.dtype == np.uint16:
            return arr / 65535.0, 16
        if arr.dtype.kind == "f":
            if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
                raise ValueError(
                    f"{name}: float values must be finite and in [0, 1], got "
                    f"[{np.nanmin(arr):g}, {np.nanmax(arr):g}]"
                )
            return arr.astype(np.float64), 16
        raise ValueError(
            f"{name}: dtype {arr.dtype} is not supported; use uint8, uint16 or float in [0, 1]"
        )

    def output(self, rgb: np.ndarray, alpha: np.ndarray | None) -> Any:
        """The result (H, W, 3) float (+ alpha) in the input's type, as the CLI writes it: grey
        stays grey (mean of the model's channels), alpha is kept."""
        from odesr.encoding import to_uint

        grey = self.arr.shape[2] in (1, 2)
        planes = rgb.mean(axis=2, keepdims=True) if grey else rgb
        if alpha is not None:
            planes = np.concatenate([planes, alpha[..., None]], axis=2)
        floating = (
            self.kind in ("numpy", "torch")
            and self.dtype is not None
            and (
                getattr(self.dtype, "is_floating_point", False)
                or (isinstance(self.dtype, np.dtype) and self.dtype.kind == "f")
            )
        )
        if self.kind == "pil" and self.mode == "F":
            from PIL import Image

            return Image.fromarray(np.clip(planes[..., 0], 0, 1).astype(np.float32), mode="F")
        if floating:
            out = np.clip(planes, 0.0, 1.0).astype(np.float32)
        else:
            out = to_uint(planes, self.bits)
        if self.kind == "torch":
            import torch

            tensor = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
            tensor = tensor.to(self.dtype)
            return tensor if self.layout == "CHW" else tensor[None]
        if self.kind == "numpy":
            out = out.astype(self.dtype) if floating else out
            return out[..., 0] if self.layout == "HW" else out
        from PIL import Image

        if out.shape[2] == 1:
            out = out[..., 0]
        return Image.fromarray(out)  # uint16 grey -> I;16, uint8 -> L / LA / RGB / RGBA


def upscale(
    image: Any,
    scale: float,
    model: Any = None,
    *,
    device: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    solver: str | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **deprecated: Any,
):
    """Super-resolve ``image`` by ``scale`` (a real number > 1) with ``model`` (a model, a name,
    a checkpoint path, or None for the bundled model), read exactly as ``odesr upscale`` reads
    files (one reader: :func:`odesr.data.image_array`).

    ``image``: a file path; a PIL image of any mode ``odesr upscale`` reads (L, LA, P, RGB,
    RGBA, CMYK, ..., 16-bit grey ``I;16``/``I`` with values 0..65535, float grey ``F`` in
    [0, 1]); a numpy array (H, W) or (H, W, C), C in 1..4, uint8, uint16 or float in [0, 1];
    or a torch tensor (C, H, W) or (1, C, H, W) of the same dtypes. Returns an image of size
    ``ceil(H * scale) x ceil(W * scale)``: numpy and torch inputs the same type, layout and
    dtype (float results clipped to [0, 1], integer ones rounded); PIL images and paths a PIL
    image (mode ``F`` stays ``F``, 16-bit grey comes back ``I;16``, other modes L, LA, RGB or
    RGBA). Grey stays grey, alpha is enlarged with MATLAB bicubic. Options are the CLI's:
    ``solver`` (``--solver``; ``method=`` is a deprecated alias), ``steps``, ``step_size``,
    ``rtol``, ``atol`` (ODE models), ``tile``, ``overlap``, ``device``.
    """
    from odesr import validate
    from odesr.upscale import auto_tile, output_shape, parse_scale, upscale_array

    named = {"steps": steps, "step_size": step_size, "rtol": rtol, "atol": atol}
    given = _solver_options(solver, {**deprecated, **named})
    tile = _positive_int(tile, "tile", 8)
    overlap = _positive_int(overlap, "overlap", 0)
    device = validate.device(device, "device")  # auto -> cuda or cpu
    src = _Input(image)
    scale = parse_scale(scale, "scale")
    net = _model(model, device)
    settings = _check_solver(net, given)
    size = output_shape(src.arr.shape[0], src.arr.shape[1], scale)
    if tile is not None and net.input_kind != "upscaled":
        raise ValueError(f"model {net.spec.get('name')!r} takes the LR image: tile does not apply")
    if tile is None and net.input_kind == "upscaled":
        tile = auto_tile(net, scale, settings, size)
    res = upscale_array(
        net, src.arr, scale, size, tile=tile, overlap=overlap, solver=settings, device=device
    )
    return src.output(res.rgb, res.alpha)


def evaluate(
    model: Any,
    dataset: str | os.PathLike | Iterable[str | os.PathLike],
    scales: Iterable[float] | str,
    protocol: str = "metasr",
    *,
    data_root: str | os.PathLike | None = None,
    y_rounding: str = "matlab",
    batch_size: int | None = None,
    device: str = "auto",
    limit: int | None = None,
    tile: int | None = None,
    label: str | None = None,
    tf32: bool = False,
    compile: bool = False,
    solver: str | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **deprecated: Any,
):
    """Evaluate ``model`` (a model, a registered name, a checkpoint path, None = bundled) on
    ``dataset`` (a name under the data root -- ``data_root``, else ``$ODESR_DATA``, else
    ``./data`` -- an image folder, or a list of them) at ``scales`` (numbers or
    ``"1.1:4.0:0.1"``). Returns a pandas DataFrame with the rows and columns ``odesr eval``
    writes (one row per model, dataset, image, scale). Options are ``odesr eval``'s, honoured
    as there: ``limit`` (first N images of each dataset), ``batch_size``, ``tile``, ``tf32``,
    ``compile``, ``solver`` (``--solver``; ``method=`` is a deprecated alias), ``steps``,
    ``step_size``, ``rtol``, ``atol``. Every dataset and scale is checked before any image is
    evaluated."""
    import pandas as pd

    from odesr import validate
    from odesr.degrade import PROTOCOLS
    from odesr.evaluate import EVAL_COLUMNS, EvalSettings, check_datasets, eval_table, parse_scales
    from odesr.metrics import Y_ROUNDINGS

    named = {"steps": steps, "step_size": step_size, "rtol": rtol, "atol": atol}
    given = _solver_options(solver, {**deprecated, **named})
    batch_size = _positive_int(batch_size, "batch_size")
    limit = _positive_int(limit, "limit")
    tile = _positive_int(tile, "tile")
    device = validate.device(device, "device")  # auto -> cuda or cpu
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    if y_rounding not in Y_ROUNDINGS:
        raise ValueError(f"y_rounding must be one of {list(Y_ROUNDINGS)}, got {y_rounding!r}")
    if isinstance(scales, str):
        scales = parse_scales(scales)
    scales = [float(s) for s in scales]
    parse_scales(",".join(repr(s) for s in scales))  # the CLI's bounds (finite, > 1, count)
    net = _model(model, device)
    if label is None:
        named = isinstance(model, str) and not model.endswith(".pt") and "/" not in model
        label = model if named else net.spec.get("name", "model")
    settings = EvalSettings(
        protocol=protocol,
        y_rounding=y_rounding,
        batch_size=batch_size,
        device=device,
        solver=_check_solver(net, given),
        tile=tile,
        tf32=bool(tf32),
        compile=bool(compile),
    )
    datasets = [dataset] if isinstance(dataset, str | os.PathLike) else list(dataset)
    root = None if data_root is None else str(data_root)
    names = [str(name) for name in datasets]
    check_datasets(net, names, scales, settings, root, limit)
    rows: list[dict] = []
    for name in names:
        rows += eval_table(net, str(label), name, scales, settings, root, limit=limit)
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)
