"""Committed results hold one recipe per model: every row of an experiment's results CSV under
``results/cpu`` was made with the weights, and on the image subset, that the experiment resolves
for the cpu profile now, so a plain pandas mean by (model, dataset, scale) is the committed
report's number."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from bench.experiment import dataset_label, load_experiment
from bench.profile import Profile
from bench.report import load_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
PROFILE = Profile("cpu", RESULTS)
EXPERIMENTS = ("table1", "extrapolation", "claims", "solver-ablation")
SCALES_TABLES = {"table1": "table1.md", "extrapolation": "extrapolation.md"}  # kind: scales


def _rows(name: str) -> pd.DataFrame:
    exp = load_experiment(name)
    path = PROFILE.results_csv(exp.name)
    assert path.is_file(), f"no committed results {path}"
    return load_results(path)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_committed_row_is_of_the_current_recipe(name: str) -> None:
    exp = load_experiment(name)
    df = _rows(name)
    units = {
        (u.model.id, u.model.key, dataset_label(u.dataset), u.subset) for u in exp.units(PROFILE)
    }
    stale = df[
        [
            (m, w, d, s) not in units
            for m, w, d, s in zip(
                df["model"], df["weights"], df["dataset"], df["subset"].fillna(""), strict=True
            )
        ]
    ]
    groups = stale.groupby(["model", "weights", "subset"]).size().to_dict() if len(stale) else {}
    assert stale.empty, f"{name}: rows of weights/subsets the experiment no longer names: {groups}"


def _scales_table(path: Path) -> dict[tuple[str, str, float], float]:
    """``{(model, dataset, scale): ours}`` from a ``scales`` table's Markdown (the ``ours`` rows
    under each ``### DATASET`` heading; a model cell reads ``id (paper label)``)."""
    out: dict[tuple[str, str, float], float] = {}
    dataset, scales, model = "", [], ""
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            dataset = line[4:].strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "method":
            scales = [float(c.lstrip("×")) for c in cells[2:]]
            continue
        model = cells[0].split(" (")[0] if cells[0] else model
        if len(cells) > 1 and cells[1] == "ours":
            for scale, cell in zip(scales, cells[2:], strict=True):
                if re.fullmatch(r"-?\d+\.\d+", cell):
                    out[model, dataset, scale] = float(cell)
    return out


@pytest.mark.parametrize("name", sorted(SCALES_TABLES))
def test_plain_group_means_are_the_committed_report(name: str) -> None:
    df = _rows(name)
    means = df.groupby(["model", "dataset", "scale"])["psnr"].mean()
    shown = _scales_table(PROFILE.results / SCALES_TABLES[name])
    assert len(shown) > 50  # the table was read
    wrong = {
        key: (value, round(float(means[key]), 2))
        for key, value in shown.items()
        if not math.isclose(round(float(means[key]), 2), value, abs_tol=1e-9)
    }
    assert not wrong, f"{name}: report vs plain mean over the committed rows: {wrong}"


def test_the_headline_claims_use_every_b100_image_and_five_seeds() -> None:
    """The committed headline rows (the ODE models against their +t twins on the chosen recipe at
    the paper's scales x2/x3/x4, and at x1.1/x1.2/x1.5) are on all 100 B100 images and at least
    5 training seeds, and claims.csv says so (n_images, n_seeds) from the per-image rows."""
    claims = pd.read_csv(PROFILE.results / "claims.csv", dtype=str, keep_default_na=False)
    rows = _rows("claims")
    for comparison in ("vdsr-ode - vdsr+t", "rdn-ode - rdn+t"):
        for scales, sweep in (("x2 x3 x4", "headline"), ("x1.1 x1.2 x1.5", "headline-small")):
            head = claims[(claims["comparison"] == comparison) & (claims["scales"] == scales)]
            assert len(head) == 1, (comparison, scales)
            assert int(head["n_images"].iloc[0]) == 100, (comparison, scales)
            assert int(head["n_seeds"].iloc[0]) >= 5, (comparison, scales)
            for model in comparison.split(" - "):
                mine = rows[(rows["sweep"] == sweep) & (rows["model"] == model)]
                per_seed = mine.groupby("seed")["image"].nunique()
                assert len(per_seed) >= 5 and (per_seed == 100).all(), (model, per_seed.to_dict())


def test_every_b100_claim_row_uses_at_least_twenty_images() -> None:
    """Issue 23: the headline rows on all 100 B100 images, every other B100 row on at least the
    first 20 (Set5 rows on its 5), in claims.csv and in the per-image rows of every seed."""
    claims = pd.read_csv(PROFILE.results / "claims.csv", dtype=str, keep_default_na=False)
    b100 = claims[claims["dataset"] == "B100"]
    assert len(b100) >= 20 and (b100["n_images"].astype(int) >= 20).all(), b100[
        ["claim", "n_images"]
    ].to_string()
    assert (claims[claims["dataset"] == "Set5"]["n_images"].astype(int) == 5).all()
    rows = _rows("claims")
    per_unit = rows[rows["dataset"] == "B100"].groupby(["sweep", "model", "weights", "scale"])
    counts = per_unit["image"].nunique()
    assert (counts >= 20).all(), counts[counts < 20].head().to_string()
