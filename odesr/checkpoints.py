"""Checkpoints: a model saved with its spec, so loading needs no config (LIIF-style), and
:func:`load_model`, which gets a model by name (registered, published weights, the bundled
model) or checkpoint path.

A checkpoint file is ``{"format": CHECKPOINT_FORMAT, "spec": model.spec, "state_dict": ...,
**extra}`` written atomically; :func:`load_checkpoint` rebuilds the model from its spec
(:func:`odesr.models.build`, bounded) and refuses non-finite weights.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from odesr.io import write_bytes_atomic
from odesr.models import MODELS, ModelError, build, is_ode, load_plugins

__all__ = [
    "BUNDLED_MODEL",
    "BUNDLED_NAME",
    "BUNDLED_MODEL_NAME",
    "CHECKPOINT_FORMAT",
    "TRAINING_STATE",
    "load",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "weights_only_extra",
]

CHECKPOINT_FORMAT = "odesr-checkpoint-v1"
BUNDLED_MODEL = Path(__file__).with_name("weights") / "vdsr-ode-cpu.pt"
BUNDLED_NAME = "bundled"  # load_model's name of BUNDLED_MODEL
BUNDLED_MODEL_NAME = "vdsr-ode"  # the published name and seed 0 of the same weights


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Write ``{format, spec, state_dict, extra}`` to ``path`` atomically (tmp + os.replace).

    ``extra`` holds anything else to keep (optimizer/scheduler state dicts, step, config); it must
    be plain Python containers, numbers, strings and tensors (loaded with ``weights_only=True``).
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": model.spec,
        "state_dict": model.state_dict(),
        "extra": extra,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes_atomic(path, buf.getvalue())


TRAINING_STATE = ("optimizer", "scheduler", "rng", "ema")


def weights_only_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``extra`` without what only resuming training needs (:data:`TRAINING_STATE`):
    what is left (step, config, which weights) still identifies the run."""
    return {k: v for k, v in extra.items() if k not in TRAINING_STATE}


def _kind_matches(model: nn.Module, expected: str | Iterable[str]) -> bool:
    wanted = {expected} if isinstance(expected, str) else set(expected)
    return bool(wanted & {model.spec.get("name"), getattr(model, "input_kind", None)})


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected_kind: str | Iterable[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (from its spec) and return ``(model, extra)``.

    Raises ValueError naming the file when it is unreadable, not an odesr checkpoint, its weights
    hold NaN/inf or do not fit its spec, or (``expected_kind`` given: model name(s) or input
    kind) the model is of another kind. The model is returned in eval mode.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable odesr checkpoint ({exc})") from exc
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or not isinstance(payload.get("spec"), dict)
        or not isinstance(payload.get("state_dict"), dict)
    ):
        raise ValueError(f"{path}: not an odesr checkpoint (missing format/spec/state_dict)")
    from odesr.validate import finite_weights

    finite_weights(payload["state_dict"], str(path), ModelError)
    try:
        model = build(payload["spec"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: cannot rebuild model from its spec ({exc})") from exc
    if expected_kind is not None and not _kind_matches(model, expected_kind):
        raise ValueError(
            f"{path}: holds a {model.spec.get('name')!r} model ({model.input_kind} input), "
            f"expected {expected_kind!r}"
        )
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored spec ({exc})") from exc
    model.to(map_location).eval()
    return model, payload.get("extra") or {}


def load(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected_kind: str | Iterable[str] | None = None,
) -> nn.Module:
    """The model stored at ``path`` (see :func:`load_checkpoint`), in eval mode."""
    return load_checkpoint(path, map_location, expected_kind)[0]


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
) -> nn.Module:
    """The one way to get a model for inference, in eval mode on ``device``.

    ``name_or_path``: None or ``"bundled"`` for the bundled small vdsr-ode
    (:data:`BUNDLED_MODEL`); a checkpoint file made by ``odesr train`` (a ``Path``, or text that
    names a file, ends in ``.pt`` or holds a ``/``); the registered name of a parameter-free
    model (``"bicubic"``); or the name of published weights (``"vdsr-ode"``, ``"rdn-ode"``,
    ``"vdsr-ode-hr"``, ...: :mod:`odesr.published`) trained with ``seed`` (default 0). Where no
    published index exists, ``"vdsr-ode"`` seed 0 is the bundled model (the same weights).
    Raises :class:`ModelError` (one line naming the model or file, or what exists).
    """
    from odesr.published import DEFAULT_SEED, PublishedError, find_published

    text = None if name_or_path is None else str(name_or_path)
    if text is None or text == BUNDLED_NAME:
        if seed not in (None, DEFAULT_SEED):
            raise ModelError(f"the bundled model is seed {DEFAULT_SEED}, not seed {seed}")
        return _load_bundled(device)
    path = Path(text)
    if (
        isinstance(name_or_path, os.PathLike)
        or path.is_file()
        or text.endswith(".pt")
        or "/" in text
    ):
        if seed is not None:
            raise ModelError(f"checkpoint {path}: a seed applies to published names only")
        if not path.is_file():
            raise ModelError(f"checkpoint {path}: no such file")
        if path.stat().st_size == 0:
            raise ModelError(f"checkpoint {path}: empty file")
        return load(path, map_location=device)
    try:
        return load(find_published(text, seed).path, map_location=device)
    except PublishedError as exc:
        missing = exc
    if text not in MODELS:
        load_plugins()
    if text in MODELS and not is_ode(text):
        model = build({"name": text})
        if not any(True for _ in model.parameters()):
            if seed is not None:
                raise ModelError(f"model {text!r} has no trained weights: a seed does not apply")
            return model.to(device).eval()
    if missing.reason == "no-index" and text == BUNDLED_MODEL_NAME and seed in (None, DEFAULT_SEED):
        return _load_bundled(device)
    if missing.reason not in ("name", "no-index"):
        raise ModelError(str(missing))
    free = sorted(n for n, c in MODELS.items() if getattr(c, "nfe_per_call", 1) == 0)
    others = f"without weights: {', '.join(free)}; or {BUNDLED_NAME!r}"
    if text in MODELS:  # a registered network: its weights come from a file
        where = f"published: {missing.available}" if missing.available else str(missing)
        raise ModelError(f"model {text!r} needs trained weights: pass --checkpoint PATH; {where}")
    raise ModelError(f"{missing}; {others}")


def _load_bundled(device: str | torch.device) -> nn.Module:
    if not BUNDLED_MODEL.is_file():
        raise ModelError(
            f"bundled model {BUNDLED_MODEL} is missing; pass --checkpoint PATH or --model bicubic"
        )
    return load(BUNDLED_MODEL, map_location=device)
