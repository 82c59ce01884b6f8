"""CLI help: defaults and choices shown, --version, examples kept as examples, and `odesr --help`
/ `odesr eval --help` without importing torch."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from odesr import cli

REPO = Path(__file__).resolve().parents[1]


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["eval", "--help"], ["train", "--help"], ["upscale", "--help"], ["--version"]],
)
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code = (
        f"import sys\nfrom odesr.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n"
        "    pass\nprint('torch imported:', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip().endswith("torch imported: False"), out.stdout + out.stderr


def test_eval_help_shows_defaults_and_choices(capsys) -> None:
    text = " ".join(_help(["eval", "--help"], capsys).split())  # unwrap argparse's lines
    for shown in (
        "(default: 2,3,4)",
        "(default: 1 on the CPU, 16 on a GPU;",
        "(default: auto",
        "(default: metasr)",
        "(default: matlab)",
        "{metasr,modcrop,floor}",
        "one of euler, midpoint, rk4, rk4-classic, path-step, dopri5",
        "floor (LR = floor(HR / s)",
    ):
        assert shown in text, shown
    assert "(default: None)" not in text


def test_choices_match_the_library() -> None:
    from odesr.degrade import PROTOCOLS
    from odesr.ode import METHODS
    from odesr.solvers import solver_names

    assert set(cli.PROTOCOL_CHOICES) == set(PROTOCOLS)
    assert set(METHODS) <= set(solver_names())  # the help texts list the solver registry


def test_version_is_the_package_version(capsys) -> None:
    version = re.search(r'(?m)^version = "([^"]+)"', (REPO / "pyproject.toml").read_text())[1]
    assert _help(["--version"], capsys).strip() == f"odesr {version}"


def test_train_and_upscale_help(capsys) -> None:
    train = " ".join(_help(["train", "--help"], capsys).split())
    assert "--device DEVICE auto: cuda when available" in train
    assert "(default: auto" in train
    upscale = " ".join(_help(["upscale", "--help"], capsys).split())
    assert "(default: auto" in upscale and "(default: png)" not in upscale  # stated in its text


def test_bench_help_keeps_examples_as_lines(capsys, monkeypatch) -> None:
    from bench.__main__ import main

    monkeypatch.setenv("COLUMNS", "80")  # argparse's width, as in a terminal of 80 columns
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "\n  python -m bench plan table1 --profile paper\n" in out
    assert "``" not in out.split("examples:")[1]


def test_argument_constants_match_the_commands() -> None:
    import importlib

    from odesr import arguments, models

    upscale = importlib.import_module("odesr.upscale")  # odesr.upscale is also the API function
    assert arguments.AUTO_TILE == upscale.AUTO_TILE
    assert arguments.DEFAULT_OVERLAP == models.DEFAULT_OVERLAP


def test_bench_help_lists_every_command_module(capsys) -> None:
    """Every module of bench with a ``__main__`` block (found here by reading the files, not
    from bench.layers) is named in ``python -m bench --help``, with its docstring's first words."""
    from bench.__main__ import main as bench_main

    with pytest.raises(SystemExit):
        bench_main(["--help"])
    text = capsys.readouterr().out
    found = [
        ".".join(p.relative_to(REPO).with_suffix("").parts)
        for p in sorted((REPO / "bench").rglob("*.py"))
        if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8")
    ]
    assert "bench.train_all" in found and "bench.publish" in found
    for module in found:
        if module != "bench.__main__":
            assert f"python -m {module}\n" in text, module
    assert "Train every missing checkpoint" in text


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _defaults(main, argv: list[str], monkeypatch) -> dict[str, object]:
    """``{--option: default}`` of the parser ``main(argv)`` builds (sub-command ``argv[0]``
    when it has sub-commands), caught where it would parse."""

    def catch(self, args=None, namespace=None):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Parsed) as got:
        main(argv)
    parser = got.value.parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and argv:
            parser = action.choices[argv[0]]
    return {opt: action.default for action in parser._actions for opt in action.option_strings}


def test_one_name_and_one_default_per_option_across_commands(monkeypatch) -> None:
    """--device, --batch-size, --executor and the profile options mean the same, with the same
    default, in odesr's and bench's commands (they differed: eval batch 16 vs bench run 8, the
    local executor `pool` vs `here`, train_all's device cpu vs auto)."""
    from bench.__main__ import main as bench_main
    from bench.plan import main as plan_main
    from bench.publish import main as publish_main
    from bench.train_all import main as train_all_main

    found = {
        "odesr eval": _defaults(cli.main, ["eval"], monkeypatch),
        "odesr upscale": _defaults(cli.main, ["upscale"], monkeypatch),
        "odesr train": _defaults(cli.main, ["train"], monkeypatch),
        "bench run": _defaults(bench_main, ["run"], monkeypatch),
        "bench report": _defaults(bench_main, ["report"], monkeypatch),
        "bench prune": _defaults(bench_main, ["prune"], monkeypatch),
        "bench plan": _defaults(plan_main, [], monkeypatch),
        "bench.train_all": _defaults(train_all_main, ["x"], monkeypatch),
        "bench.publish": _defaults(publish_main, ["x"], monkeypatch),
    }
    expected = {
        "--device": "auto",
        "--batch-size": None,
        "--executor": "here",
        "--profile": "cpu",
        "--results": "results",
        "--checkpoints": "checkpoints",
        "--data-root": None,
    }
    for option, default in expected.items():
        having = {name: d[option] for name, d in found.items() if option in d}
        assert set(having.values()) == {default}, (option, having)
    assert {n for n, d in found.items() if "--device" in d} >= {
        "odesr eval", "odesr upscale", "odesr train", "bench run", "bench.train_all"
    }  # fmt: skip
    assert "--batch-size" in found["odesr eval"] and "--batch-size" in found["bench run"]
    assert "--executor" in found["bench run"] and "--executor" in found["bench.train_all"]
