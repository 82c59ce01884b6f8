"""Evaluate a super-resolution model on a dataset over a grid of scales.

One row per (model, dataset, image, scale). The protocol (``odesr.degrade.PROTOCOLS``) fixes the HR
crop, the LR size and the size at which SR is compared; PSNR/SSIM follow ``odesr.metrics``
(Y channel, shave ceil(scale), SR quantised to 8 bits; grey images on their own channel).
Images of equal size and channel count are evaluated as one batch per scale.

Each batch's HR stack and the HR side of its metrics (luma, local means) are made on the device
once and reused across scales and calls (in this process only;
:func:`odesr.metrics.prepare_reference`), the metrics in ``EvalSettings.metric_dtype`` (float32 by
default: the fast path, tested against float64); a batch is scored in one call and copied to the
host once, so a GPU evaluation is not one kernel launch and sync per image.
Bicubic runs image by image (every scale of an image while it is hot) and, on the CPU, spread
over worker processes (``EvalSettings.workers``).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import platform
import signal
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from odesr.arguments import CPU_EVAL_BATCH_SIZE, EVAL_BATCH_SIZE
from odesr.data import LoadedImage, inspect_images, list_images, load_images
from odesr.degrade import (
    DEFAULT_PROTOCOL,
    make_case,
    protocol_case,
    quantize,
    upscale,
)
from odesr.metrics import Reference, check_scorable, prepare_reference, score
from odesr.ode import NO_SOLVER_COLUMNS, SolverSettings
from odesr.validate import device as validate_device
from odesr.validate import tiles_affordable

MAX_SCALES = 1000  # scales per evaluation (a 0.001 grid over 1..2 is 1000)

__all__ = [
    "MAX_SCALES",
    "EVAL_COLUMNS",
    "gpu_float32",
    "device_label",
    "parse_scales",
    "EvalSettings",
    "check_sizes",
    "check_datasets",
    "dataset_files",
    "evaluate_images",
    "evaluate_dataset",
    "ImageSink",
    "png_writer",
    "eval_table",
    "summarize",
]

# the columns of ``odesr eval``'s CSV and of ``odesr.evaluate(...)``'s DataFrame
EVAL_COLUMNS = [
    "model",
    "dataset",
    "image",
    "scale",
    "psnr",
    "ssim",
    "seconds",
    "nfe",
    "protocol",
    "y_rounding",
    "solver",
    "steps",
    "step_size",
    "rtol",
    "atol",
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
                span = (stop - start) / step + 1e-6
                if not math.isfinite(span) or span > MAX_SCALES:  # sized before floor()
                    raise ValueError(
                        f"bad --scales {part!r}: more than {MAX_SCALES} scales; at most "
                        f"{MAX_SCALES} are allowed"
                    )
                n = math.floor(span)
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
    batch_size: int | None = None  # None: CPU_EVAL_BATCH_SIZE on the CPU, else EVAL_BATCH_SIZE
    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # of the resize and the model
    solver: SolverSettings | dict | None = None
    tile: int | None = None
    metric_dtype: torch.dtype = torch.float32  # float64: the reference path (slower)
    workers: int | None = None  # bicubic on the CPU: processes (None: one per core)
    tf32: bool = False  # CUDA convolutions/matmuls in TF32 (faster, not exact): gpu_float32
    compile: bool = False  # the backbone through torch.compile: odesr.models.compiled_backbone

    def __post_init__(self) -> None:
        if self.batch_size is None:
            device = validate_device("auto") if str(self.device) == "auto" else str(self.device)
            cpu = torch.device(device).type == "cpu"
            self.batch_size = CPU_EVAL_BATCH_SIZE if cpu else EVAL_BATCH_SIZE


@contextlib.contextmanager
def gpu_float32(tf32: bool = False) -> Iterator[None]:
    """CUDA convolutions and matmuls in full float32 for the block (``tf32=False``, what every
    evaluation uses unless asked) or in TF32 (10-bit mantissa products: faster on Ampere and
    later GPUs, about 1e-3 relative error per layer). PyTorch's own defaults are mixed (cuDNN
    convolutions TF32, matmuls float32), so a GPU evaluation would otherwise not be float32.
    No effect on the CPU."""
    prev = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


def device_label(device: str | torch.device) -> str:
    """What a results row or a checkpoint names its machine by: ``cuda:<GPU name>``, or
    ``cpu:<arch>x<torch threads>`` (the thread count changes float reduction order)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()}x{torch.get_num_threads()}"


ImageSink = Callable[[LoadedImage, float, torch.Tensor], None]  # (image, scale, SR (1, 3, h, w))


def png_writer(folder: str | os.PathLike) -> ImageSink:
    """A sink writing each SR image as an 8-bit PNG ``<folder>/<image>_x<scale>.png``, the
    image the metrics score: rounded to the 8-bit grid (:func:`odesr.degrade.quantize`), RGB,
    or grey (the channel mean) for grey files. Written atomically; the folder is made."""
    import io

    import numpy as np
    from PIL import Image

    from odesr.io import write_bytes_atomic

    root = Path(folder)

    def write(image: LoadedImage, scale: float, sr: torch.Tensor) -> None:
        q = quantize(sr[0].detach().float().cpu())
        if image.channels == 1:
            q = q.mean(dim=0, keepdim=True)
        arr = (q * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else np.ascontiguousarray(arr)).save(
            buf, format="PNG"
        )
        root.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(root / f"{image.name}_x{scale:g}.png", buf.getvalue())

    return write


def _group(images: Sequence[LoadedImage], batch_size: int) -> list[list[LoadedImage]]:
    """Batches of at most ``batch_size`` images of equal size and channel count, in order."""
    by_size: dict[tuple, list[LoadedImage]] = defaultdict(list)
    for img in images:
        by_size[(tuple(img.rgb.shape), img.channels)].append(img)
    groups = []
    for members in by_size.values():
        for i in range(0, len(members), batch_size):
            groups.append(members[i : i + batch_size])
    return groups


@dataclass(frozen=True)
class _Prepared:
    """A batch of images of equal size on the device: ``hr`` (B, 3, H, W) in the model's dtype
    and ``reference``, the metrics' HR side (luma, or the grey channel) of the whole frames."""

    hr: torch.Tensor
    reference: Reference

    @property
    def nbytes(self) -> int:
        return self.hr.numel() * self.hr.element_size() + self.reference.nbytes


# (id of each image tensor) -> (weak references to them, settings key, _Prepared); in-process.
_PREPARED: dict[tuple[int, ...], tuple[tuple[weakref.ref, ...], tuple, _Prepared]] = {}
_PREPARED_BYTES = 1 << 30  # drop the oldest prepared batches beyond this


def _prepared(members: Sequence[LoadedImage], settings: EvalSettings) -> _Prepared:
    """The batch's HR stack and metrics reference on the device, made once and reused across
    scales and calls while the image tensors live (on a GPU: no copy, luma or SSIM statistics
    of the HR side per scale); image tensors are not to be changed in place meanwhile.
    ``members`` share size and channel count (:func:`_group`). The newest batch is kept
    whatever its size; older ones are dropped beyond :data:`_PREPARED_BYTES` in all."""
    key = (
        settings.y_rounding,
        settings.metric_dtype,
        str(settings.device),
        settings.dtype,
        members[0].channels,
    )
    ids = tuple(id(m.rgb) for m in members)
    hit = _PREPARED.get(ids)
    if (
        hit is not None
        and hit[1] == key
        and all(ref() is m.rgb for ref, m in zip(hit[0], members, strict=True))
    ):
        return hit[2]
    frames = torch.stack([m.rgb for m in members]).to(settings.device)
    grey = members[0].channels == 1
    reference = prepare_reference(
        frames[:, :1] if grey else frames, not grey, settings.y_rounding, settings.metric_dtype
    )
    prepared = _Prepared(frames.to(settings.dtype), reference)
    _PREPARED[ids] = (tuple(weakref.ref(m.rgb) for m in members), key, prepared)
    total = 0
    for k in reversed(list(_PREPARED)):  # newest first; evict stale and the oldest
        entry = _PREPARED[k]
        total += entry[2].nbytes
        stale = any(ref() is None for ref in entry[0])
        if k != ids and (stale or total > _PREPARED_BYTES):
            del _PREPARED[k]
    return prepared


def _score_batch(
    sr: torch.Tensor, grey: bool, scale: float, reference: Reference
) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of each SR image of a batch (B, 3, h, w), scored together on the device
    and copied to the host once: RGB files on Y, grey files on their own channel."""
    if grey:  # the networks see grey replicated to RGB: score one channel
        sr = quantize(sr).mean(dim=1, keepdim=True)
    p, s = score(sr, None, scale, reference=reference)
    return [tuple(pair) for pair in torch.stack([p, s], dim=1).tolist()]


def _row(image: LoadedImage, scale: float, p: float, s: float, seconds: float, nfe: int, settings):
    return dict(
        image=image.name,
        scale=scale,
        psnr=p,
        ssim=s,
        seconds=seconds,
        nfe=nfe,
        protocol=settings.protocol,
    )


def _tile_overlap(model: torch.nn.Module, scale: float, settings: EvalSettings) -> int | None:
    """The overlap ``super_resolve`` puts around each tile (None: no tiles)."""
    if settings.tile is None or getattr(model, "input_kind", None) != "upscaled":
        return None
    from odesr.models import DEFAULT_OVERLAP

    exact = model.exact_overlap(scale, model.solver_settings(settings.solver or None))
    return DEFAULT_OVERLAP if exact is None else exact


def check_sizes(
    model: torch.nn.Module,
    sizes: Sequence[tuple[object, tuple[int, int]]],
    scales: Sequence[float],
    settings: EvalSettings,
) -> None:
    """Refuse, before any work and naming the file, an image (``(name, (H, W))``) too small for
    a scale (LR under 2 px, or too small to score SSIM after the border shave) or whose tiles
    would cost too much."""
    if settings.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {settings.batch_size}")
    for scale in scales:
        overlap = _tile_overlap(model, scale, settings)
        for name, (h, w) in sizes:
            try:
                case = protocol_case(h, w, scale, settings.protocol)
                check_scorable(case.sr_size, scale)
                if overlap is not None:
                    tiles_affordable(case.sr_size, settings.tile, overlap, "--tile")
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None


def dataset_files(
    dataset: str, data_root: str | None = None, limit: int | None = None
) -> list[Path]:
    """The first ``limit`` (None: all) image files of ``dataset``, their headers checked
    (:func:`odesr.data.inspect_images`) but nothing decoded."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    files = list_images(dataset, data_root)
    files = files if limit is None else files[:limit]
    inspect_images(files)
    return files


def check_datasets(
    model: torch.nn.Module,
    datasets: Sequence[str],
    scales: Sequence[float],
    settings: EvalSettings,
    data_root: str | None = None,
    limit: int | None = None,
) -> None:
    """Every check :func:`eval_table` would make, for every dataset, from the image headers
    only (names, sizes, modes, pixel limit, scales against sizes): run before any dataset is
    evaluated, so a bad image in the last one costs no work."""
    for dataset in datasets:
        headers = inspect_images(dataset_files(dataset, data_root, limit))
        check_sizes(model, [(h.path, h.size) for h in headers], scales, settings)


def evaluate_images(
    model: torch.nn.Module,
    images: Sequence[LoadedImage],
    scales: Iterable[float],
    settings: EvalSettings | None = None,
    on_batch: Callable[[int], None] | None = None,
    save: ImageSink | None = None,
) -> list[dict]:
    """Rows ``{image, scale, psnr, ssim, seconds, nfe, protocol}`` for every image and scale
    (scale-major; within a scale, images of equal size and channel count together, in the
    given order).
    ``save`` receives every SR image (e.g. :func:`png_writer`)."""
    settings = settings or EvalSettings()
    groups = _group(images, settings.batch_size)
    scales = list(scales)
    check_sizes(model, [(m.path, tuple(m.rgb.shape[-2:])) for m in images], scales, settings)
    if getattr(model, "spec", {}).get("name") == "bicubic":
        return _evaluate_bicubic(images, scales, settings, on_batch, save)
    from odesr.models import compiled_backbone

    rows: list[dict] = []
    with gpu_float32(settings.tf32), compiled_backbone(model, settings.compile):
        for scale in scales:
            rows += _model_rows(model, groups, scale, settings, on_batch, save)
    return rows


def _model_rows(
    model: torch.nn.Module,
    groups: list[list[LoadedImage]],
    scale: float,
    settings: EvalSettings,
    on_batch: Callable[[int], None] | None,
    save: ImageSink | None = None,
) -> list[dict]:
    """Rows of every image at one scale (``evaluate_images``, inside ``gpu_float32``)."""
    device = torch.device(settings.device)
    rows: list[dict] = []
    for members in groups:
        prepared = _prepared(members, settings)
        _, lr, case = make_case(prepared.hr, scale, settings.protocol)
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
        scores = _score_batch(result.image, members[0].channels == 1, scale, prepared.reference)
        for i, (m, (p, s)) in enumerate(zip(members, scores, strict=True)):
            rows.append(_row(m, scale, p, s, seconds, int(result.nfe), settings))
            if save is not None:
                save(m, scale, result.image[i : i + 1])
        if on_batch is not None:
            on_batch(len(members))
    return rows


def _bicubic_rows(
    images: Sequence[LoadedImage],
    which: Sequence[int],
    scales: Sequence[float],
    settings,
    save: ImageSink | None = None,
) -> list[tuple[int, dict]]:
    """Bicubic on every scale of ``images[i]`` for ``i`` in ``which``, one image at a time (its
    prepared HR side stays hot); rows keyed by their scale-major position. ``save`` gets each
    enlargement (computed again with torch when the native kernels scored it)."""
    out = []
    for i in which:
        image = images[i]
        native = _native_bicubic(image, settings)
        hr = image.rgb if native else _prepared([image], settings).hr
        for k, scale in enumerate(scales):
            p, s, seconds = _bicubic_pair(image, hr, scale, settings, native)
            out.append((k * len(images) + i, _row(image, scale, p, s, seconds, 0, settings)))
            if save is not None:
                _, lr, case = make_case(_prepared([image], settings).hr, scale, settings.protocol)
                save(image, scale, upscale(lr, scale, case.sr_size))
    return out


def _native_bicubic(image: LoadedImage, settings: EvalSettings) -> bool:
    """Whether :func:`_bicubic_pair` takes the native kernels (``odesr.native``) for ``image``:
    built and not switched off (``ODESR_NATIVE=0``), CPU, float32 resize and metrics, MATLAB luma
    rounding, an RGB file. Otherwise the torch path."""
    if (
        image.channels != 3
        or torch.device(settings.device).type != "cpu"
        or settings.dtype != torch.float32
        or settings.metric_dtype != torch.float32
        or settings.y_rounding != "matlab"
        or image.rgb.dtype != torch.float32
    ):
        return False
    from odesr import native

    return native.available()


def _bicubic_pair(
    image: LoadedImage, hr: torch.Tensor, scale: float, settings: EvalSettings, native: bool
) -> tuple[float, float, float]:
    """(PSNR, SSIM, seconds of the enlargement) of bicubic on one image at one scale: the native
    kernels when ``native`` (:func:`_native_bicubic`; ``hr`` is then ``image.rgb``), else
    degrade, enlarge and score with torch (``hr``: (1, 3, H, W) on the device)."""
    if native:
        from odesr import native as kernels

        return kernels.bicubic_pair(hr, scale, settings.protocol)
    _, lr, case = make_case(hr, scale, settings.protocol)
    start = time.perf_counter()
    sr = upscale(lr, scale, case.sr_size)
    seconds = time.perf_counter() - start
    ((p, s),) = _score_batch(sr, image.channels == 1, scale, _prepared([image], settings).reference)
    return p, s, seconds


_JOB: tuple = ()  # (images, scales, settings, save) of the running bicubic pool, inherited by fork


def _worker_init() -> None:
    """Forked workers die on SIGTERM: a parent's handler that ignores or re-raises it (submitit's
    job wrapper, the CLI's cleanup handler) would otherwise make ``Pool.terminate`` wait forever.
    They ignore SIGINT: Ctrl-C reaches the whole process group, and only the parent reports it
    (one line) and ends the pool."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _bicubic_chunk(which: list[int]) -> list[tuple[int, dict]]:
    torch.set_num_threads(1)
    return _bicubic_rows(*_JOB[:1], which, *_JOB[1:])


def _evaluate_bicubic(
    images: Sequence[LoadedImage],
    scales: Sequence[float],
    settings: EvalSettings,
    on_batch: Callable[[int], None] | None,
    save: ImageSink | None = None,
) -> list[dict]:
    """Bicubic rows in :func:`evaluate_images`' order (scale, then size group), computed image by
    image; on the CPU spread over forked worker processes (one thread each) with several cores."""
    global _JOB
    images = [m for members in _group(images, settings.batch_size) for m in members]
    workers = min(settings.workers or os.cpu_count() or 1, len(images))
    forkable = "fork" in multiprocessing.get_all_start_methods()
    chunks = [list(range(i, min(i + 4, len(images)))) for i in range(0, len(images), 4)]
    keyed: list[tuple[int, dict]] = []
    if workers < 2 or not forkable or torch.device(settings.device).type != "cpu":
        for which in chunks:
            keyed += _bicubic_rows(images, which, scales, settings, save)
            if on_batch is not None:
                on_batch(len(which) * len(scales))
    else:
        _JOB = (images, scales, settings, save)
        try:
            with multiprocessing.get_context("fork").Pool(workers, _worker_init) as pool:
                for part in pool.imap_unordered(_bicubic_chunk, chunks):
                    keyed += part
                    if on_batch is not None:
                        on_batch(len(part))
                pool.close()
                pool.join()
        finally:
            _JOB = ()
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


def evaluate_dataset(
    model: torch.nn.Module,
    dataset: str,
    scales: Sequence[float],
    data_root: str | None = None,
    settings: EvalSettings | None = None,
    progress: bool = True,
    limit: int | None = None,
    save: ImageSink | None = None,
) -> list[dict]:
    """Load ``dataset`` (name or folder) and evaluate ``model`` on it at every scale; ``save``
    receives every SR image."""
    images = load_images(dataset_files(dataset, data_root, limit))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images) * len(scales), desc=f"{dataset}", unit="img", leave=False)
    try:
        rows = evaluate_images(model, images, scales, settings, bar.update if bar else None, save)
    finally:
        if bar is not None:
            bar.close()
    name = str(dataset)
    for row in rows:
        row["dataset"] = name
    return rows


def eval_table(
    model: torch.nn.Module,
    label: str,
    dataset: str,
    scales: Sequence[float],
    settings: EvalSettings,
    data_root: str | None = None,
    progress: bool = False,
    limit: int | None = None,
    save_images: str | os.PathLike | None = None,
) -> list[dict]:
    """The rows ``odesr eval`` writes for one dataset (:data:`EVAL_COLUMNS`): the evaluation
    rows with the model's ``label``, ``y_rounding`` and the resolved solver settings.
    ``save_images``: a folder that receives the SR images as
    ``<folder>/<dataset name>/<image>_x<scale>.png`` (:func:`png_writer`)."""
    solver = model.solver_settings(settings.solver) if model.is_ode else None
    save = None
    if save_images is not None:
        save = png_writer(Path(save_images) / Path(str(dataset)).name)
    with torch.no_grad():
        rows = evaluate_dataset(model, dataset, scales, data_root, settings, progress, limit, save)
    for r in rows:
        columns = solver.columns(r["scale"]) if solver else NO_SOLVER_COLUMNS
        r.update(model=label, y_rounding=settings.y_rounding, **columns)
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
