"""odesr: super-resolution by solving an initial value problem (Park & Kim), a reference harness.

Python API (``import odesr`` is light: torch is imported on first use)::

    import odesr
    model = odesr.load_model()                     # bundled small vdsr-ODE; or "bicubic", "x.pt"
    model = odesr.load_model("rdn-ode", seed=1)    # published weights by name (index.csv)
    sr = odesr.upscale(image, 2.5, model)  # path, PIL, numpy HxW[xC] or torch CHW -> same type
    sr = odesr.upscale(image, 3, model, solver="euler", steps=8)   # the CLI's option names
    table = odesr.evaluate(model, "Set5", [2, 3, 4])  # DataFrame: the rows `odesr eval` writes

``upscale`` output size: MATLAB's ``ceil(size * scale)`` (as ``odesr upscale``). Datasets are
found under ``data_root=``, else ``$ODESR_DATA``, else ``./data``. Modules: ``odesr.models``
(registry, checkpoints), ``odesr.resize`` (MATLAB imresize), ``odesr.metrics``,
``odesr.evaluate``, ``odesr.train``; command line: ``odesr --help``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["load_model", "upscale", "evaluate", "__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("odesr")
    except PackageNotFoundError:
        return "unknown"


__version__ = _version()


def load_model(name_or_path: Any = None, device: str = "auto", seed: int | None = None) -> Any:
    """A model in eval mode: None = the bundled small vdsr-ODE, ``"bicubic"``, the name of
    published weights (``"rdn-ode"``, with ``seed``, default 0), or a checkpoint path made by
    ``odesr train`` (``odesr.checkpoints.load_model``)."""
    from odesr.api import load_model as _load_model

    return _load_model(name_or_path, device, seed=seed)


def upscale(image: Any, scale: float, model: Any = None, **options: Any) -> Any:
    """Super-resolve ``image`` (a path, a PIL image, a numpy uint8/uint16/float (H, W[, C])
    array or a torch (C, H, W) / (1, C, H, W) tensor, read as ``odesr upscale`` reads files) by
    ``scale`` with ``model`` (a model, name or checkpoint path; None = bundled); returns the
    input's type, of size ``ceil(H * scale) x ceil(W * scale)``. ``options``: the CLI's
    ``solver``, ``steps``, ``step_size``, ``rtol``, ``atol``, ``tile``, ``overlap``, ``device``
    (``method`` is a deprecated alias of ``solver``). See :func:`odesr.api.upscale`."""
    from odesr.api import upscale as _upscale

    return _upscale(image, scale, model, **options)


def evaluate(
    model: Any, dataset: Any, scales: Any, protocol: str = "metasr", **options: Any
) -> Any:
    """The rows ``odesr eval`` writes, as a pandas DataFrame: ``model`` (model, name, path) on
    ``dataset`` (name, folder or list) at ``scales``; ``options``: data_root, y_rounding,
    batch_size, device, limit, tile, label and solver overrides. See :func:`odesr.api.evaluate`."""
    from odesr.api import evaluate as _evaluate

    return _evaluate(model, dataset, scales, protocol, **options)


class _Package(types.ModuleType):
    """``odesr.upscale`` and ``odesr.evaluate`` name the API functions above, although modules of
    the same names exist: importing ``odesr.upscale`` / ``odesr.evaluate`` (the modules) must not
    rebind the package attributes to them. The modules stay in ``sys.modules`` and are reached
    with ``from odesr.upscale import ...`` / ``importlib.import_module``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("upscale", "evaluate") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
