"""TensorBoard mirror of a training run's ``metrics.jsonl`` (when ``tensorboard`` is installed).

:func:`tee` wraps the run's metrics log: every record still goes to ``metrics.jsonl`` and is also
written as scalars to TensorBoard event files in the run folder (``tensorboard --logdir runs/``
then shows one run per folder):

* ``train/loss``, ``train/lr``, ``train/steps_per_s``, ``train/scale`` from training records;
* ``val/psnr_x<scale>`` (dB, Y channel, the validation protocol of :mod:`odesr.train`) from
  validation records, plus ``val/<image>`` images for the first :data:`N_IMAGES` validation images
  at the largest validation scale: bicubic I(t0) | SR | HR side by side, values in [0, 1].

A resumed run purges events past its checkpoint's step, as ``metrics.jsonl`` drops its records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["tee", "TensorBoardTee", "N_IMAGES", "TRAIN_SCALARS"]

N_IMAGES = 2
TRAIN_SCALARS = ("loss", "lr", "steps_per_s", "scale")


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class TensorBoardTee:
    """Forwards ``write(**record)`` to the wrapped log and to a TensorBoard writer."""

    def __init__(self, log: Any, writer: Any, val: dict | None = None) -> None:
        self.log, self.writer, self.val = log, writer, val or {}

    def write(self, **record: Any) -> None:
        self.log.write(**record)
        step = record.get("step")
        if step is None:
            return
        if record.get("done"):
            self.writer.close()
            return
        for key in TRAIN_SCALARS:
            if key in record:
                self.writer.add_scalar(f"train/{key}", float(record[key]), step)
        if "val_psnr" in record:
            for scale, psnr in record["val_psnr"].items():
                self.writer.add_scalar(f"val/psnr_x{scale}", float(psnr), step)
            scale = max(float(k) for k in record["val_psnr"])  # the scales actually validated
            for name, panel in self._panels(scale):
                self.writer.add_image(f"val/{name}", panel, step, dataformats="CHW")
        self.writer.flush()

    def _panels(self, scale: float) -> list:
        """(name, bicubic | SR | HR) of the first validation images at ``scale``."""
        import torch

        from odesr.degrade import make_case, upscale

        model, images = self.val.get("model"), self.val.get("images") or []
        if model is None or not images:
            return []
        was_training = model.training
        model.eval()
        panels = []
        try:
            for img in images[:N_IMAGES]:
                hr = img.rgb.unsqueeze(0).to(self.val["device"])
                hr_ref, lr, case = make_case(hr, scale)
                with torch.no_grad():
                    sr = model.super_resolve(lr, scale, case.sr_size, solver=self.val["solver"])
                bicubic = upscale(lr, scale, case.sr_size)
                row = torch.cat([bicubic, sr.image, hr_ref], dim=-1)[0]
                panels.append((f"{img.name}_x{scale:g}", row.clamp(0, 1).cpu()))
        finally:
            model.train(was_training)
        return panels


def tee(
    log: Any,
    run_dir: str | Path,
    enabled: bool,
    resume_step: int | None = None,
    *,
    model: Any = None,
    val_images: list | None = None,
    cfg: dict | None = None,
    device: Any = "cpu",
) -> Any:
    """``log`` mirrored to TensorBoard in ``run_dir`` (``log`` itself when disabled, on a non-main
    rank, or when tensorboard is not installed). ``model``/``val_images``/``cfg`` give the images;
    their solver is the validation one (``val.solver``, else ``train_solver`` for ODE models)."""
    writer_cls = _summary_writer() if enabled else None
    if writer_cls is None:
        return log
    # purge_step: events at steps >= it (written after the checkpoint we resume from) are dropped
    purge = None if resume_step is None else resume_step + 1
    writer = writer_cls(log_dir=str(run_dir), purge_step=purge)
    val = None
    if model is not None and val_images and cfg is not None:
        vcfg = cfg.get("val") or {}
        # the validation solver, as odesr.monitor.validate picks it
        opts = dict(vcfg.get("solver") or cfg.get("train_solver") or {}) if model.is_ode else None
        val = dict(
            model=model,
            images=val_images,
            device=device,
            solver=opts,
        )
    return TensorBoardTee(log, writer, val)
