"""Evaluate a super-resolution model on a dataset over a grid of scales.

One row per (model, dataset, image, scale). The protocol (``odesr.degrade.PROTOCOLS``) fixes the HR
crop, the LR size and the size at which SR is compared; PSNR/SSIM follow ``odesr.metrics``
(Y channel, shave ceil(scale), SR quantised to 8 bits; grey images on their own channel).
Images of equal size are evaluated as one batch per scale.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from odesr.data import LoadedImage, list_images, load_image
from odesr.degrade import DEFAULT_PROTOCOL, make_case, protocol_case, quantize
from odesr.metrics import score
from odesr.ode import SolverSettings
from odesr.validate import tiles_affordable

MAX_SCALES = 1000  # scales per evaluation (a 0.001 grid over 1..2 is 1000)

__all__ = [
    "MAX_SCALES",
    "parse_scales",
    "EvalSettings",
    "evaluate_images",
    "evaluate_dataset",
    "summarize",
]


def parse_scales(text: str) -> list[float]:
    """``"1.1:4.0:0.1"`` (inclusive stop), ``"2,3,4"`` or a mix ``"1.5,2:3:0.5"`` -> scales.

    Values are rounded to 6 decimals so 1.1 + 0.1 * k lands on the decimal grid; repeats are
    dropped (first occurrence kept, order kept). At most :data:`MAX_SCALES` scales, each finite
    and > 1 (a range is sized before it is expanded, so ``2:1e12:1`` is refused at once).
    """
    scales: list[float] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                bits = part.split(":")
                if len(bits) != 3:
                    raise ValueError
                start, stop, step = (float(b) for b in bits)
                if not (all(map(math.isfinite, (start, stop, step))) and step > 0):
                    raise ValueError
                if stop < start:
                    raise ValueError
                n = math.floor((stop - start) / step + 1e-6)
                if len(scales) + n + 1 > MAX_SCALES:
                    raise ValueError(
                        f"bad --scales {part!r}: {n + 1} scales; at most {MAX_SCALES} are allowed"
                    )
                scales.extend(round(start + k * step, 6) for k in range(n + 1))
            else:
                scales.append(round(float(part), 6))
        except ValueError as exc:
            if str(exc).startswith("bad --scales"):
                raise
            raise ValueError(
                f"bad --scales {part!r}: use start:stop:step (inclusive) or a comma list"
            ) from None
        if len(scales) > MAX_SCALES:
            raise ValueError(f"bad --scales: more than {MAX_SCALES} scales")
    if not scales:
        raise ValueError(f"bad --scales {text!r}: no scale given")
    for s in scales:
        if not (math.isfinite(s) and s > 1):
            raise ValueError(f"bad scale {s!r}: scales must be finite and > 1")
    return list(dict.fromkeys(scales))


@dataclass
class EvalSettings:
    """What fixes the numbers: protocol, luma rounding, the solver of ODE models (None: the
    model's own; a dict overrides some of its settings) and the tile size (None: whole images;
    tiles use the exact overlap, so they do not change the numbers)."""

    protocol: str = DEFAULT_PROTOCOL
    y_rounding: str = "matlab"
    batch_size: int = 16
    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # of the resize and the model; metrics run in float64
    solver: SolverSettings | dict | None = None
    tile: int | None = None


def _group(images: Sequence[LoadedImage], batch_size: int) -> list[list[LoadedImage]]:
    by_size: dict[tuple, list[LoadedImage]] = defaultdict(list)
    for img in images:
        by_size[tuple(img.rgb.shape)].append(img)
    groups = []
    for members in by_size.values():
        for i in range(0, len(members), batch_size):
            groups.append(members[i : i + batch_size])
    return groups


def _score_group(
    sr: torch.Tensor, hr: torch.Tensor, members: Sequence[LoadedImage], scale: float, settings
) -> tuple[list[float], list[float]]:
    """PSNR/SSIM per member: RGB files on Y, grey files on their own channel."""
    grey = torch.tensor([m.channels == 1 for m in members])
    p = torch.empty(len(members), dtype=torch.float64)
    s = torch.empty(len(members), dtype=torch.float64)
    for mask, on_y in ((~grey, True), (grey, False)):
        if not mask.any():
            continue
        idx = mask.nonzero().flatten()
        a, b = sr[idx], hr[idx]
        if not on_y:  # the networks see grey replicated to RGB: score one channel
            a, b = quantize(a).mean(dim=1, keepdim=True), b[:, :1]
        pv, sv = score(a, b, scale, test_y_channel=on_y, y_rounding=settings.y_rounding)
        p[idx], s[idx] = pv.cpu(), sv.cpu()
    return p.tolist(), s.tolist()


def _tile_overlap(model: torch.nn.Module, scale: float, settings: EvalSettings) -> int | None:
    """The overlap ``super_resolve`` puts around each tile (None: no tiles)."""
    if settings.tile is None or getattr(model, "input_kind", None) != "upscaled":
        return None
    from odesr.models import DEFAULT_OVERLAP

    exact = model.exact_overlap(scale, model.solver_settings(settings.solver or None))
    return DEFAULT_OVERLAP if exact is None else exact


def evaluate_images(
    model: torch.nn.Module,
    images: Sequence[LoadedImage],
    scales: Iterable[float],
    settings: EvalSettings | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """Rows ``{image, scale, psnr, ssim, seconds, nfe, protocol}`` for every image and scale."""
    settings = settings or EvalSettings()
    device = torch.device(settings.device)
    groups = _group(images, settings.batch_size)
    scales = list(scales)
    for scale in scales:  # fail before any work, with the file's name: too small, tiles too costly
        overlap = _tile_overlap(model, scale, settings)
        for m in images:
            try:
                case = protocol_case(m.rgb.shape[-2], m.rgb.shape[-1], scale, settings.protocol)
                if overlap is not None:
                    tiles_affordable(case.sr_size, settings.tile, overlap, "--tile")
            except ValueError as exc:
                raise ValueError(f"{m.path}: {exc}") from None
    rows: list[dict] = []
    for scale in scales:
        for members in groups:
            hr64 = torch.stack([m.rgb for m in members]).to(device, torch.float64)
            _, lr, case = make_case(hr64.to(settings.dtype), scale, settings.protocol)
            hr_ref = hr64[..., : case.sr_size[0], : case.sr_size[1]]
            start = time.perf_counter()
            with torch.no_grad():
                result = model.super_resolve(
                    lr, scale, case.sr_size, solver=settings.solver or None, tile=settings.tile
                )
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / len(members)
            if not bool(torch.isfinite(result.image).all()):
                from odesr.models import ModelError

                raise ModelError(
                    f"{members[0].path}: the model output holds NaN/inf at scale {scale:g}; "
                    "no results written"
                )
            sr = result.image.to(torch.float64)
            p, s = _score_group(sr, hr_ref, members, scale, settings)
            for m, pv, sv in zip(members, p, s, strict=True):
                rows.append(
                    dict(
                        image=m.name,
                        scale=scale,
                        psnr=pv,
                        ssim=sv,
                        seconds=seconds,
                        nfe=int(result.nfe),
                        protocol=settings.protocol,
                    )
                )
            if on_batch is not None:
                on_batch(len(members))
    return rows


def evaluate_dataset(
    model: torch.nn.Module,
    dataset: str,
    scales: Sequence[float],
    data_root: str | None = None,
    settings: EvalSettings | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> list[dict]:
    """Load ``dataset`` (name or folder) and evaluate ``model`` on it at every scale."""
    files = list_images(dataset, data_root)
    if limit is not None:
        files = files[:limit]
    images = [load_image(f) for f in files]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images) * len(scales), desc=f"{dataset}", unit="img", leave=False)
    try:
        rows = evaluate_images(model, images, scales, settings, bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    name = str(dataset)
    for row in rows:
        row["dataset"] = name
    return rows


def summarize(rows: Sequence[dict]) -> list[tuple[float, float, float, int]]:
    """Per-scale means ``(scale, psnr, ssim, n)`` in scale order."""
    acc: dict[float, list] = defaultdict(list)
    for r in rows:
        acc[r["scale"]].append((r["psnr"], r["ssim"]))
    out = []
    for scale in sorted(acc):
        vals = acc[scale]
        out.append(
            (
                scale,
                sum(v[0] for v in vals) / len(vals),
                sum(v[1] for v in vals) / len(vals),
                len(vals),
            )
        )
    return out
