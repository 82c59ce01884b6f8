"""Argument definitions of ``odesr train`` and ``odesr upscale``, kept free of torch so that
their ``--help`` is instant; the commands' code (``odesr.train``, ``odesr.upscale``) is imported
only when they run. The two constants below repeat those modules' values (a test checks)."""

from __future__ import annotations

import argparse

from odesr.solvers import solver_names

__all__ = [
    "train_arguments",
    "upscale_arguments",
    "AUTO_TILE",
    "DEFAULT_OVERLAP",
    "DEVICE_HELP",
    "EVAL_BATCH_SIZE",
    "CPU_EVAL_BATCH_SIZE",
    "BATCH_SIZE_HELP",
]

AUTO_TILE = 1024  # = odesr.upscale.AUTO_TILE
DEFAULT_OVERLAP = 32  # = odesr.models.DEFAULT_OVERLAP
# images per evaluation batch (odesr eval, odesr.evaluate, EvalSettings, bench run) when none is
# given: on a GPU a batch saves kernel launches; on the CPU one image at a time costs 1.13-1.34x
# less CPU time at the same rows (a batch's activations are freshly mapped memory, whose page
# faults cost more than the batching saves; bench/README.md)
EVAL_BATCH_SIZE = 16
CPU_EVAL_BATCH_SIZE = 1
BATCH_SIZE_HELP = (
    f"images of equal size per evaluation batch (default: {CPU_EVAL_BATCH_SIZE} on the CPU, "
    f"{EVAL_BATCH_SIZE} on a GPU; the rows do not depend on it)"
)
# --device of every odesr command: one default (auto) and one meaning
DEVICE_HELP = (
    "auto: cuda when available, else cpu (under torchrun: cuda:LOCAL_RANK); or cpu, cuda, "
    "cuda:N (default: auto, the same for every odesr command and API function)"
)


def train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``odesr train``."""
    parser.add_argument("config", help="YAML config file, or PROFILE/MODEL under odesr/configs")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument(
        "--data-root", default=None, help="datasets folder (else $ODESR_DATA, ./data)"
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--out", default=None, help="run directory (default runs/PROFILE/MODEL)")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    parser.add_argument("--seed", type=int, default=None, help="override seed")
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="S1,S2,...",
        help="train these seeds together in one process (stacked weights, one pass for all; "
        "models taking the upscaled image), into OUT/seed<S> (odesr.multiseed)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, YAML value)",
    )
    parser.add_argument(
        "--data-workers",
        type=int,
        default=0,
        metavar="N",
        help="make batches ahead in N worker processes (same batches; for a GPU; default 0)",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="GPU convolutions and matmuls in TF32 (faster, not float32; default: full float32, "
        "as odesr eval; recorded in the checkpoint's trained_on)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def upscale_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``odesr upscale``."""
    parser.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders")
    parser.add_argument("--scale", required=True, help="scale factor S > 1 (any real number)")
    parser.add_argument(
        "--out", required=True, help="output file (one input) or folder (created if needed)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint",
        help="checkpoint (.pt) made by odesr train (default: the bundled small vdsr-ode, "
        "odesr/weights/vdsr-ode-cpu.pt)",
    )
    which.add_argument("--model", help="registry name of a parameter-free model (e.g. bicubic)")
    parser.add_argument("--solver", help=f"ODE method: {', '.join(solver_names())}")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--steps", help="fixed solver steps from t0 to 1")
    steps.add_argument("--step-size", help="fixed solver step size in t")
    parser.add_argument("--tile", help=f"tile side in output pixels (default {AUTO_TILE})")
    parser.add_argument(
        "--overlap",
        help="context pixels around each tile (default: exact, receptive radius x NFE; "
        f"{DEFAULT_OVERLAP} for adaptive solvers)",
    )
    parser.add_argument(
        "--format",
        default="png",
        help="output format in folder mode: png (default), jpeg, tiff, webp",
    )
    parser.add_argument("--trajectory", metavar="DIR", help="write I(t_i) PNGs and a GIF here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    return parser
