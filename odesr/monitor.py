"""Monitoring a run: the JSONL metrics log (:class:`MetricsLog`; TensorBoard is teed in by
:mod:`odesr.tensorboard_log`), validation PSNR on held-out images (:func:`validate`) and the
progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from odesr.batches import holdout_files
from odesr.train_config import TrainError

__all__ = [
    "MetricsLog",
    "validate",
    "validation_scales",
    "load_val_images",
    "log_metrics",
    "scale_text",
    "progress_bar",
]


class MetricsLog:
    """Append-only JSONL metrics log; records past ``keep_until`` are dropped on resume."""

    def __init__(self, path: Path, enabled: bool, keep_until: int | None) -> None:
        self.path, self.enabled = path, enabled
        if enabled and keep_until is not None and path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = []
            for line in lines:
                try:
                    if json.loads(line).get("step", 0) <= keep_until:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
            path.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
        elif enabled and keep_until is None and path.exists():
            path.unlink()

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def validation_scales(scales: list, supported: list | tuple | None) -> list[float]:
    """The scales a validation pass scores: ``scales`` (the config's ``val.scales``) that the
    model supports, all of its ``supported`` scales when none is, every one when ``supported``
    is None (an any-scale model)."""
    wanted = [float(s) for s in scales or []]
    if supported is None:
        return wanted
    return [s for s in wanted if s in supported] or [float(s) for s in supported]


def validate(model: nn.Module, images: list, cfg: dict, device: torch.device) -> dict:
    """``{"scale": PSNR}`` of ``model`` on the validation images (``val`` settings of ``cfg``)."""
    from odesr.evaluate import EvalSettings, evaluate_images, summarize

    vcfg = cfg["val"]
    scales = validation_scales(vcfg["scales"], model.supported_scales)
    opts = dict(vcfg.get("solver") or cfg.get("train_solver") or {}) if model.is_ode else None
    settings = EvalSettings(device=str(device), solver=opts)
    was_training = model.training
    model.eval()
    try:
        rows = evaluate_images(model, images, scales, settings)
    finally:
        model.train(was_training)
    return {f"{s:g}": p for s, p, _, _ in summarize(rows)}


def load_val_images(cfg: dict, data_root: str | None) -> list:
    """The validation images of ``cfg["val"]`` (none when validation is off)."""
    from odesr.data import LoadedImage, list_images, load_image

    vcfg = cfg["val"]
    if not vcfg.get("every") or not vcfg.get("dataset"):
        return []
    if vcfg["dataset"] == "holdout":
        files = holdout_files(cfg, data_root)
        if not files:
            raise TrainError("val.dataset 'holdout' needs holdout: {dataset: ..., n_images: N}")
    else:
        files = list_images(vcfg["dataset"], data_root)
    files = files[: int(vcfg.get("n_images") or 1)]
    images = []
    for f in files:
        img = load_image(f)
        ms = vcfg.get("max_size")
        if ms:
            h, w = img.rgb.shape[-2:]
            top, left = max(0, (h - ms) // 2), max(0, (w - ms) // 2)
            rgb = img.rgb[:, top : top + ms, left : left + ms].contiguous()
            img = LoadedImage(img.path, rgb, img.channels, img.bit_depth)
        images.append(img)
    return images


def scale_text(scale: float | torch.Tensor) -> str:
    return "mixed" if torch.is_tensor(scale) else f"{scale:.4g}"


def log_metrics(log: MetricsLog, bar, record: dict) -> None:
    """The one place training and validation metrics are reported (JSONL log, progress bar)."""
    log.write(**record)
    if bar is not None and "val_psnr" in record:
        bar.write(
            f"step {record['step']}: val PSNR "
            + ", ".join(f"x{k} {p:.2f}" for k, p in record["val_psnr"].items())
        )


def progress_bar(cfg: dict, step: int, enabled: bool, label: str = ""):
    """A tqdm bar over the run's steps from ``step`` (None when not ``enabled``); ``label``
    follows the model name in its description."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=int(cfg["max_steps"]),
        initial=step,
        desc=f"train {cfg['model']['name']}{label}",
        unit="step",
        dynamic_ncols=True,
    )
