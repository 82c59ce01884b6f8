"""The model registry: core code never imports the plug-in folders; models come from entry points;
load_model; declared model traits; SolverSettings (step counts checked by hand)."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from odesr import checkpoints, models
from odesr.ode import DEFAULT_SOLVER, SolverSettings

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = ("baselines", "bench")


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_core_never_names_the_plugin_folders():
    """odesr/ imports neither baselines nor bench, not even as a module-name string."""
    module_text = re.compile(r"\b(?:baselines|bench)(?:\.[A-Za-z_]\w*|:[A-Za-z_])")
    files = sorted((REPO / "odesr").rglob("*.py"))
    assert len(files) > 10
    offenders = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        for mod in _imported_modules(ast.parse(source)):
            if mod.split(".")[0] in PLUGIN_DIRS:
                offenders.append(f"{path.name}: import {mod}")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.strip()
                if text in PLUGIN_DIRS or module_text.search(text):
                    offenders.append(f"{path.name}: string {text[:60]!r}")
    assert offenders == []


def test_the_grep_catches_an_offender(tmp_path):
    """The check above is not vacuous: it flags both an import and a module-name string."""
    src = "import importlib\nimportlib.import_module('baselines.bicubic')\nfrom bench import x\n"
    tree = ast.parse(src)
    assert "bench" in _imported_modules(tree)
    assert any(
        isinstance(n, ast.Constant) and n.value == "baselines.bicubic" for n in ast.walk(tree)
    )


def test_baselines_come_from_entry_points():
    from importlib.metadata import entry_points

    declared = {ep.name for ep in entry_points(group=models.ENTRY_POINT_GROUP)}
    assert {"bicubic", "vdsr+t", "rdn+t", "meta-rdn", "vdsr-fixed", "rdn-fixed"} <= declared
    assert declared <= set(models.MODELS)


def _make_plugin(root: Path, dist: str, module: str, name: str) -> None:
    """An installed distribution in ``root``: a module and a dist-info declaring an entry point."""
    (root / f"{module}.py").write_text(
        textwrap.dedent(
            f'''
            from odesr.models import SRModel

            class Doubler(SRModel):
                """Nearest-neighbour x2 on the LR image (a user's model)."""

                input_kind = "lr"
                nfe_per_call = 0
                supported_scales = (2.0,)

                def __init__(self):
                    super().__init__()
                    self.spec = {{"name": "{name}"}}

                def forward(self, x, scale, size=None, **opts):
                    return x.repeat_interleave(2, -2).repeat_interleave(2, -1)
            '''
        )
    )
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{models.ENTRY_POINT_GROUP}]\n{name} = {module}:Doubler\n"
    )


def test_a_user_package_adds_a_model_through_an_entry_point(tmp_path, monkeypatch):
    _make_plugin(tmp_path, "user_sr_models", "user_sr_models_mod", "user-doubler")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(models.MODELS, "user-doubler", raising=False)
    monkeypatch.delitem(sys.modules, "user_sr_models_mod", raising=False)
    assert "user-doubler" not in models.MODELS
    try:
        model = checkpoints.load_model("user-doubler")
        assert type(model).__name__ == "Doubler" and model.supported_scales == (2.0,)
        lr = torch.arange(4.0).reshape(1, 1, 2, 2)
        out = model.super_resolve(lr, 2.0).image
        assert out.shape == (1, 1, 4, 4) and out[0, 0, 3, 3] == 3.0
        assert models.is_ode("user-doubler") is False
    finally:
        models.MODELS.pop("user-doubler", None)


def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path, monkeypatch):
    _make_plugin(tmp_path, "broken_sr", "broken_sr_mod", "broken-model")
    (tmp_path / "broken_sr_mod.py").write_text("raise ImportError('no such dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="broken-model"):
        models.load_plugins()
    with pytest.warns(UserWarning), pytest.raises(models.ModelError, match="unknown model"):
        checkpoints.load_model("broken-model")


def test_load_model_names_paths_and_bundled(tmp_path):
    assert checkpoints.load_model("bicubic").spec == {"name": "bicubic"}
    bundled = checkpoints.load_model(None)
    assert bundled.is_ode and bundled.spec["name"] == "vdsr-ode"
    # trained and evaluated with one RK4 step (the note stored with it says so)
    assert "rk4 steps 1" in checkpoints.load_checkpoint(checkpoints.BUNDLED_MODEL)[1]["note"]
    assert bundled.solver == SolverSettings("rk4", 1, None)
    assert SolverSettings.from_dict(bundled.spec["train_solver"]) == bundled.solver
    with pytest.raises(models.ModelError, match="unknown model 'nosuch'"):
        checkpoints.load_model("nosuch")
    with pytest.raises(models.ModelError, match="needs trained weights"):
        checkpoints.load_model("rdn-fixed")  # published per scale only (rdn-fixed-x2, ...)
    with pytest.raises(models.ModelError, match="no such file"):
        checkpoints.load_model(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(models.ModelError, match="empty file"):
        checkpoints.load_model(str(tmp_path / "empty.pt"))
    path = tmp_path / "m.pt"
    checkpoints.save_checkpoint(path, models.build({"name": "vdsr+t", "preset": "smoke"}))
    assert checkpoints.load_model(str(path)).spec["name"] == "vdsr+t"


@pytest.mark.parametrize(
    "name,ode,kind",
    [
        ("vdsr-ode", True, "upscaled"),
        ("rdn-ode", True, "upscaled"),
        ("bicubic", False, "upscaled"),
        ("vdsr+t", False, "upscaled"),
        ("meta-rdn", False, "lr"),
        ("vdsr-fixed", False, "lr"),
        ("rdn-fixed", False, "lr"),
    ],
)
def test_models_declare_their_traits(name, ode, kind):
    cls = models.model_class(name)
    assert models.is_ode(name) is ode and cls.is_ode is ode and cls.input_kind == kind


def test_supported_scales():
    assert models.build({"name": "rdn-fixed", "scale": 3, "preset": "smoke"}).supported_scales == (
        3.0,
    )
    assert models.model_class("vdsr-fixed").supported_scales == (2.0, 3.0, 4.0)
    assert models.model_class("vdsr-ode").supported_scales is None


def test_solver_settings_counts_by_hand():
    # the default: one rk4 step from t0 to 1 at any scale (a bare odeint call; issue 9)
    assert DEFAULT_SOLVER == SolverSettings("rk4", 1, None)
    assert DEFAULT_SOLVER.num_steps(4.0) == 1 and DEFAULT_SOLVER.nfe(4.0) == 4
    h01 = DEFAULT_SOLVER.replace(grid="h0.1")
    # x4 with h = 0.1: 30 steps of 4 stages; x1.25: ceil(2.5) = 3 steps
    assert h01.num_steps(4.0) == 30 and h01.nfe(4.0) == 120 and h01.steps is None
    assert h01.num_steps(1.25) == 3
    euler = DEFAULT_SOLVER.replace(method="euler", steps=5)
    assert euler.step_size is None and euler.nfe(3.3) == 5
    assert euler.replace(step_size=0.5).steps is None and euler.replace(step_size=0.5).nfe(2.2) == 3
    dopri = SolverSettings.from_dict({"method": "dopri5"})
    assert dopri.num_steps(2.0) is None and dopri.nfe(2.0) is None
    assert dopri.columns(2.0) == {
        "solver": "dopri5",
        "steps": "",
        "step_size": "",
        "rtol": 1e-3,
        "atol": 1e-4,
    }
    assert h01.columns(2.0)["steps"] == 10 and DEFAULT_SOLVER.columns(2.0)["steps"] == 1
    assert h01.label() == "rk4 h=0.1" and euler.label() == "euler n=5"


@pytest.mark.parametrize(
    "options,match",
    [
        ({"method": "heun"}, "unknown ODE method"),
        ({"steps": 0}, "steps must be"),
        ({"step_size": -1}, "step_size must be"),
        ({"stepsize": 0.1}, "unknown solver option"),
    ],
)
def test_solver_settings_refuse_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        SolverSettings.from_dict(options)


def test_checkpoint_spec_carries_its_solvers(tmp_path):
    model = models.build(
        {"name": "vdsr-ode", "preset": "smoke", "step_size": 0.5, "train_solver": {"steps": 2}}
    )
    path = tmp_path / "ode.pt"
    checkpoints.save_checkpoint(path, model)
    loaded = checkpoints.load_model(path)
    assert loaded.solver == SolverSettings("rk4", None, 0.5)
    assert loaded.spec["train_solver"]["steps"] == 2
    assert loaded.solver_settings({"method": "euler"}).step_size == 0.5
