"""Composed configs (odesr/configs), strict keys and the one override mechanism.

The pinned hashes were computed from the 33 per-file configs at main e2dbe8c (before the
composition) and checked equal key by key (the paper ODE configs changed since: one RK4 step,
issue 9); they are also the checkpoint keys in the committed results (e.g. ``rdn-ode-cd56f86bdf``
in results/cpu/table1.csv), so a change here means retraining.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.experiment import ExperimentError, load_experiment
from bench.profile import Profile
from odesr.config import (
    LEGACY_VALUES,
    ConfigError,
    apply_overrides,
    config_names,
    deep_merge,
    parse_set,
    weights_hash,
)
from odesr.train import TrainError, load_config
from odesr.train_config import DEFAULTS
from odesr.train_state import resume_mismatch

REPO = Path(__file__).resolve().parents[1]

PINNED_HASHES = {
    # position-plane ablation models, added later (new configs: new keys)
    "cpu/vdsr+t-pos": "3e75064f0e",
    "cpu/vdsr-ode-pos": "a6bba77472",
    "paper/vdsr+t-pos": "bf7e2445e8",
    "paper/vdsr+t-unweighted": "0c21a31bea",
    "paper/vdsr-ode-unweighted": "eea6ba9db7",
    "smoke/vdsr+t-unweighted": "35e2e01d0a",
    "smoke/vdsr-ode-unweighted": "175ab37aab",
    "paper/vdsr-ode-pos": "9c9d0d11b1",
    "smoke/vdsr+t-pos": "854c91817f",
    "smoke/vdsr-ode-pos": "2509bb8787",
    "cpu/meta-rdn": "1bf0b9d937",  # bicubic skip, He init (scale-weight sweep)
    "cpu/meta-rdn-noskip": "4416c17573",
    "cpu/rdn+t": "47fb334f18",
    "cpu/rdn-fixed-x2": "2345ea207c",
    "cpu/rdn-fixed-x3": "208c557fd5",
    "cpu/rdn-fixed-x4": "2f3481d59e",
    "cpu/rdn-ode": "7b36759df2",  # scale_weight inv_residual
    "cpu/rdn-ode-unweighted": "ee96c1106c",
    "cpu/rdn-ode-path": "8604cb5903",
    # the cpu profile weights the scales of vdsr+t and vdsr-ode (scale_weight); their earlier
    # configs (and keys) live on as the -unweighted ids
    "cpu/vdsr+t": "2cad5064e4",
    "cpu/vdsr+t-unweighted": "bfc8784ec4",
    "cpu/vdsr+t-repeat4": "b14c902e3d",
    "cpu/vdsr-fixed": "6cead6e981",
    "cpu/vdsr-ode": "299d300fec",
    "cpu/vdsr-ode-unweighted": "1ffe079495",
    "cpu/vdsr-ode-hr": "2174a993b1",
    "cpu/vdsr-ode-path": "a9b8000dbb",
    "paper/meta-rdn": "4bec901d5b",
    "paper/meta-rdn-noskip": "4bec901d5b",
    "paper/rdn+t": "c0f7ba5b89",
    "paper/rdn-fixed-x2": "2859aff7d9",
    "paper/rdn-fixed-x3": "d60c7a037f",
    "paper/rdn-fixed-x4": "13dc9c73d8",
    "paper/rdn-ode": "bba15e6784",  # checkpoint_recompute eval (device check)
    "paper/rdn-ode-unweighted": "bba15e6784",
    "paper/rdn-ode-path": "d1f8786bc3",
    "paper/vdsr+t": "0c21a31bea",
    "paper/vdsr+t-repeat4": "e7cd953c06",
    "paper/vdsr-fixed": "71307ea22b",
    "paper/vdsr-ode": "eea6ba9db7",
    "paper/vdsr-ode-hr": "9365d8fc5f",
    "paper/vdsr-ode-path": "c2327ede5a",
    "smoke/meta-rdn": "1fb345d99e",
    "smoke/meta-rdn-noskip": "1fb345d99e",
    "smoke/rdn+t": "e5cac2d249",
    "smoke/rdn-fixed-x2": "8ac1393e65",
    "smoke/rdn-fixed-x3": "3f22965d63",
    "smoke/rdn-fixed-x4": "d57c744191",
    "smoke/rdn-ode": "112c6147ce",
    "smoke/rdn-ode-unweighted": "112c6147ce",
    "smoke/rdn-ode-path": "cb48e3d194",
    "smoke/vdsr+t": "35e2e01d0a",
    "smoke/vdsr+t-repeat4": "f2082002b3",
    "smoke/vdsr-fixed": "047b143633",
    "smoke/vdsr-ode": "175ab37aab",
    "smoke/vdsr-ode-hr": "7d87f5ce12",
    "smoke/vdsr-ode-path": "b7af5e9ec8",
}

# the values that matter, as the paper (section 4.1) and the cpu/smoke budgets state them
# name: (patch_size, batch_size, max_steps, lr, lr_halve_every, train_solver or None, recompute)
KEY_VALUES = {
    "paper/vdsr-ode": (200, 16, 600000, 1e-4, 100000, ("rk4", None), True),
    "paper/rdn-ode": (130, 8, 600000, 1e-4, 100000, ("rk4", None), "eval"),
    "paper/rdn-ode-path": (130, 8, 600000, 1e-4, 100000, ("rk4", None), False),
    "paper/rdn-fixed-x3": (144, 16, 600000, 1e-4, 100000, None, False),
    "paper/vdsr+t": (200, 16, 600000, 1e-4, 100000, None, False),
    "cpu/vdsr-ode": (48, 8, 4000, 1e-3, 100000, ("rk4", None), False),
    "cpu/rdn-ode": (48, 8, 2000, 1e-3, 100000, ("rk4", None), False),
    "cpu/rdn-fixed-x4": (96, 8, 2000, 1e-3, 100000, None, False),
    "cpu/vdsr-fixed": (48, 8, 4000, 1e-3, 100000, None, False),
    "smoke/vdsr-ode": (24, 4, 20, 1e-3, 10, ("euler", 0.5), False),
    "smoke/meta-rdn": (24, 4, 20, 1e-3, 10, None, False),
}


def test_composed_configs_keep_their_hashes() -> None:
    assert sorted(config_names()) == sorted(PINNED_HASHES)
    got = {name: weights_hash(load_config(name)) for name in config_names()}
    assert got == PINNED_HASHES


def test_weights_hash_follows_what_changes_the_weights() -> None:
    cfg = load_config("smoke/vdsr-ode")
    key = weights_hash(cfg)
    assert cfg["recipe"] == LEGACY_VALUES["recipe"]
    assert weights_hash({**cfg, "recipe": "2"}) != key  # a new training procedure
    assert weights_hash({**cfg, "seed": 1}) != key
    assert weights_hash({**cfg, "lr": cfg["lr"] / 2}) != key
    # a setting added later, at the value that reproduces the earlier training, changes nothing
    before = {k: v for k, v in cfg.items() if k != "recipe"}
    assert weights_hash(before) == key
    assert resume_mismatch(before, cfg) == []  # and a checkpoint from before it resumes


@pytest.mark.parametrize("name", sorted(KEY_VALUES))
def test_composed_config_key_values(name: str) -> None:
    cfg = load_config(name)
    profile, model = name.split("/")
    patch, batch, steps, lr, halve, solver, recompute = KEY_VALUES[name]
    assert cfg["model"]["preset"] == profile
    assert (cfg["patch_size"], cfg["batch_size"], cfg["max_steps"]) == (patch, batch, steps)
    assert (cfg["lr"], cfg["lr_halve_every"], cfg["checkpoint_recompute"]) == (lr, halve, recompute)
    if solver is not None:
        assert (cfg["train_solver"]["method"], cfg["train_solver"]["step_size"]) == solver
        if profile == "paper":  # one RK4 step from t0 to 1 (issue 9)
            assert cfg["train_solver"]["grid"] == "one-step"
        assert cfg["objective"] == ("path" if model.endswith("-path") else "endpoint")
    if profile == "paper":
        assert cfg["data"] == ["DIV2K"] and cfg["val"]["n_images"] == 5
    if model.startswith("rdn-fixed-x"):
        scale = float(model[-1])
        assert cfg["scales"] == [scale] and cfg["model"]["scale"] == int(scale)
    elif "fixed" not in model and profile != "smoke":
        assert cfg["scales"] == [round(1.1 + 0.1 * k, 1) for k in range(30)]


def test_deep_merge_and_overrides() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert deep_merge(base, {"a": {"b": 5}, "d": [2]}) == {"a": {"b": 5, "c": 2}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}  # a copy
    # an override replaces the whole value at its key, mappings included
    assert apply_overrides(base, {"a": {"b": 7}}) == {"a": {"b": 7}, "d": [1]}
    assert apply_overrides(base, {"a.c": 9})["a"] == {"b": 1, "c": 9}
    with pytest.raises(ConfigError, match="unknown key 'x'"):
        apply_overrides(base, {"x.y": 1})  # without a schema the parent must exist
    assert parse_set(["lr=1e-3", "val.every=5"]) == {"lr": "1e-3", "val.every": 5}


def test_overrides_are_checked() -> None:
    cfg = load_config("smoke/vdsr-ode", ["lr=1e-3", "val.every=5", "train_solver.steps=2"])
    assert cfg["lr"] == 1e-3 and cfg["val"]["every"] == 5 and cfg["val"]["n_images"] == 1
    assert cfg["train_solver"] == {"method": "euler", "step_size": 0.5, "steps": 2}
    # replacing a mapping keeps DEFAULTS for the keys it leaves out
    assert load_config("smoke/vdsr-ode", {"val": {"every": 3}})["val"] == {
        **DEFAULTS["val"],
        "every": 3,
    }
    for bad, name in (
        (["nosuch.key=3"], "nosuch"),
        (["val.evrey=3"], "val.evrey"),
        (["lr=abc"], "lr"),
        (["max_steps=1.5"], "max_steps"),
        (["val=3"], "val"),
        (["checkpoint_recompute=maybe"], "checkpoint_recompute: expected one of false, true"),
        (["checkpoint_recompute=1"], "checkpoint_recompute"),
    ):
        with pytest.raises(TrainError, match=name):
            load_config("smoke/vdsr-ode", bad)
    for value in (False, True, "step", "eval"):
        override = [f"checkpoint_recompute={str(value).lower()}"]
        assert load_config("smoke/vdsr-ode", override)["checkpoint_recompute"] == value
    with pytest.raises(TrainError, match="unknown key 'lr_halve'"):
        load_config({"model": {"name": "vdsr-ode"}, "lr_halve": 3})


def _cli(*args: str) -> tuple[int, str]:
    """``python ARGS`` in a new process: (exit status, stderr)."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stderr


def _in_process(main, capsys, *argv: str) -> tuple[int, str]:
    """``main(argv)`` of a command, in this process (no new torch import): (status, stderr)."""
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err


def _one_line_exit_2(result: tuple[int, str], *needles: str) -> None:
    status, stderr = result
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_train_cli_refuses_bad_configs(tmp_path: Path, capsys) -> None:
    from odesr.train import main

    out = str(tmp_path / "run")
    # the process itself once: `python -m odesr.train` exits 2 with the one line, no traceback
    proc = _cli("-m", "odesr.train", "smoke/vdsr-ode", "--set", "lr=abc", "--out", out)
    _one_line_exit_2(proc, "lr", "abc")
    train = functools.partial(_in_process, main, capsys)
    _one_line_exit_2(train("smoke/vdsr-ode", "--set", "nosuch.key=3", "--out", out), "nosuch")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {name: vdsr-ode\nlr: [1,\n")
    _one_line_exit_2(train(str(broken), "--out", out), "broken.yaml", "YAML")
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: {name: vdsr-ode}\nbatchsize: 3\n")
    _one_line_exit_2(train(str(typo), "--out", out), "batchsize")
    _one_line_exit_2(train("smoke/nosuch", "--out", out), "'nosuch'")
    assert not (tmp_path / "run").exists()


def _experiment_file(tmp_path: Path, **change) -> Path:
    doc = {
        "name": "tiny",
        "models": {"bicubic": {"model": {"name": "bicubic"}}},
        "sweeps": {"main": {"models": ["bicubic"], "datasets": {"Set5": "2"}}},
    }
    doc.update(change)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"modles": {}}, "modles"),
        ({"models": {"bicubic": {"model": {"name": "bicubic"}, "limt": 2}}}, "limt"),
        (
            {"sweeps": {"main": {"models": ["bicubic", "nosuch"], "datasets": {"Set5": "2"}}}},
            "nosuch",
        ),
        ({"profiles": {"smoke": {"sweeps.mian.limit": 2}}}, "sweeps.mian"),
        ({"profiles": {"smoke": {"models.bicubic.limt": 2}}}, "limt"),
    ],
)
def test_experiment_refuses_unknown_keys(tmp_path: Path, change: dict, needle: str) -> None:
    path = _experiment_file(tmp_path, **change)
    with pytest.raises(ExperimentError, match=needle):
        load_experiment(path)


def test_bench_cli_refuses_bad_experiments(tmp_path: Path, capsys) -> None:
    from bench.__main__ import main

    res = str(tmp_path / "res")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nmodels: {bicubic: {model: {name: bicubic}\n")
    # the process itself once: `python -m bench run` exits 2 with the one line, no traceback
    proc = _cli("-m", "bench", "run", str(broken), "--profile", "smoke", "--results", res)
    _one_line_exit_2(proc, "broken.yaml", "YAML syntax error")
    bench_run = functools.partial(_in_process, main, capsys, "run")
    unknown = _experiment_file(
        tmp_path, sweeps={"main": {"models": ["bicubic", "nosuch"], "datasets": {"Set5": "2"}}}
    )
    proc = bench_run(str(unknown), "--profile", "smoke", "--results", res)
    _one_line_exit_2(proc, "unknown model 'nosuch'")
    bad_train = _experiment_file(
        tmp_path,
        models={"m": {"config": "vdsr-ode", "train": {"lr": "abc"}}},
        sweeps={"main": {"models": ["m"], "datasets": {"Set5": "2"}}},
    )
    proc = bench_run(str(bad_train), "--profile", "smoke", "--results", res)
    _one_line_exit_2(proc, "'m'", "lr")
    assert not (tmp_path / "res").exists()


def test_repo_experiments_resolve_for_every_profile() -> None:
    for name in ("table1", "solver-ablation", "extrapolation", "ci-smoke", "claims"):
        exp = load_experiment(name)
        for profile in ("smoke", "cpu", "paper"):
            assert exp.units(Profile(profile)), (name, profile)
    claims = load_experiment("claims")
    euler = next(u for u in claims.units(Profile("cpu")) if u.model.id == "vdsr-ode-euler4")
    assert euler.model.train_cfg["train_solver"] == {
        "method": "euler",
        "steps": 4,
        "step_size": None,
    }
    assert euler.solver == {"method": "euler", "steps": 4}
    t2 = [u for u in load_experiment("claims").units(Profile("smoke")) if u.sweep == "table2"]
    assert {u.dataset for u in t2} == {"Set5", "B100"} and {u.limit for u in t2} == {2}
