"""``python -m bench {run,report,plan,prune,list} ...``: the experiments of the reproduction.

examples:
  python -m bench list
  python -m bench plan table1 --profile paper
  python -m bench plan --calibrate
  python -m bench plan --price -- odesr train cpu/vdsr-ode --max-steps 200
  python -m bench run table1 --profile cpu --data-root ../shared/datasets
  python -m bench run table1 --profile cpu --models vdsr-ode,bicubic
  python -m bench run table1 --profile paper --executor slurm --partition gpu --gpus-per-node 1
  python -m bench report table1 --profile cpu
  python -m bench prune table1 --profile cpu --dry-run

See bench/README.md for the experiments, profiles and results layout.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from bench import executors
from bench.experiment import EXPERIMENT_DIR, ExperimentError
from bench.layers import LAYERS
from bench.profile import Profile, ProfileError, add_profile_arguments, profile_from_args
from odesr.arguments import BATCH_SIZE_HELP, DEVICE_HELP
from odesr.cli import HelpFormatter


def tool_commands() -> list[tuple[str, str]]:
    """``(python -m module, first sentence of its docstring)`` of every module of ``bench``
    (:data:`bench.layers.LAYERS`) with a ``__main__`` block but this one, read from the sources
    (nothing is imported)."""
    root = Path(__file__).resolve().parent.parent
    out = []
    for module in (m for names in LAYERS.values() for m in names):
        path = root / (module.replace(".", "/") + ".py")
        if module == "bench.__main__" or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if 'if __name__ == "__main__"' not in text:
            continue
        doc = (ast.get_docstring(ast.parse(text)) or "").strip().split("\n\n")[0]
        first = re.split(r"\.\s+(?=[A-Z`])", " ".join(doc.split()))[0].rstrip(".").replace("``", "")
        out.append((f"python -m {module}", first))
    return out


def _tools_epilog() -> str:
    lines = ["more commands (each has --help):"]
    for command, what in tool_commands():
        lines.append(f"  {command}")
        if what:
            lines += textwrap.wrap(what, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="name under bench/experiments (table1, ...) or a YAML path")
    add_profile_arguments(p)
    p.add_argument("--data-root", default=None, help="datasets folder (else $ODESR_DATA, ./data)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _parser(top_help: bool) -> argparse.ArgumentParser:
    """The parser of run, report, prune, list (plan has its own); ``top_help``: the epilog
    listing the tools (read from their sources) is wanted."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        # read only for the top-level help: every other command skips parsing the tools' sources
        epilog=_tools_epilog() if top_help else None,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser(
        "run",
        help="train missing checkpoints, evaluate missing units",
        formatter_class=HelpFormatter,
    )
    _common(run)
    run.add_argument("--models", default=None, help="comma list: only these model ids")
    run.add_argument("--batch-size", type=int, default=None, help=BATCH_SIZE_HELP)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--compile",
        action="store_true",
        help="evaluate with the backbones through torch.compile (PSNRs equal to float rounding, "
        "< 1e-4 dB; RDN models about "
        "1.4x faster on a CPU; each process pays the compilation once)",
    )
    run.add_argument(
        "--no-train",
        action="store_true",
        help="evaluate only the units whose weights exist; leave the others for a later run "
        "(while bench.train_all trains them elsewhere); --executor here only",
    )
    executors.add_arguments(run)
    rep = sub.add_parser(
        "report",
        help="tables (md, tex) and figures (png) from the results",
        formatter_class=HelpFormatter,
    )
    _common(rep)
    rep.add_argument(
        "--paper-tables",
        default=None,
        help="the paper's tables CSV (else $ODESR_PAPER_TABLES, else reference/paper_tables.csv "
        "next to the datasets folder, else bench/reference/paper_tables.csv)",
    )
    prune = sub.add_parser(
        "prune",
        help="remove the results rows of weights or image subsets the experiment no longer "
        "names (a recipe replaced); the rows of its current units stay",
        formatter_class=HelpFormatter,
    )
    _common(prune)
    prune.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    sub.add_parser("list", help="list the experiments")
    sub.add_parser(  # dispatched above to bench.plan.main, which has its own options
        "plan",
        help="units to train and evaluate, NFE, FLOPs, projected hours; --calibrate, "
        "--price -- COMMAND (python -m bench plan -h)",
        formatter_class=HelpFormatter,
    )
    return parser


def _run(args: argparse.Namespace, profile: Profile, parser: argparse.ArgumentParser) -> int:
    """``bench run``: here, or as submitit jobs (``--executor``)."""
    from bench.runner import run_experiment

    models = [m.strip() for m in args.models.split(",")] if args.models else None
    if args.executor != "here":
        if args.no_train:
            parser.error("--no-train works with --executor here only")
        opts = executors.options_from_args(args, profile)
        kwargs = dict(
            data_root=args.data_root,
            device=args.device,
            batch_size=args.batch_size,
            compile=args.compile,
        )
        failed = executors.submit_experiment(args.experiment, profile, models, opts, **kwargs)
        return 1 if failed else 0
    summary = run_experiment(
        args.experiment,
        profile,
        data_root=args.data_root,
        device=args.device,
        models=models,
        progress=not args.no_progress,
        batch_size=args.batch_size,
        train=not args.no_train,
        compile=args.compile,
    )
    print(
        f"bench run: {summary.done} units run, {summary.skipped} already there, "
        + (f"{summary.waiting} waiting for weights, " if summary.waiting else "")
        + f"{summary.planned} planned -> {summary.results}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:  # its own parser: --calibrate, --price -- COMMAND, --check
        from bench.plan import main as plan_main
        from bench.plan_status import format_status

        return plan_main(argv[1:], status=format_status)
    parser = _parser(top_help=argv[:1] in (["-h"], ["--help"]))
    args = parser.parse_args(argv)
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        print(f"bench: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if getattr(args, "device", "auto") not in ("auto", "", None):
        from odesr.validate import device

        try:
            device(args.device)
        except ValueError as exc:  # before any training or evaluation starts
            print(f"bench: {exc}", file=sys.stderr)
            return 2

    try:
        if args.cmd == "list":
            for p in sorted(EXPERIMENT_DIR.glob("*.yaml")):
                print(p.stem)
            return 0
        profile = profile_from_args(args)
        if args.cmd == "prune":
            from bench.runner import prune_results

            return prune_results(args.experiment, profile, args.dry_run)
        if args.cmd == "run":
            return _run(args, profile, parser)
        from bench.report import write_report

        written = write_report(
            args.experiment,
            profile,
            data_root=args.data_root,
            device=args.device,
            paper_tables=args.paper_tables,
        )
        for path in written:
            print(path)
        return 0
    except (ExperimentError, ProfileError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # data, config, model, checkpoint, file problems: one line
        from odesr.cli import error_line
        from odesr.train import TrainError

        if isinstance(exc, ValueError | OSError | TrainError):
            print(f"bench: {error_line(exc)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
