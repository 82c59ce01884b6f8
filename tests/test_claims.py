"""Issue 10: seeds in experiments, paired bootstrap intervals (bench/stats.py), the claims report,
rows shared across experiments, and the depth control (+t net applied k times).

References are independent of the code under test: hand-computed differences, the normal
approximation of the bootstrap interval of a mean, the paper's tables read directly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.claims import CLAIM_COLUMNS, judge
from bench.experiment import ExperimentError, load_experiment
from bench.profile import Profile
from bench.results import SharedRows, share_key
from bench.runner import run_experiment

# ----------------------------------------------------------------------------- stats
# the intervals themselves and Holm's step-down: tests/test_stats.py


# ----------------------------------------------------------------------------- claims


def _claims_exp(claims: list[dict]) -> dict:
    models = {m: {"model": {"name": "bicubic"}} for m in ("ode", "plus", "bic")}
    models["ode"]["paper"] = "vdsr (ours)"
    models["plus"]["paper"] = "VDSR+t"
    return {
        "name": "claims-test",
        "models": models,
        "sweeps": {"main": {"models": list(models), "datasets": {"B100": "2,4,5,6"}}},
        "claims": claims,
    }


def _frame(values: dict[tuple, float]) -> pd.DataFrame:
    rows = [
        dict(model=m, sweep="main", dataset="B100", seed=str(seed), image=im, scale=s, psnr=v)
        for (m, seed, im, s), v in values.items()
    ]
    return pd.DataFrame(rows)


def test_claims_verdicts_and_the_extrapolation_delta_by_hand() -> None:
    rng = np.random.default_rng(0)
    values = {}
    for seed in (0, 1, 2):
        for im in ("a", "b", "c", "d"):
            for s in (2.0, 4.0, 5.0, 6.0):
                base = 30 - s + rng.normal(0, 0.3)
                values["bic", seed, im, s] = base - 1.0
                values["plus", seed, im, s] = base
                # the ODE: +0.25 at x2/x4; past x4 it loses 0.1 dB less per unit of scale
                values["ode", seed, im, s] = base + 0.25 + (0.1 * (s - 4) if s > 4 else 0)
    rows = _frame(values)
    claims = [
        {"claim": "ode > plus", "a": "ode", "b": "plus", "scales": "2,4", "paper_table": "t1"},
        {"claim": "plus > ode", "a": "plus", "b": "ode", "scales": "2,4,7"},
        {"claim": "graceful", "a": "ode", "b": "plus", "kind": "extrapolation", "scales": "5,6"},
        {"claim": "noisy", "a": "bic", "b": "plus"},
    ]
    exp = load_experiment(_claims_exp(claims))
    ref = pd.DataFrame(
        [
            dict(table="t1", dataset="B100", method=m, solver="", scale=s, psnr=v)
            for m, s, v in [("vdsr (ours)", 2.0, 31.0), ("VDSR+t", 2.0, 30.5), ("VDSR+t", 4.0, 25)]
        ]
    )
    out = {r["row"]["claim"]: r["row"] for r in judge(exp, Profile("smoke"), rows, ref, n_boot=500)}
    assert list(out["ode > plus"]) == CLAIM_COLUMNS
    first = out["ode > plus"]
    assert first["scales"] == "x2 x4" and first["verdict"] == "holds"
    assert float(first["ours_delta"]) == pytest.approx(0.25, abs=1e-9)
    assert float(first["ci_low"]) == pytest.approx(0.25, abs=1e-9)
    assert first["paper_delta"] == "0.50"  # only x2 has both methods in the paper's table
    assert (first["n_images"], first["n_seeds"]) == (4, 3)
    assert out["plus > ode"]["verdict"] == "fails" and out["plus > ode"]["scales"] == "x2 x4"
    # drop of (plus - bic) from x4 to x5 and x6 minus that of (ode - bic): (0.1 + 0.2) / 2
    graceful = out["graceful"]
    assert float(graceful["ours_delta"]) == pytest.approx(0.15, abs=1e-9)
    assert graceful["verdict"] == "holds" and graceful["paper_delta"] == ""
    assert float(out["noisy"]["ours_delta"]) == pytest.approx(-1.0, abs=1e-9)
    assert first["dataset"] == "B100" and first["verdict_holm"] == "holds"
    assert first["estimator"] in ("two-way t (Satterthwaite)", "crossed bootstrap")


def test_claims_holm_column_by_hand() -> None:
    """One seed, four images: ode - plus = 1, 2, 3, 4 (t = 2.5 / (1.291 / 2) = 3.873 on 3 df,
    p = 0.0305: holds alone), bic - plus = 2 everywhere (p ~ 0), bic - ode = 1, 0, -1, -2
    (p = 0.49). Holm over the 3 rows: 0 <= 0.05/3, then 0.0305 > 0.05/2 stops: only the
    constant row keeps its verdict."""
    values = {}
    for k, im in enumerate("abcd"):
        values["plus", 0, im, 2.0] = 30.0
        values["ode", 0, im, 2.0] = 31.0 + k
        values["bic", 0, im, 2.0] = 32.0
    claims = [
        {"claim": "ode > plus", "a": "ode", "b": "plus", "scales": "2"},
        {"claim": "bic > plus", "a": "bic", "b": "plus", "scales": "2"},
        {"claim": "bic > ode", "a": "bic", "b": "ode", "scales": "2"},
    ]
    exp = load_experiment(_claims_exp(claims))
    out = {
        r["row"]["claim"]: r["row"]
        for r in judge(exp, Profile("smoke"), _frame(values), pd.DataFrame())
    }
    moderate = out["ode > plus"]
    assert float(moderate["p_value"]) == pytest.approx(0.0305, abs=5e-4)
    assert moderate["estimator"] == "two-way t (Satterthwaite)" and moderate["t_df"] == "3.0"
    assert (moderate["verdict"], moderate["verdict_holm"]) == ("holds", "inconclusive")
    assert (out["bic > plus"]["verdict"], out["bic > plus"]["verdict_holm"]) == ("holds", "holds")
    assert out["bic > ode"]["verdict_holm"] == "inconclusive"
    assert float(out["bic > ode"]["p_value"]) == pytest.approx(0.49, abs=0.01)


def test_claims_are_checked_when_loaded() -> None:
    with pytest.raises(ExperimentError, match="unknown model 'nope'"):
        load_experiment(_claims_exp([{"claim": "x", "a": "ode", "b": "nope"}]))
    with pytest.raises(ExperimentError, match="unknown key 'scale'"):
        load_experiment(_claims_exp([{"claim": "x", "a": "ode", "b": "plus", "scale": "2"}]))
    bad = _claims_exp([])
    bad["sweeps"]["main"]["seeds"] = [0, "1"]
    with pytest.raises(ExperimentError, match="seeds: expected a list of non-negative"):
        load_experiment(bad)


# ----------------------------------------------------------------------------- seeds


TABLE1_TWIN = {"rdn-ode+": "rdn-ode-unweighted"}  # claims id -> table1 id, where they differ
CHOSEN = ("vdsr+t", "vdsr-ode", "rdn+t", "rdn-ode")  # the headline sweeps: the chosen recipe
UNWEIGHTED = ("vdsr+t-unweighted", "vdsr-ode-unweighted", "rdn-ode-unweighted", "meta-rdn-noskip")


def test_claims_models_reuse_table1_weights_and_seeds_add_checkpoints() -> None:
    claims, table1 = load_experiment("claims"), load_experiment("table1")
    for profile in ("smoke", "cpu", "paper"):
        t1 = {p.id: p.key for p in table1.all_plans(Profile(profile))}
        plans = claims.all_plans(Profile(profile))
        seed0 = {p.id: p.key for p in plans if p.seed in (0, None)}
        for model in (*CHOSEN, *UNWEIGHTED, "rdn-ode+", "vdsr-fixed"):
            # a claims id is table1's id with table1's config: the chosen recipe keeps the
            # plain ids, the paper's loss and Meta-SR's Meta-RDN the -unweighted / -noskip ids
            # (the same keys where the profile does not change the recipe: smoke, paper)
            twin = t1[TABLE1_TWIN.get(model, model)]
            assert seed0[model] == twin, (profile, model)
        for model in CHOSEN:  # the headline sweeps: 5 seeds
            seeds = {p.seed for p in plans if p.id == model}
            assert seeds == ({0, 1} if profile == "smoke" else {0, 1, 2, 3, 4}), model
        seeds = {p.seed for p in plans if p.id == "vdsr-ode-unweighted"}
        assert seeds == ({0, 1} if profile == "smoke" else {0, 1, 2, 3, 4})  # seeds5: 0-4
        seeds = {p.seed for p in plans if p.id == "rdn-ode-unweighted"}
        assert seeds == ({0, 1} if profile == "smoke" else {0, 1, 2})
        keys = [p.key for p in plans if p.id == "vdsr-ode"]
        assert len(set(keys)) == len(keys)
    cpu_keys = {p.id: p.key for p in claims.all_plans(Profile("cpu")) if p.seed == 0}
    paper_loss = ("vdsr+t-unweighted", "vdsr-ode-unweighted", "rdn+t", "rdn-ode-unweighted")
    for chosen, unweighted in zip(CHOSEN, paper_loss, strict=True):
        # at cpu the chosen recipe weights the scales: other weights than the paper's loss
        assert (cpu_keys[chosen] == cpu_keys[unweighted]) == (chosen == "rdn+t"), chosen
    units = claims.units(Profile("cpu"))
    # ... and the same evaluation solvers, so table1's rows are shared, not evaluated again
    t1_units = {(u.model.key, u.key[3]) for u in table1.units(Profile("cpu"))}
    for model in (*CHOSEN, *UNWEIGHTED, "rdn-ode+"):
        unit = next(u for u in units if u.model.id == model and u.model.seed == 0)
        assert (unit.model.key, unit.key[3]) in t1_units, model
    headline = [u for u in units if u.sweep == "headline" and u.model.id == "vdsr-ode"]
    assert {u.dataset for u in headline} == {"B100"} and {u.scale for u in headline} == {2, 3, 4}
    assert {u.subset for u in headline} == {"all"}, "the headline rows use every B100 image"
    assert {u.model.seed for u in units if u.model.id == "bicubic"} == {None}
    bic = [u for u in units if u.model.id == "bicubic"]
    # once per sweep and scale, not once per seed: main's 9 claim scales, seeds5's 6 B100 and
    # 3 Set5 scales (Table 2's bicubic row), small's x1.1/x1.2/x1.5, headline's x2/x3/x4 on all
    # 100 images, headline-small's x1.1/x1.2/x1.5 on 20
    assert len(bic) == len({u.key for u in bic}) == 9 + 9 + 3 + 3 + 3
    cpu = {p.id: p.train_cfg for p in claims.all_plans(Profile("cpu")) if p.seed == 0}
    ode_steps = cpu["vdsr-ode-unweighted"]["max_steps"]
    assert cpu["vdsr+t-compute"]["max_steps"] == 4 * ode_steps == 16000
    assert cpu["rdn+t-compute"]["max_steps"] == 4 * cpu["rdn-ode-unweighted"]["max_steps"] == 8000
    assert cpu["vdsr+t-repeat4"]["max_steps"] == cpu["vdsr-ode-unweighted"]["max_steps"]
    assert cpu["vdsr-ode-euler4"]["train_solver"]["steps"] == 4
    # solver-ablation's solver models are claims.yaml's (same checkpoints); its RK4 model is
    # table1's vdsr-ode at cpu and paper
    for profile in ("smoke", "cpu", "paper"):
        solver_ablation = load_experiment("solver-ablation")
        ablation = {p.id: p.key for p in solver_ablation.all_plans(Profile(profile))}
        mine = {p.id: p.key for p in claims.all_plans(Profile(profile)) if p.seed == 0}
        assert ablation["vdsr-ode-euler1"] == mine["vdsr-ode-euler1"]
        assert ablation["vdsr-ode-euler4"] == mine["vdsr-ode-euler4"]
        if profile != "smoke":
            assert ablation["vdsr-ode-rk4"] == mine["vdsr-ode-unweighted"]
    # no `seeds`: an experiment plans exactly what it planned before (the configs' own seed)
    assert {u.model.seed for u in table1.units(Profile("cpu")) if u.model.trained} == {0}


def test_train_all_trains_every_seed(monkeypatch, data_root) -> None:
    from bench.train_all import _plans

    monkeypatch.setenv("ODESR_DATA", str(data_root))  # the plan orders them by cost

    plans = _plans(["claims"], Profile("smoke"))
    assert {p.seed for p in plans if p.id == "rdn-ode"} == {0, 1}
    assert len({p.key for p in plans}) == len(plans)
    # --models: only these ids, in the given order, seeds ascending within one
    chosen = _plans(["claims"], Profile("smoke"), "rdn-ode, vdsr+t")
    assert [(p.id, p.seed) for p in chosen] == [
        ("rdn-ode", 0),
        ("rdn-ode", 1),
        ("vdsr+t", 0),
        ("vdsr+t", 1),
    ]
    with pytest.raises(ValueError, match="bicubic"):
        _plans(["claims"], Profile("smoke"), "rdn-ode,bicubic")  # bicubic is not trained
    # --seeds: only these training seeds (one seed of every model first on a small machine)
    first = _plans(["claims"], Profile("smoke"), "rdn-ode, vdsr+t", seeds="1")
    assert [(p.id, p.seed) for p in first] == [("rdn-ode", 1), ("vdsr+t", 1)]
    assert {p.seed for p in _plans(["claims"], Profile("smoke"), seeds="0")} == {0}
    with pytest.raises(ValueError, match="--seeds: 7 is not a training seed"):
        _plans(["claims"], Profile("smoke"), seeds="0,7")
    with pytest.raises(ValueError, match="comma-separated integers"):
        _plans(["claims"], Profile("smoke"), seeds="zero")


# ----------------------------------------------------------------------------- depth control


def test_depth_control_applies_the_tied_net_k_times() -> None:
    from odesr.models import build

    torch.manual_seed(0)
    spec = {"name": "vdsr+t", "preset": "smoke", "t_plane": "normalized"}
    once = build(spec).eval()
    four = build(dict(spec, repeat=4)).eval()
    four.load_state_dict(once.state_dict())  # the same parameters: tied weights
    assert four.nfe_per_call == 4 and four.spec["repeat"] == 4 and "repeat" not in once.spec
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = x
        for _ in range(4):
            ref = once(ref, 2.5)
        assert torch.allclose(four(x, 2.5), ref, atol=1e-6)
        zero = build(dict(spec, repeat=4, net={"zero_init_last": True})).eval()
        assert torch.equal(zero(x, 2.5), x)  # starts at its bicubic input
    with pytest.raises(ValueError, match="repeat must be a positive integer"):
        build(dict(spec, repeat=0))


# ----------------------------------------------------------------------------- shared rows


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(
            folder / f"im{i}.png"
        )
    return folder


def _bicubic_exp(name: str, model: str, data: Path, scales: str, limit: int | None) -> dict:
    return {
        "name": name,
        "models": {model: {"model": {"name": "bicubic"}}},
        "sweeps": {"main": {"models": [model], "datasets": {str(data): scales}, "limit": limit}},
    }


def test_rows_are_shared_across_experiments(tmp_path: Path, monkeypatch) -> None:
    import importlib

    evaluate = importlib.import_module("odesr.evaluate")  # `odesr.evaluate` is also a function
    data = _images(tmp_path / "imgs", 3)
    evaluated: list[tuple] = []
    real = evaluate.evaluate_images

    def counting(model, images, scales, settings=None, on_batch=None):
        evaluated.extend((m.name, float(s)) for m in images for s in scales)
        return real(model, images, scales, settings, on_batch)

    monkeypatch.setattr(evaluate, "evaluate_images", counting)
    kw = dict(device="cpu", progress=False, log=lambda m: None)
    profile = Profile("smoke", tmp_path / "res")
    run_experiment(_bicubic_exp("first", "bicubic", data, "2,3", 2), profile, **kw)
    assert sorted(evaluated) == sorted((f"im{i}", s) for i in (0, 1) for s in (2.0, 3.0))
    evaluated.clear()
    summary = run_experiment(_bicubic_exp("second", "bic", data, "2,3,4", 3), profile, **kw)
    # only what `first` did not evaluate: im2 at x2/x3 and every image at x4
    assert sorted(evaluated) == sorted(
        [("im2", 2.0), ("im2", 3.0)] + [(f"im{i}", 4.0) for i in range(3)]
    )
    assert summary.done == 3
    with open(tmp_path / "res" / "smoke" / "first.csv", newline="") as fh:
        first = {(r["image"], r["scale"]): r for r in csv.DictReader(fh)}
    with open(tmp_path / "res" / "smoke" / "second.csv", newline="") as fh:
        second = list(csv.DictReader(fh))
    assert len(second) == 9 and {r["model"] for r in second} == {"bic"}
    assert {r["experiment"] for r in second} == {"second"}
    for r in second:
        if (r["image"], r["scale"]) in first:
            assert r["psnr"] == first[r["image"], r["scale"]]["psnr"]
    # the ensemble is part of what identifies an evaluation
    row = dict(second[0])
    assert share_key(row) != share_key(dict(row, ensemble="x8"))


def test_rows_from_before_the_ensemble_column(tmp_path: Path) -> None:
    """An older results file has no ``ensemble`` column: the experiment that wrote it says
    which of its models are ensembles; files of no experiment are not used."""
    header = "model,weights,solver_opts,dataset,image,scale,protocol,y_rounding,psnr,ssim\n"
    body = "m,w1,-,B100,a,2.0,metasr,matlab,30.0,0.9\nm+,w1,-,B100,a,2.0,metasr,matlab,30.5,0.9\n"
    (tmp_path / "old.csv").write_text(header + body)
    (tmp_path / "stranger.csv").write_text(header + body.replace("30.", "20."))
    shared = SharedRows(tmp_path, lambda stem: {"m+": "x8", "m": ""} if stem == "old" else None)
    names = ("weights", "solver_opts", "dataset", "image", "scale", "protocol", "y_rounding")
    probe = dict(zip(names, ("w1", "-", "B100", "a", 2.0, "metasr", "matlab"), strict=True))
    assert shared.get(dict(probe, ensemble=""))["psnr"] == "30.0"
    assert shared.get(dict(probe, ensemble="x8"))["psnr"] == "30.5"
    assert len(shared.rows) == 2


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_claims_smoke_end_to_end(tmp_path: Path, data_root, reference) -> None:
    """`bench run claims --profile smoke` trains 2 seeds of tiny models, evaluates, and the
    report writes claims.csv with the promised columns and verdicts that follow the intervals."""
    from bench.report import write_report

    kw = dict(data_root=str(data_root))
    profile = Profile("smoke", tmp_path / "res", tmp_path / "ck")
    summary = run_experiment(
        "claims", profile, device="cpu", progress=False, log=lambda m: None, **kw
    )
    assert summary.done == summary.planned > 0
    write_report(
        "claims", profile, log=lambda m: None, paper_tables=reference / "paper_tables.csv", **kw
    )
    out = tmp_path / "res" / "smoke"
    with open(out / "claims.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == CLAIM_COLUMNS
        rows = list(reader)
    assert len(rows) == len(load_experiment("claims").raw["claims"])
    for r in rows:
        low, high = float(r["ci_low"]), float(r["ci_high"])
        assert low <= float(r["ours_delta"]) <= high
        expected = "holds" if low > 0 else "fails" if high < 0 else "inconclusive"
        assert r["verdict"] == expected, r
        assert (r["n_images"], r["n_seeds"]) == ("2", "2")
    # paper_delta from the paper's table 1 at the claim scales it reports (x2, x4 at smoke)
    paper = pd.read_csv(reference / "paper_tables.csv", keep_default_na=False)
    t1 = paper[(paper["table"] == "table1") & paper["scale"].isin([2.0, 4.0])]
    ode = t1[t1["method"] == "vdsr (ours)"].set_index("scale")["psnr"]
    plus = t1[t1["method"] == "VDSR+t"].set_index("scale")["psnr"]
    first = rows[0]
    assert first["scales"] == "x2 x4"  # Table 1's range only; x5 is in the row beyond it
    beyond = next(r for r in rows if r["claim"] == "vdsr-ODE > VDSR+t beyond the training range")
    assert beyond["scales"] == "x5" and beyond["paper_delta"] == ""
    assert float(first["paper_delta"]) == pytest.approx((ode - plus).mean(), abs=0.006)
    md = (out / "claims.md").read_text()
    assert md.index("| claim | dataset | comparison |") < md.index("## vdsr-ODE > VDSR+t")
    assert "seed spread" in md
    # the per-image rows carry both training seeds (seed k of a is paired with seed k of b)
    evals = pd.read_csv(out / "claims-psnr.csv", keep_default_na=False, dtype={"seed": str})
    assert set(evals.loc[evals["model"] == "vdsr-ode", "seed"]) == {"0", "1"}
    assert set(evals.loc[evals["model"] == "bicubic", "seed"]) == {""}


def test_caption_names_the_seed_count_of_each_model_when_they_differ() -> None:
    """A partial run (one model at 3 seeds, its twin at 1) must not read as a 3-seed mean."""
    from bench.report import caption

    exp = load_experiment("claims")
    row = dict(dataset="B100", n=10, subset="first 10", device="cpu:x86_64x1")
    summary = pd.DataFrame(
        [dict(row, model="vdsr+t", seeds=3), dict(row, model="vdsr-ode", seeds=1)]
    )
    text = caption(exp, Profile("cpu"), "What", summary, ["vdsr+t", "vdsr-ode"])
    assert "then over the seeds (vdsr+t: 3, vdsr-ode: 1)" in text
    same = summary.assign(seeds=3)
    assert "then over the seeds (3)." in caption(
        exp, Profile("cpu"), "What", same, ["vdsr+t", "vdsr-ode"]
    )
    one = summary.assign(seeds=1)
    assert "mean over images." in caption(exp, Profile("cpu"), "What", one, ["vdsr+t", "vdsr-ode"])


def test_claims_md_names_the_devices_of_its_rows() -> None:
    import pandas as pd

    from bench.claims import _devices

    rows = pd.DataFrame(
        [dict(model="a", seed="0", device="cpu:x86_64x1")] * 3
        + [dict(model="b", seed=s, device="cuda:H100") for s in ("2", "1")]
    )
    assert _devices(rows) == (
        "Rows evaluated on cpu:x86_64x1 (3 rows), cuda:H100 (2 rows: b seed 1, 2).\n"
    )


def test_claims_md_names_where_the_weights_were_trained(tmp_path: Path) -> None:
    """Read back from the published weights' ``trained_on``: a machine change mid-run names its
    step; weights without a record, or not published, say so."""
    from bench.claims import _trained_on
    from odesr.checkpoints import save_checkpoint
    from odesr.models import build

    net = build({"name": "vdsr+t", "preset": "smoke"})
    gpu = {"device": "cuda:H100", "torch": "2.11", "world": 1, "tf32": False}
    cpu = {"device": "cpu:x86_64x1", "torch": "2.13", "world": 1, "tf32": False}
    save_checkpoint(tmp_path / "k1.pt", net, trained_on=[{"from_step": 0, **gpu}])
    save_checkpoint(tmp_path / "k2.pt", net, trained_on=[{"from_step": 0, **gpu}])
    save_checkpoint(
        tmp_path / "k3.pt", net, trained_on=[{"from_step": 0, **cpu}, {"from_step": 50, **gpu}]
    )
    save_checkpoint(tmp_path / "k4.pt", net)
    rows = pd.DataFrame(
        [dict(model="a", seed=1, weights="k1"), dict(model="a", seed=2, weights="k2")] * 2
        + [dict(model="b", seed=0, weights="k3"), dict(model="c", seed=0, weights="k4")]
        + [dict(model="d", seed=0, weights="k5"), dict(model="bicubic", seed="", weights="{}")]
    )
    assert _trained_on(rows, tmp_path) == (
        "Where the weights were trained (their `trained_on`): "
        "cuda:H100 (torch 2.11): a seeds 1, 2. "
        "cpu:x86_64x1 (torch 2.13) from step 0 then cuda:H100 (torch 2.11) from step 50: b seed 0. "
        "not recorded (trained before it was): c seed 0. "
        "not published (no record here): d seed 0.\n"
    )


def test_caption_names_each_subset_of_a_model_evaluated_on_several() -> None:
    """A model in two sweeps with different image subsets is named under each, with that
    subset's image count (not the first subset's name with the largest count)."""
    from bench.report import caption

    exp = load_experiment("claims")
    row = dict(dataset="B100", device="cpu:x86_64x1", seeds=5)
    summary = pd.DataFrame(
        [
            dict(row, model="rdn+t", n=100, subset="all"),
            dict(row, model="rdn+t", n=10, subset="first 10"),
            dict(row, model="rdn-ode", n=100, subset="all"),
        ]
    )
    text = caption(exp, Profile("cpu"), "What", summary, ["rdn+t", "rdn-ode"])
    assert "rdn+t, rdn-ode: all 100 images; rdn+t: first 10 images (10)" in text
    assert "first 10 images (100)" not in text
