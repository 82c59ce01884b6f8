"""The run profile: one object built where a command starts, checked there, read everywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.experiment import ExperimentError, load_experiment
from bench.profile import Profile, ProfileError
from odesr.config import profiles as recipes

REPO = Path(__file__).resolve().parents[1]


def test_profile_folders_and_recipe() -> None:
    cpu = Profile("cpu", "res", "ck")  # strings become paths
    assert cpu.recipe == "cpu" and cpu.results == Path("res/cpu")
    assert cpu.results_csv("table1") == Path("res/cpu/table1.csv")
    assert cpu.checkpoint_dir("vdsr-ode-0123") == Path("ck/cpu/vdsr-ode-0123")
    assert cpu.published_weights("vdsr-ode-0123") == Path("res/cpu/weights/vdsr-ode-0123.pt")
    assert cpu.jobs == Path("ck/cpu/jobs")
    assert cpu.config_name("vdsr-ode") == "cpu/vdsr-ode"
    demo = Profile("demo", recipe=None)  # its own folders, no recipe
    assert demo.results == Path("results/demo")
    with pytest.raises(ProfileError, match="'vdsr-ode': profile 'demo' has no training recipe"):
        demo.config_name("vdsr-ode")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(name="bogus"), "--profile 'bogus': no training recipe"),
        (dict(name="../cpu"), "--profile '../cpu': a profile is a folder name"),
        (dict(name=""), "a profile is a folder name"),
        (dict(name="demo", recipe="cpuu"), "--profile 'cpuu'"),
    ],
)
def test_bad_profiles_are_refused_where_built(kwargs: dict, needle: str) -> None:
    with pytest.raises(ProfileError, match=needle.replace("(", r"\(")):
        Profile(**kwargs)


def test_folders_that_are_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProfileError, match="--results .*file exists and is not a folder"):
        Profile("cpu", tmp_path / "file")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "cpu").write_text("x")
    with pytest.raises(ProfileError, match="--results .*cpu exists and is not a folder"):
        Profile("cpu", tmp_path / "res")
    with pytest.raises(ProfileError, match="--checkpoints"):
        Profile("cpu", tmp_path / "ok", tmp_path / "file")


def test_experiment_profiles_must_name_a_profile(tmp_path: Path) -> None:
    exp = {
        "name": "typo",
        "models": {"b": {"model": {"name": "bicubic"}}},
        "sweeps": [{"name": "main", "models": ["b"], "datasets": {"Set5": "2"}}],
        "profiles": {"cpuu": {"sweeps.main.limit": 1}},
    }
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(exp))
    with pytest.raises(ExperimentError, match="profiles.cpuu: not a profile"):
        load_experiment(path)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "bench", "run", "table1", "--no-train"],
        ["-m", "bench", "report", "table1"],
        ["-m", "bench", "prune", "table1", "--dry-run"],
        ["-m", "bench", "plan", "table1"],
        ["-m", "bench.train_all", "table1"],
        ["-m", "bench.publish", "table1"],
        ["-m", "bench.weights_index", "--check"],
    ],
)
def test_every_command_refuses_an_unknown_profile_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """Before the profile object, an unknown profile failed deep in config composition with a
    list of every PROFILE/MODEL name (or silently found no results)."""
    proc = _run(*command, "--profile", "cpuu", cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "--profile 'cpuu'" in lines[-1] and "cpu, paper, smoke" in lines[-1], proc.stderr
    assert len(lines[-1]) < 200
    assert not (REPO / "results" / "cpuu").exists() and not (REPO / "checkpoints" / "cpuu").exists()


def test_commands_share_one_name_and_default_for_the_profile_options() -> None:
    """Every command that takes --profile declares it through bench.profile (one name, one
    default, the recipes listed in its help); nothing outside bench/profile.py reads
    ``args.profile`` or builds ``<root>/<profile>`` paths itself."""
    declared = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        if path.name == "profile.py":
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "profile":
                base = node.value
                assert not (isinstance(base, ast.Name) and base.id == "args"), (
                    f"{path.relative_to(REPO)}:{node.lineno} reads args.profile"
                )
            if isinstance(node, ast.Constant) and node.value == "--profile":
                declared.append(f"{path.relative_to(REPO)}:{node.lineno}")
        if "add_profile_arguments(" in text:
            declared.append(str(path.relative_to(REPO)))
    offenders = [d for d in declared if ":" in d]
    assert offenders == [], f"--profile declared outside bench/profile.py: {offenders}"
    users = {d for d in declared if ":" not in d}
    assert {
        "bench/__main__.py",
        "bench/plan.py",
        "bench/train_all.py",
        "bench/publish.py",
        "bench/repro.py",
        "bench/weights_index.py",
    } <= users
    help_text = _run("-m", "bench", "run", "--help", cwd=REPO).stdout
    assert f"{' | '.join(recipes())} (default cpu)" in " ".join(help_text.split())
