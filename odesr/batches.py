"""Training batches: patches of the degradation path I(t) cut from preloaded HR images
(:func:`path_patch`), the random batch sampler (:class:`PatchSampler`) and the training images
(:func:`load_training_images`, :func:`holdout_files`). See :mod:`odesr.train` for the protocol.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch

from odesr.degrade import path_pad, path_point, quantize
from odesr.ensemble import forward_transform
from odesr.resize import imresize
from odesr.train_config import SIMULATION_FREE, TrainError

__all__ = [
    "crop_reflect",
    "patch_origin",
    "path_patch",
    "path_derivative",
    "PatchSampler",
    "holdout_files",
    "load_training_images",
]


def _grid_period(t: float, limit: int = 64) -> int | None:
    """p for t = p / q (lowest terms, p <= limit): crops starting at multiples of p share the LR
    grid of the full image. None when t is not such a fraction."""
    frac = Fraction(t).limit_denominator(1000)
    if abs(float(frac) - t) > 1e-9 or frac.numerator > limit:
        return None
    return frac.numerator


def _reflect(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Indices mirrored at the border without repeating the edge (``F.pad(mode='reflect')``)."""
    idx = idx.abs()
    idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    return idx.clamp(0, n - 1)


def crop_reflect(img: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """``img[..., top:top+h, left:left+w]`` with out-of-range rows/cols mirrored."""
    rows = _reflect(torch.arange(top, top + h), img.shape[-2])
    cols = _reflect(torch.arange(left, left + w), img.shape[-1])
    return img.index_select(-2, rows).index_select(-1, cols)


def _to_float(img: torch.Tensor) -> torch.Tensor:
    return img.to(torch.float32) / 255.0 if img.dtype == torch.uint8 else img.to(torch.float32)


def patch_origin(top: int, left: int, t: float, align: bool = True) -> tuple[int, int]:
    """Row and column of a :func:`path_patch` patch's first pixel in the crop whose corner
    anchors the LR grid its I(t) was computed on (what position planes need)."""
    pad = path_pad(t)
    period = _grid_period(t) if align else None
    return pad + (top % period if period else 0), pad + (left % period if period else 0)


def path_patch(
    img: torch.Tensor,
    top: int,
    left: int,
    size: int,
    t: float,
    quantize_lr: bool = True,
    align: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I(t) patch, HR patch)`` at ``[top:top+size, left:left+size]`` of ``img`` (C, H, W).

    Cut with a margin and resized with ``pad=0``; when ``align`` and t = p/q with small p, the crop
    starts on the full image's LR grid so the result equals ``path_point(img, t)[..., patch]``.
    """
    m_top, m_left = patch_origin(top, left, t, align)
    pad = path_pad(t)
    crop = crop_reflect(img, top - m_top, left - m_left, m_top + size + pad, m_left + size + pad)
    crop = _to_float(crop)
    it = path_point(crop, t, pad=0, quantize_lr=quantize_lr)
    hr = crop[..., m_top : m_top + size, m_left : m_left + size]
    return it[..., m_top : m_top + size, m_left : m_left + size], hr


def path_derivative(
    img: torch.Tensor, top: int, left: int, size: int, t: float, h: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I(t), dI/dt)`` on a patch: central difference ``(I(t+h) - I(t-h)) / 2h`` (one-sided
    ``(I(t+h) - I(t)) / h`` when t - h < 1), in float64, no quantisation."""
    pad = path_pad(t + h)
    crop = _to_float(crop_reflect(img, top - pad, left - pad, size + 2 * pad, size + 2 * pad))
    crop = crop.to(torch.float64)
    sl = (..., slice(pad, pad + size), slice(pad, pad + size))
    it = path_point(crop, t, pad=0)[sl]
    up = path_point(crop, t + h, pad=0)[sl]
    if t - h >= 1:
        deriv = (up - path_point(crop, t - h, pad=0)[sl]) / (2 * h)
    else:
        deriv = (up - it) / h
    return it.to(torch.float32), deriv.to(torch.float32)


class PatchSampler:
    """Random training batches from preloaded HR images (stored as uint8 when 8-bit).

    ``scale_gen`` (same seed on every rank) draws the batch scale, ``gen`` (per rank) the rest.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        cfg: dict,
        input_kind: str,
        objective: str,
        seed: int,
        rank: int = 0,
        allowed_scales: Sequence[float] | None = None,
        mixed: bool = False,
    ) -> None:
        if mixed and input_kind != "upscaled":
            raise TrainError("mixed_scales needs a model taking I(t0) (not an LR-input model)")
        self.mixed = mixed
        self.images = list(images)
        self.cfg = cfg
        self.input_kind = input_kind
        self.objective = objective
        self.patch = int(cfg["patch_size"])
        self.batch = int(cfg["batch_size"])
        scales = [float(s) for s in cfg["scales"]]
        if allowed_scales is not None:
            allowed = {round(float(s), 6) for s in allowed_scales}
            scales = [s for s in scales if round(s, 6) in allowed]
            if not scales:
                raise TrainError(
                    f"none of the config scales {cfg['scales']} is one the model supports "
                    f"({sorted(allowed)})"
                )
        self.scales = scales
        self.gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * rank + 1)
        self.scale_gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
        small = [i for i, im in enumerate(self.images) if min(im.shape[-2:]) < self.patch]
        if len(small) == len(self.images):
            raise TrainError(f"every training image is smaller than patch_size {self.patch}")
        self.usable = [i for i in range(len(self.images)) if i not in set(small)]

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "scale_gen": self.scale_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.scale_gen.set_state(state["scale_gen"])

    def _randint(self, n: int, gen: torch.Generator | None = None) -> int:
        return int(torch.randint(n, (1,), generator=gen or self.gen))

    def _draw_scale(self) -> float:
        if self.input_kind == "upscaled" and self.objective in SIMULATION_FREE:
            pcfg = self.cfg["path"]
            if pcfg.get("t_sampling", "uniform") == "scales":
                return self.scales[self._randint(len(self.scales), self.scale_gen)]
            t_max = float(pcfg.get("t_max") or max(self.scales))
            u = float(torch.rand((), generator=self.scale_gen, dtype=torch.float64))
            return 1.0 + (t_max - 1.0) * u
        return self.scales[self._randint(len(self.scales), self.scale_gen)]

    def _draw_view(self, size: int) -> tuple[int, int, bool, int, int]:
        """``(image index, rot, flip, top, left)`` of one ``size`` crop of an augmented image."""
        index = self.usable[self._randint(len(self.usable))]
        rot, flip = self._randint(4), bool(self._randint(2))
        height, width = self.images[index].shape[-2:]
        if rot % 2:
            height, width = width, height
        top = self._randint(height - size + 1)
        left = self._randint(width - size + 1)
        return index, rot, flip, top, left

    def plan(self) -> dict:
        """The random draws of the next batch (cheap): ``{"mixed", "samples"}`` with one
        ``(scale, image index, rot, flip, top, left)`` per sample. :meth:`make` turns a plan into
        the batch, a pure function of the images and the plan, so batches can be made ahead in
        worker processes (:mod:`odesr.prefetch`) and come out the same."""
        if self.mixed:
            samples = []
            for _ in range(self.batch):
                t = self._draw_scale()  # the scale first, then the view, per sample
                samples.append((t, *self._draw_view(self.patch)))
            return {"mixed": True, "samples": samples}
        t = self._draw_scale()
        return {
            "mixed": False,
            "samples": [(t, *self._draw_view(self.patch)) for _ in range(self.batch)],
        }

    def make(self, plan: dict) -> dict:
        """The batch of a :meth:`plan` (see :meth:`next`)."""
        if plan["mixed"]:
            parts = [self._make_samples([sample]) for sample in plan["samples"]]
            return {
                "scale": torch.tensor([b["scale"] for b in parts], dtype=torch.float64),
                "x": torch.cat([b["x"] for b in parts]),
                "target": torch.cat([b["target"] for b in parts]),
                "origin": torch.cat([b["origin"] for b in parts]),
            }
        return self._make_samples(plan["samples"])

    def next(self) -> dict:
        """One batch: ``{"scale", "x", "target"}`` (+ ``"size"`` for LR models). ``scale`` is a
        float, or a (B,) float64 tensor (one scale per sample) when ``mixed``."""
        return self.make(self.plan())

    def _make_samples(self, samples: Sequence[tuple]) -> dict:
        """One batch of samples that share a scale."""
        t = samples[0][0]
        views = [
            (forward_transform(self.images[index], rot, flip), top, left)
            for _, index, rot, flip, top, left in samples
        ]
        xs, ys, origins = [], [], []
        if self.input_kind == "upscaled":
            for img, top, left in views:
                origins.append(patch_origin(top, left, t, bool(self.cfg["align_grid"])))
                if self.objective == "path":
                    x, y = path_derivative(
                        img, top, left, self.patch, t, float(self.cfg["path"]["h"])
                    )
                else:
                    x, y = path_patch(
                        img,
                        top,
                        left,
                        self.patch,
                        t,
                        quantize_lr=True,
                        align=bool(self.cfg["align_grid"]),
                    )
                xs.append(x)
                ys.append(y)
            origin = torch.tensor(origins, dtype=torch.int64)
            return {"scale": t, "x": torch.stack(xs), "target": torch.stack(ys), "origin": origin}
        n = self.patch
        lr_n = int(math.floor(n / t + 1e-9))
        sr_n = int(math.floor(lr_n * t + 1e-9))
        if lr_n < 2:
            raise TrainError(f"patch_size {n} is too small for scale {t}")
        hr = torch.stack(
            [_to_float(img[..., top : top + n, left : left + n]) for img, top, left in views]
        )
        lr = quantize(imresize(hr, scale=1.0 / t, size=(lr_n, lr_n)))
        return {"scale": t, "x": lr, "target": hr[..., :sr_n, :sr_n], "size": (sr_n, sr_n)}


def holdout_files(cfg: dict, data_root: str | None) -> list[Path]:
    """The last ``holdout.n_images`` files (sorted order) of ``holdout.dataset``: kept out of
    training and used for validation / weight selection (never a test set)."""
    from odesr.data import DataError, list_images

    hcfg = cfg.get("holdout") or {}
    n = int(hcfg.get("n_images") or 0)
    if not hcfg.get("dataset") or n < 1:
        return []
    try:
        files = list_images(hcfg["dataset"], data_root)
    except DataError as exc:
        raise TrainError(str(exc)) from None
    if n >= len(files):
        raise TrainError(f"holdout.n_images {n} leaves no {hcfg['dataset']} image to train on")
    return [Path(f) for f in files[-n:]]


def load_training_images(
    names: Sequence[str], data_root: str | None, exclude: Sequence[str | os.PathLike] = ()
) -> list[torch.Tensor]:
    """All images of the datasets/folders ``names`` but ``exclude`` (paths) as (3, H, W) uint8
    (or float32 if 16-bit)."""
    from odesr.data import DataError, list_images, load_image

    skip = {Path(f).resolve() for f in exclude}
    out: list[torch.Tensor] = []
    for name in names:
        try:
            files = list_images(name, data_root)
        except DataError as exc:
            raise TrainError(str(exc)) from None
        for f in files:
            if Path(f).resolve() in skip:
                continue
            img = load_image(f)
            if img.bit_depth == 8:
                out.append(torch.round(img.rgb * 255.0).to(torch.uint8))
            else:
                out.append(img.rgb)
    return out
