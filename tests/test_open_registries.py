"""Open registries: a backbone registered from outside odesr (here, this test module) is one class
plus its config entry -- its ODE model ``<name>-ode`` trains, evaluates and is planned by
``bench plan``; solvers register the same way; every published checkpoint still loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bench.profile import Profile
from odesr import checkpoints, models, nets, solvers
from odesr.ode import solve

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = sorted((REPO / "results" / "cpu" / "weights").glob("*.pt")) + sorted(
    (REPO / "odesr" / "weights").glob("*.pt")
)


class ToyNet(nn.Module):
    """Two 3x3 convs: the smallest backbone that shows the contract."""

    def __init__(self, width: int = 4, in_ch: int = 4, out_ch: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_ch, 3, padding=1)
        )
        self.receptive_radius = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def toy():
    """``toy`` registered for one test, then removed (with the ``toy-ode`` model it made)."""
    nets.register_backbone("toy", presets={"smoke": {"width": 4}, "paper": {"width": 16}})(ToyNet)
    yield "toy"
    nets.BACKBONES.pop("toy", None)
    nets.PRESETS.pop("toy", None)
    models.MODELS.pop("toy-ode", None)


def test_a_registered_backbone_is_an_ode_model(toy) -> None:
    assert "toy" in nets.backbone_names()
    model = models.build({"name": "toy-ode", "preset": "smoke"})
    assert model.is_ode and models.is_ode("toy-ode")
    assert model.spec["name"] == "toy-ode" and model.spec["net"]["width"] == 4
    assert models.backbone_of(model.spec) == "toy"
    assert models.build(model.spec).spec == model.spec  # the spec rebuilds it
    with pytest.raises(ValueError, match="already registered"):
        nets.register_backbone("toy")(nets.VDSR)


def test_backbone_of_the_built_in_models() -> None:
    expect = {"vdsr-ode": "vdsr", "rdn-ode": "rdn", "vdsr+t": "vdsr", "rdn+t": "rdn"}
    expect |= {"meta-rdn": "rdn", "vdsr-fixed": "vdsr", "rdn-fixed": "rdn", "bicubic": None}
    assert {name: models.backbone_of({"name": name}) for name in expect} == expect


def test_toy_backbone_trains_evaluates_and_is_planned(toy, tmp_path: Path) -> None:
    import odesr
    from bench.cost_model import Costs
    from bench.experiment import load_experiment
    from bench.plan import format_plan, plan_experiment
    from odesr.train import load_config, train
    from tests.test_train import _data_root

    root = str(_data_root())
    # the config entry: the smoke profile's ODE settings with the toy model
    entry = {"model": {"name": "toy-ode", "preset": "smoke"}, "data": ["Set5"], "max_steps": 2}
    cfg = load_config("smoke/vdsr-ode", {**entry, "val": {"every": 0}, "checkpoint_every": 0})
    result = train(cfg, tmp_path / "run", device="cpu", data_root=root, progress=False)
    model = checkpoints.load(result["final"])
    assert model.spec["name"] == "toy-ode"
    table = odesr.evaluate(model, "Set5", [2.0], data_root=root, limit=1, device="cpu")
    assert len(table) == 1 and table["psnr"].iloc[0] > 10  # two steps: numbers mean nothing
    exp = load_experiment(
        {
            "name": "toy",
            "models": {"toy-ode": {"config": "smoke/vdsr-ode", "train": entry}},
            "sweeps": {"main": {"models": ["toy-ode"], "datasets": {"Set5": "2"}, "limit": 1}},
        }
    )
    train_rows, eval_rows = plan_experiment(exp, Profile("smoke"), root)
    assert [(r.model, r.backbone) for r in train_rows] == [("toy-ode", "toy")]
    assert train_rows[0].flops > 0 and [r.backbone for r in eval_rows] == ["toy"]
    assert "toy-ode" in format_plan(
        exp, Profile("smoke"), Costs.load(), root
    )  # priced: no costs entry


def test_a_registered_solver_solves(monkeypatch) -> None:
    def half_euler(func, ta, tb, y):  # two Euler half-steps: 2 evaluations per step
        mid = (ta + tb) / 2
        y = y + (mid - ta) * func(ta, y)
        return y + (tb - mid) * func(mid, y)

    monkeypatch.setitem(solvers.SOLVERS, "toy-euler2", solvers.Solver("toy-euler2", 2, half_euler))
    assert "toy-euler2" in solvers.solver_names()
    y0 = torch.ones(1, 1, 2, 2)
    sol = solve(lambda t, y: -y, y0, 2.0, method="toy-euler2", steps=4)
    assert sol.nfe == 8
    assert torch.allclose(sol.image, y0 * (1 + 0.125) ** 8)  # dy/dt = -y backwards from t = 2
    from odesr.ode import SolverSettings

    assert SolverSettings(method="toy-euler2", steps=3).nfe(2.0) == 6


def test_help_texts_list_the_solver_registry(monkeypatch) -> None:
    import argparse

    from odesr.arguments import upscale_arguments

    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside a name
    text = upscale_arguments(argparse.ArgumentParser()).format_help()
    assert all(name in text for name in solvers.solver_names())


@pytest.mark.parametrize("path", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_every_published_checkpoint_loads(path: Path) -> None:
    model = checkpoints.load(path)
    assert isinstance(model, nn.Module) and model.spec.get("name")
