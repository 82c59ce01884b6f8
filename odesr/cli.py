"""Command line: ``odesr eval | train | upscale``. A thin layer over the library.

User errors (bad files, values, names) print one line ``odesr: error: ...`` and exit 2.
``--help`` imports no torch: a sub-command's module is imported only when that command runs
(or shows its own help).
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from odesr import __version__
from odesr.arguments import BATCH_SIZE_HELP, DEVICE_HELP
from odesr.solvers import solver_names

__all__ = ["main", "error_line", "UserError", "HelpFormatter", "PROTOCOL_CHOICES", "DEVICE_HELP"]

# the names odesr.degrade.PROTOCOLS defines (repeated here so that --help imports no torch;
# tests/test_cli_help.py checks they agree); solver names come from the torch-free registry
PROTOCOL_CHOICES = ("metasr", "modcrop", "floor")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions kept as written (examples stay examples); every option's default shown,
    unless it is None/False or the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        empty = action.default in (None, False, argparse.SUPPRESS, "") or action.default == []
        if empty or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line too (``odesr eval: error: ... (see odesr eval -h)``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


class UserError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a dataset over scales; writes a tidy CSV",
        formatter_class=HelpFormatter,
        description="example: odesr eval --model bicubic --dataset Set5 --scales 2,3,4 "
        "--out bicubic.csv --data-root ../shared/datasets",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--model",
        help="bicubic, bundled (the small vdsr-ode shipped with odesr), or the name of published "
        "weights (vdsr-ode, rdn-ode, vdsr+t, ...: results/cpu/weights/index.csv, or "
        "$ODESR_WEIGHTS/index.csv)",
    )
    which.add_argument("--checkpoint", help="a trained checkpoint (.pt) made by odesr train")
    p.add_argument(
        "--seed", type=int, help="training seed of the published --model weights (default: 0)"
    )
    p.add_argument(
        "--dataset",
        required=True,
        action="append",
        help="dataset name (Set5, B100, ...) or image folder; repeatable",
    )
    p.add_argument(
        "--scales",
        default="2,3,4",
        help="start:stop:step (inclusive) and/or comma list, e.g. 1.1:4.0:0.1",
    )
    p.add_argument("--out", required=True, help="CSV to write (atomically)")
    p.add_argument(
        "--save-images",
        metavar="DIR",
        help="also write the SR images, 8-bit PNG, as DIR/<dataset>/<image>_x<scale>.png",
    )
    p.add_argument(
        "--data-root", help="folder holding <Name>/HR (default: $ODESR_DATA, else ./data)"
    )
    p.add_argument(
        "--protocol",
        default="metasr",
        choices=PROTOCOL_CHOICES,
        help="HR crop and LR/SR sizes: metasr (Meta-SR's benchmark: HR not divisible by the "
        "scale loses 4 pixels, LR = ceil(HR / s), SR = floor(LR * s)); modcrop (integer "
        "scales: HR cropped to a multiple of s); floor (LR = floor(HR / s), SR = floor(LR * s), "
        "no 4-pixel drop)",
    )
    p.add_argument(
        "--y-rounding",
        default="matlab",
        choices=["matlab", "float"],
        help="round Y to 8 bits like MATLAB or keep it float",
    )
    p.add_argument(
        "--solver",
        help=f"ODE method, one of {', '.join(solver_names())} (default: the model's own, rk4 "
        "unless the checkpoint says otherwise)",
    )
    p.add_argument(
        "--steps", type=int, help="fixed solver steps from t0 to 1 (default: from --step-size)"
    )
    p.add_argument(
        "--step-size",
        type=float,
        help="fixed solver step size in t (default: the model's own; one step from t0 to 1 "
        "unless the checkpoint says otherwise)",
    )
    p.add_argument("--rtol", type=float, help="dopri5 relative tolerance (default: 1e-3)")
    p.add_argument("--atol", type=float, help="dopri5 absolute tolerance (default: 1e-4)")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: whole images)")
    p.add_argument("--batch-size", type=int, default=None, help=BATCH_SIZE_HELP)
    p.add_argument("--limit", type=int, help="only the first N images of each dataset")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--tf32",
        action="store_true",
        help="GPU convolutions in TF32: faster, but PSNR moves by up to a few hundredths of "
        "a dB (default: float32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the backbone through torch.compile: RDN models about 1.4x faster on a CPU, "
        "PSNRs equal to float rounding (< 1e-4 dB); the first batch pays the compilation",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _check_eval_args(args: argparse.Namespace) -> Path:
    """Checks before anything is loaded; returns the ``--out`` path."""
    from odesr import validate

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile must be >= 1, got {args.tile}")
    if args.seed is not None and args.model is None:
        raise UserError("--seed goes with --model NAME (published weights), not --checkpoint")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.save_images is not None and Path(args.save_images).exists():
        if not Path(args.save_images).is_dir():
            raise UserError(f"--save-images {args.save_images}: exists and is not a folder")
    args.device = validate.device(args.device)  # auto -> cuda or cpu
    validate.tolerance(args.rtol, "--rtol")
    validate.tolerance(args.atol, "--atol")
    out = validate.output_file(args.out)
    validate.lock_file(out, "--out")
    if out.is_file() and out.stat().st_size and not _starts_with(out, b"model,"):
        raise UserError(f"--out {out}: exists and is not an odesr eval CSV; not replacing it")
    return out


def _starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file ``path`` begins with ``prefix`` (reads only that many bytes)."""
    with open(path, "rb") as fh:
        return fh.read(len(prefix)) == prefix


def _eval_solver(model, args: argparse.Namespace):
    """The model's solver settings with the command line's overrides (None: not an ODE model)."""
    given = {
        "method": args.solver,
        "steps": args.steps,
        "step_size": args.step_size,
        "rtol": args.rtol,
        "atol": args.atol,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not model.is_ode:
        if given:
            raise UserError(
                f"model {model.spec.get('name')!r} is not an ODE model: --solver/--steps/"
                "--step-size/--rtol/--atol do not apply"
            )
        return None
    return model.solver_settings(given)


def _run_eval(args: argparse.Namespace) -> int:
    from filelock import FileLock, Timeout

    from odesr.evaluate import parse_scales

    scales = parse_scales(args.scales)
    out = _check_eval_args(args)
    lock = out.with_name(out.name + ".lock")
    try:
        with FileLock(lock, timeout=0):
            try:
                return _eval_locked(args, scales)
            finally:  # removed while held: a process that opened it retries on a new file
                lock.unlink(missing_ok=True)
    except Timeout:
        raise UserError(
            f"--out {out}: another odesr eval is writing it (lock {lock}); wait for it or "
            "choose another --out"
        ) from None


def _eval_locked(args: argparse.Namespace, scales: list[float]) -> int:
    """``odesr eval`` once ``--out`` is locked by this process (one writer per CSV)."""

    from odesr.checkpoints import load_model
    from odesr.degrade import DEFAULT_PROTOCOL
    from odesr.evaluate import EVAL_COLUMNS, EvalSettings, check_datasets, eval_table, summarize
    from odesr.io import write_csv_atomic
    from odesr.ode import time_grid

    if args.model is not None:
        model = load_model(args.model, args.device, seed=args.seed)
        label = args.model if args.seed is None else f"{args.model} seed {args.seed}"
    else:
        model = load_model(Path(args.checkpoint), args.device)
        label = model.spec.get("name", "model")
    solver = _eval_solver(model, args)
    if solver is not None:  # bounded step count, refused before any work
        time_grid(max(scales), steps=solver.steps, step_size=solver.step_size)
    settings = EvalSettings(
        protocol=args.protocol or DEFAULT_PROTOCOL,
        y_rounding=args.y_rounding,
        batch_size=args.batch_size,
        device=args.device,
        solver=solver,
        tile=args.tile,
        tf32=args.tf32,
        compile=args.compile,
    )
    # every dataset's names, headers and sizes against every scale, before any is evaluated
    check_datasets(model, args.dataset, scales, settings, args.data_root, args.limit)
    rows: list[dict] = []
    for dataset in args.dataset:
        part = eval_table(
            model,
            label,
            dataset,
            scales,
            settings,
            args.data_root,
            not args.no_progress,
            args.limit,
            save_images=args.save_images,
        )
        rows.extend(part)
        print(f"{label} on {dataset} ({settings.protocol}, Y {args.y_rounding}):")
        print("  scale    PSNR     SSIM   n")
        for scale, p, s, n in summarize(part):
            print(f"  x{scale:<5g} {p:7.3f}  {s:.4f}  {n}")
    write_csv_atomic(args.out, rows, EVAL_COLUMNS)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


# sub-commands whose code lives in their own module: name -> (module, help)
OPTIONAL_COMMANDS = {
    "train": ("odesr.train", "train a model from a YAML config"),
    "upscale": ("odesr.upscale", "super-resolve your own images at any scale"),
}


def _add_optional(sub: argparse._SubParsersAction, name: str, load: bool) -> None:
    """A sub-command whose code lives in its own module (it imports torch). Its arguments come
    from the torch-free :mod:`odesr.arguments`; with ``load=True`` the module is imported here so
    a broken import surfaces at once, otherwise only when the command runs (``--help`` stays
    fast)."""
    import importlib

    from odesr import arguments

    module, help_text = OPTIONAL_COMMANDS[name]
    p = sub.add_parser(name, help=help_text, formatter_class=HelpFormatter)
    getattr(arguments, f"{name}_arguments")(p)
    if load:
        importlib.import_module(module)

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module).run_from_args(args)

    p.set_defaults(func=run)


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The ``odesr`` parser; ``command`` names the one optional sub-command whose module is
    imported (``"*"``: all, ``None``: none)."""
    parser = _Parser(
        prog="odesr",
        description="Super-resolution by solving an IVP (Park & Kim) - harness",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"odesr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_eval(sub)
    for name in OPTIONAL_COMMANDS:
        _add_optional(sub, name, load=command in ("*", name))
    return parser


class _Terminated(BaseException):
    """SIGTERM, raised so that ``finally`` blocks run (temporary files are removed)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def error_line(exc: BaseException) -> str:
    """One line for a user-facing error: its message's first line; for an OS error (disk full,
    permissions, a lock that is a folder, a symlink loop) the reason and the file it names."""
    if isinstance(exc, OSError) and exc.strerror and exc.args and isinstance(exc.args[0], int):
        where = exc.filename if exc.filename is not None else ""
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        text = f"{where}{other}: {exc.strerror}" if where != "" else exc.strerror
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            text += " (no space for the output; nothing was replaced)"
        return text
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    return text or exc.__class__.__name__


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (its first non-option word), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the modules load (torch takes seconds)
        print("odesr: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = any(a in ("-h", "--help") for a in argv)
    parser = build_parser(None if wants_help else _command(argv))  # help: no torch import
    args = parser.parse_args(argv)
    from odesr.data import DataError

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("odesr: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("odesr: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (UserError, DataError, ValueError, OSError) as exc:
        print(f"odesr: error: {error_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
