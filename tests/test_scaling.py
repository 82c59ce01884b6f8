"""Budget ladders: the experiment format's ``train_steps``, the gap-slope estimator of
:mod:`bench.scaling` (exact on noise-free data, coverage by simulation) and the smoke ladder
end to end."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.experiment import ExperimentError, ladder_base, load_experiment
from bench.ladder_fit import crossed, fit_ladder
from bench.profile import Profile
from bench.scaling import (
    CONSISTENT,
    FIT_COLUMNS,
    UNDECIDED,
    UNREACHABLE,
    ladder_table,
)

STEPS = [500, 1000, 2000, 4000]


def _ladder_doc(**model: object) -> dict:
    entry = {"config": "vdsr+t", "train_steps": [5, 10]}
    entry.update(model)
    return {
        "name": "ladder-test",
        "models": {"vdsr+t": entry, "bicubic": {"model": {"name": "bicubic"}}},
        "sweeps": {"main": {"models": ["bicubic", "vdsr+t"], "datasets": {"Set5": "2"}}},
    }


# ----------------------------------------------------------------------------- format


def test_train_steps_expands_into_one_model_per_budget() -> None:
    exp = load_experiment(_ladder_doc())
    assert exp.model_ids(Profile("smoke")) == ["vdsr+t@5", "vdsr+t@10", "bicubic"]
    assert exp.model_ids() == exp.model_ids(Profile("smoke"))  # as written (no smoke overrides)
    units = exp.units(Profile("smoke"))
    assert sorted(u.model.id for u in units) == ["bicubic", "vdsr+t@10", "vdsr+t@5"]
    steps = {u.model.id: u.model.train_cfg["max_steps"] for u in units if u.model.trained}
    assert steps == {"vdsr+t@5": 5, "vdsr+t@10": 10}
    # each budget its own checkpoint; --models with the entry's id selects every budget
    assert len({u.model.key for u in units if u.model.trained}) == 2
    assert {u.model.id for u in exp.units(Profile("smoke"), ["vdsr+t"])} == {
        "vdsr+t@5",
        "vdsr+t@10",
    }
    assert ladder_base("vdsr+t@10") == "vdsr+t" and ladder_base("vdsr+t") == "vdsr+t"


@pytest.mark.parametrize(
    "model, needle",
    [
        ({"train_steps": []}, "distinct positive integers"),
        ({"train_steps": [5, 5]}, "distinct positive integers"),
        ({"train_steps": [0]}, "distinct positive integers"),
        ({"train_steps": 5}, "distinct positive integers"),
        ({"train": {"max_steps": 7}}, "both set the budget"),
    ],
)
def test_bad_ladders_are_refused_on_load(model: dict, needle: str) -> None:
    with pytest.raises(ExperimentError, match=needle):
        load_experiment(_ladder_doc(**model))


def test_cpu_ladder_reuses_the_table1_and_claims_checkpoints() -> None:
    """At cpu the 4k rungs of vdsr-ode and vdsr+t are table1's configs (same weights, the
    scale-weighted recipe); the depth control takes vdsr+t's weighting."""
    scaling, table1 = load_experiment("scaling"), load_experiment("table1")
    plans = {p.id: p for p in scaling.all_plans(Profile("cpu")) if p.seed == 0}
    for ladder_id, table1_id in {"vdsr-ode@4000": "vdsr-ode", "vdsr+t@4000": "vdsr+t"}.items():
        assert plans[ladder_id].key == table1.model_plans(table1_id, Profile("cpu"), 0)[0].key
    assert plans["vdsr-ode@4000"].train_cfg["scale_weight"] == "inv_sqrt_span"
    for rung in ("vdsr+t@500", "vdsr+t@16000", "vdsr+t-repeat4@500", "vdsr+t-repeat4@4000"):
        assert plans[rung].train_cfg["scale_weight"] == "inv_residual", rung
    units = scaling.units(Profile("cpu"))
    assert {u.model.seed for u in units} == {0, 1}
    assert {u.limit for u in units} == {20}
    assert sorted({u.scale for u in units}) == [1.1, 1.2, 1.55, 2, 2.45, 3, 3.35, 4]
    rungs = {ladder_base(u.model.id): set() for u in units}
    for u in units:
        rungs[ladder_base(u.model.id)].add(u.model.train_cfg["max_steps"])
    assert rungs == {
        "vdsr-ode": {500, 1000, 2000, 4000},
        "vdsr+t": {500, 1000, 2000, 4000, 8000, 16000},
        "vdsr+t-repeat4": {500, 1000, 2000, 4000},
    }


def test_scaling_resolves_for_every_profile() -> None:
    exp = load_experiment("scaling")
    for profile in ("smoke", "cpu", "paper"):
        units = exp.units(Profile(profile))
        assert units and len({u.key for u in units}) == len(units), profile
        top = max(
            u.model.train_cfg["max_steps"] for u in units if ladder_base(u.model.id) == "vdsr-ode"
        )
        assert top == {"smoke": 20, "cpu": 4000, "paper": 600_000}[profile]


# ----------------------------------------------------------------------------- estimator


def _truth(n_s: int, n_i: int, steps: list[int], slope: float, quad: float = 0.0) -> np.ndarray:
    x = np.log2(np.asarray(steps, dtype=float))
    rng = np.random.default_rng(3)
    level = rng.normal(0, 1, (n_s, 1, 1)) + rng.normal(0, 1, (1, n_i, 1))  # intercepts only
    return 0.1 + level + slope * x[None, None, :] + quad * x[None, None, :] ** 2


def test_noise_free_ladder_is_recovered_exactly() -> None:
    d = _truth(2, 20, STEPS, slope=-0.03)
    fit = fit_ladder(d, STEPS, target_steps=600_000)
    assert fit.slope.estimate == pytest.approx(-0.03, abs=1e-12)
    assert (fit.slope.low, fit.slope.high) == pytest.approx((-0.03, -0.03), abs=1e-9)
    want = float(d.mean(axis=(0, 1))[0] - 0.03 * (math.log2(600_000) - math.log2(500)))
    assert fit.forecast.estimate == pytest.approx(want, abs=1e-9)
    assert fit.curvature is not None and fit.curvature.estimate == pytest.approx(0, abs=1e-12)
    # the pooled least-squares slope of the rung means is the mean of the cell slopes
    x = np.log2(STEPS)
    noisy = d + np.random.default_rng(0).normal(0, 0.2, d.shape)
    ols = np.polyfit(x, noisy.mean(axis=(0, 1)), 1)[0]
    assert fit_ladder(noisy, STEPS).slope.estimate == pytest.approx(ols, abs=1e-12)


def test_curvature_is_recovered_on_a_quadratic() -> None:
    fit = fit_ladder(_truth(3, 5, STEPS, slope=0.1, quad=-0.02), STEPS)
    assert fit.curvature.estimate == pytest.approx(-0.02, abs=1e-12)
    assert fit_ladder(_truth(3, 5, STEPS[:2], slope=0.1), STEPS[:2]).curvature is None


def _simulate(rng: np.random.Generator, n_s: int, n_i: int, slope: float) -> np.ndarray:
    """Crossed seeds x images x rungs: seed and image intercepts and slopes, a seed x rung
    effect (each rung its own training run) and cell noise."""
    x = np.log2(np.asarray(STEPS, dtype=float))
    xc = (x - x.mean())[None, None, :]
    seed = rng.normal(0, 0.3, (n_s, 1, 1)) + rng.normal(0, 0.04, (n_s, 1, 1)) * xc
    image = rng.normal(0, 0.5, (1, n_i, 1)) + rng.normal(0, 0.03, (1, n_i, 1)) * xc
    run = rng.normal(0, 0.05, (n_s, 1, len(STEPS)))
    noise = rng.normal(0, 0.05, (n_s, n_i, len(STEPS)))
    return slope * x[None, None, :] + seed + image + run + noise


def test_slope_interval_covers_near_95_percent() -> None:
    """5 seeds x 20 images x 4 rungs, 300 simulated ladders: the two-way t interval and the
    reported one (the wider of it and the crossed bootstrap) cover the true slope 90-99%."""
    rng = np.random.default_rng(2024)
    hits_t = hits = 0
    n = 300
    for _ in range(n):
        fit = fit_ladder(_simulate(rng, 5, 20, slope=0.05), STEPS, n_boot=400)
        hits_t += fit.slope.t_low <= 0.05 <= fit.slope.t_high
        hits += fit.slope.low <= 0.05 <= fit.slope.high
    assert 0.90 <= hits_t / n <= 0.99, hits_t / n
    assert 0.90 <= hits / n <= 0.99, hits / n


def test_crossed_interval_edge_cases() -> None:
    one_seed = crossed(np.array([[1.0, 2.0, 3.0, 4.0]]))
    assert one_seed.df == 3 and one_seed.t_low < 2.5 < one_seed.t_high
    single = crossed(np.array([[1.5]]))
    assert single.estimate == 1.5 and math.isnan(single.low) and single.method == "none"


# ----------------------------------------------------------------------------- data


def _rows(factor_b: int = 1) -> pd.DataFrame:
    out = []
    for model, steps in (("a", [10, 20, 40]), ("b", [10, 20, 40, 80, 160])):
        for n in steps:
            for seed in ("0", "1"):
                for image in ("i1", "i2", "i3"):
                    for scale in (2.0, 3.0, 1.2):
                        gap = 0.1 * math.log2(n) if model == "a" else 0.0
                        out.append(dict(model=f"{model}@{n}", train_steps=str(n), seed=seed,
                                        image=image, scale=scale, psnr=30.0 + gap))  # fmt: skip
    return pd.DataFrame(out)


def test_ladder_table_pairs_seeds_and_maps_the_compute_factor() -> None:
    rows = _rows()
    d, steps, seeds, images, used = ladder_table(rows, "a", "b", 1, [2, 3, 4])
    assert steps == [10, 20, 40] and seeds == ["0", "1"] and images == ["i1", "i2", "i3"]
    assert used == [2.0, 3.0]  # x4 is in no row
    assert d.shape == (2, 3, 3)
    assert np.allclose(d[:, :, 0], 0.1 * math.log2(10))
    d4, steps4, *_ = ladder_table(rows, "a", "b", 4, [2, 3])
    assert steps4 == [10, 20, 40]  # b at 40, 80, 160: its psnr does not depend on steps
    assert np.allclose(d4, d)
    # a missing cell drops the incomplete rung, not the whole ladder
    holed = rows.drop(rows[(rows["model"] == "a@40") & (rows["image"] == "i2")].index)
    d2, steps2, *_ = ladder_table(holed, "a", "b", 1, [2, 3])
    assert steps2 == [10, 20] and d2.shape == (2, 3, 2)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_scaling_smoke_end_to_end(tmp_path: Path, data_root, reference) -> None:
    """`bench run scaling --profile smoke` trains the tiny ladder (2 seeds), the report writes
    scaling-fit.csv / .md / .png with verdicts that follow the forecast intervals."""
    from bench.report import write_report
    from bench.runner import run_experiment

    kw = dict(data_root=str(data_root))
    profile = Profile("smoke", tmp_path / "res", tmp_path / "ck")
    summary = run_experiment(
        "scaling", profile, device="cpu", progress=False, log=lambda m: None, **kw
    )
    assert summary.done == summary.planned == 44
    write_report(
        "scaling", profile, log=lambda m: None, paper_tables=reference / "paper_tables.csv", **kw
    )
    out = tmp_path / "res" / "smoke"
    rows = pd.read_csv(out / "scaling.csv", keep_default_na=False, dtype=str)
    assert set(rows["train_steps"]) == {"5", "10", "20", "40", "80"}
    assert (rows["model"].str.rsplit("@", n=1).str[1] == rows["train_steps"]).all()
    with open(out / "scaling-fit.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == FIT_COLUMNS
        fits = list(reader)
    assert [(r["comparison"], r["scales"]) for r in fits] == [
        (c, s)
        for c in ("vdsr-ode - vdsr+t", "vdsr-ode - vdsr+t (4x steps)", "vdsr-ode - vdsr+t-repeat4")
        for s in ("x2", "x1.2")
    ]
    paper = pd.read_csv(reference / "paper_tables.csv", keep_default_na=False)
    t1 = paper[paper["table"] == "table1"].set_index(["method", "scale"])["psnr"]
    for r in fits:
        assert r["rungs"] == "5 10 20" and (r["n_seeds"], r["n_images"]) == ("2", "2")
        scale = float(r["scales"][1:])
        margin = t1["vdsr (ours)", scale] - t1["VDSR+t", scale]
        assert float(r["paper_margin"]) == pytest.approx(margin, abs=1e-3)
        low, high = float(r["forecast_low"]), float(r["forecast_high"])
        assert low <= float(r["forecast_600k"]) <= high
        if r["curvature_p"] and float(r["curvature_p"]) < 0.05:
            assert r["verdict"] == UNDECIDED
        else:
            assert r["verdict"] == (CONSISTENT if high >= margin else UNREACHABLE)
    md = (out / "scaling.md").read_text()
    assert "## Cost of each rung" in md and "extrapolation" in md
    assert (out / "scaling.png").stat().st_size > 10_000
    # a clone without the checkpoints reports the same: training seconds kept beside the report
    assert "| not recorded |" not in md and (out / "scaling-train-seconds.csv").is_file()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".csv")}
    write_report(
        "scaling",
        Profile("smoke", tmp_path / "res", tmp_path / "no-checkpoints"),
        log=lambda m: None,
        paper_tables=reference / "paper_tables.csv",
        data_root=str(data_root),
    )
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".csv")}
    assert [n for n in before if before[n] != after.get(n)] == []
