"""Does the solve of an ODE model follow the path I(t)? Its states at the solver's grid times
against the true I(t_i) of the same HR image and against HR, under the evaluation's conventions
(``odesr.evaluate``: protocol, Y channel, shave ceil(t0), 8-bit)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from odesr.data import LoadedImage
from odesr.degrade import make_case, path_point, quantize
from odesr.evaluate import EvalSettings, gpu_float32
from odesr.metrics import psnr, shave_for

__all__ = ["PATH_COLUMNS", "path_following"]

# the columns of :func:`path_following`'s rows
PATH_COLUMNS = [
    "image",
    "scale",
    "grid",
    "solver",
    "nfe",
    "step",
    "t",
    "psnr_path",
    "psnr_hr",
    "psnr_path_hr",
    "protocol",
    "y_rounding",
]


def path_following(
    model: torch.nn.Module,
    images: Sequence[LoadedImage],
    scales: Iterable[float],
    grids: dict[str, dict],
    settings: EvalSettings | None = None,
) -> list[dict]:
    """Does the solve of an ODE model follow I(t)? One row per (image, scale, grid, grid time).

    For each image and scale t0 the protocol's LR is super-resolved (untiled) with the model's
    solver overridden by each entry of ``grids`` (name -> solver options, e.g. ``{"step_size":
    0.25}``), keeping the state at every grid time t_i. ``psnr_path``: the state against the true
    I(t_i) of the same HR image (``path_point(hr, t_i, pad=0)``: the evaluation's HR region shrunk
    by 1/t_i and enlarged back with the LR grid anchored at pixel (0, 0), as the evaluation's LR
    is; 8-bit); ``psnr_hr``: the state against HR; ``psnr_path_hr``: I(t_i) against HR (how far
    the path itself is from HR). Every PSNR follows the evaluation's conventions (Y channel,
    ``settings.y_rounding``, both sides 8-bit, shave ceil(t0) at every t_i). At t_i = t0 the state
    is the bicubic input: ``psnr_path`` there measures only the LR's 8-bit rounding and borders.
    """
    settings = settings or EvalSettings()
    with gpu_float32(settings.tf32):
        return _path_rows(model, images, scales, grids, settings)


def _path_rows(
    model: torch.nn.Module,
    images: Sequence[LoadedImage],
    scales: Iterable[float],
    grids: dict[str, dict],
    settings: EvalSettings,
) -> list[dict]:
    device = torch.device(settings.device)
    rows: list[dict] = []
    for image in images:
        hr = image.rgb[None].to(device, settings.dtype)
        for scale in scales:
            ref, lr, case = make_case(hr, scale, settings.protocol)
            shave = shave_for(scale)

            def to_8bit_psnr(a: torch.Tensor, b: torch.Tensor, shave: int = shave) -> float:
                return float(psnr(a, quantize(b), shave, y_rounding=settings.y_rounding)[0])

            for name, options in grids.items():
                with torch.no_grad():
                    res = model.super_resolve(
                        lr, scale, case.sr_size, solver=options, return_trajectory=True
                    )
                solver = model.solver_settings(options)
                for step, t in enumerate(res.times.tolist()):
                    state = res.trajectory[step]
                    truth = path_point(ref, float(t), pad=0)
                    rows.append(
                        dict(
                            image=image.name,
                            scale=scale,
                            grid=name,
                            solver=solver.label(),
                            nfe=int(res.nfe),
                            step=step,
                            t=float(t),
                            psnr_path=to_8bit_psnr(state, truth),
                            psnr_hr=to_8bit_psnr(state, ref),
                            psnr_path_hr=to_8bit_psnr(truth, ref),
                            protocol=settings.protocol,
                            y_rounding=settings.y_rounding,
                        )
                    )
    return rows
