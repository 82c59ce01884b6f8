"""Published weights by name (``results/cpu/weights/index.csv``, :mod:`odesr.published`) and what
``odesr eval`` leaves on disk (``--save-images``, no lock)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odesr.checkpoints import BUNDLED_MODEL, load_model
from odesr.cli import main
from odesr.models import ModelError
from odesr.published import INDEX_COLUMNS, WEIGHTS_ENV, find_published, read_index

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "results" / "cpu" / "weights"


def test_committed_index_matches_the_weights_files() -> None:
    """index.csv is what ``python -m bench.weights_index`` makes of the published files, the
    experiments and the committed results rows (regenerate it when one of them changes)."""
    from bench.profile import Profile
    from bench.weights_index import build_index, index_path, index_text

    cpu = Profile("cpu", REPO / "results")
    assert index_path(cpu).read_text(encoding="utf-8") == index_text(build_index(cpu)), (
        "results/cpu/weights/index.csv is stale: run python -m bench.weights_index"
    )
    rows = read_index(WEIGHTS)
    assert {r.path.name for r in rows} == {p.name for p in WEIGHTS.glob("*.pt")}
    assert all(r.path.is_file() for r in rows)


def test_index_columns_and_names() -> None:
    with open(WEIGHTS / "index.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == INDEX_COLUMNS
        rows = list(reader)
    names = {(r["model"], int(r["seed"])) for r in rows}
    assert {
        ("vdsr-ode", 0),
        ("rdn-ode-unweighted", 1),
        ("vdsr-ode-hr", 2),
        ("rdn-fixed-x4", 0),
    } <= names
    assert not any(r["model"].endswith("+") for r in rows)  # the x8 ensemble is no name
    gains = [float(r["b100_gain_x2"]) for r in rows if r["b100_gain_x2"]]
    assert gains and all(0 < g < 3 for g in gains)


def test_bundled_model_is_published_vdsr_ode_seed_0() -> None:
    """``load_model("vdsr-ode")`` without an index falls back to the bundled file: the same
    weights as the published seed 0."""
    import torch

    bundled = torch.load(BUNDLED_MODEL, map_location="cpu", weights_only=True)
    published = find_published("vdsr-ode", 0, WEIGHTS).path
    assert published.stem.endswith(bundled["extra"]["weights_key"])


def test_load_model_by_name_and_seed() -> None:
    model = load_model("rdn-ode-unweighted", seed=1)
    assert model.spec["name"] == "rdn-ode" and not model.training
    assert load_model("vdsr-ode").spec["name"] == "vdsr-ode"
    assert load_model("bundled").spec["name"] == "vdsr-ode"
    assert load_model("bicubic").spec == {"name": "bicubic"}


@pytest.mark.parametrize(
    ("name", "seed", "needle"),
    [
        ("nope", None, "unknown model 'nope'; published: meta-rdn (seed 0), meta-rdn-noskip"),
        (
            "rdn-ode-unweighted",
            7,
            "no published 'rdn-ode-unweighted' of seed 7: rdn-ode-unweighted (seeds 0-2)",
        ),
        ("bicubic", 1, "a seed does not apply"),
        ("bundled", 2, "the bundled model is seed 0"),
    ],
)
def test_load_model_errors_say_what_exists(name, seed, needle) -> None:
    with pytest.raises(ModelError) as info:
        load_model(name, seed=seed)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_weights_folder_from_the_environment(tmp_path, monkeypatch) -> None:
    """``$ODESR_WEIGHTS`` names the folder; without an index there, ``vdsr-ode`` seed 0 is the
    bundled model and other names fail naming the variable."""
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert load_model("vdsr-ode").spec["name"] == "vdsr-ode"
    with pytest.raises(ModelError, match=WEIGHTS_ENV):
        load_model("rdn-ode")
    src = next(r for r in read_index(WEIGHTS) if r.model == "vdsr-ode-hr" and r.seed == 1)
    (tmp_path / "mine.pt").write_bytes(src.path.read_bytes())
    (tmp_path / "index.csv").write_text("file,model,seed\nmine.pt,my-hr,3\n", encoding="utf-8")
    assert load_model("my-hr", seed=3).spec.get("predicts") == "hr"
    with pytest.raises(ModelError, match=r"my-hr \(seed 3\)"):
        load_model("my-hr")


# ----------------------------------------------------------------------------- odesr eval


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two small RGB images and a grey one."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / "g.png")
    return folder


@pytest.mark.parametrize("model", [["--model", "bicubic"], ["--model", "bundled"]])
def test_eval_saves_the_sr_images_and_leaves_no_lock(images, tmp_path, model) -> None:
    from odesr.degrade import protocol_case

    out = tmp_path / "res" / "e.csv"
    saved = tmp_path / "sr"
    argv = ["eval", *model, "--dataset", str(images), "--scales", "2,2.5"]
    rc = main([*argv, "--out", str(out), "--save-images", str(saved), "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["e.csv"]  # no e.csv.lock
    names = sorted(p.name for p in (saved / "mine").iterdir())
    assert names == sorted(f"{i}_x{s}.png" for i in "abg" for s in ("2", "2.5"))
    with Image.open(saved / "mine" / "a_x2.5.png") as sr:  # the size the metrics compare at
        assert sr.mode == "RGB" and sr.size[::-1] == protocol_case(24, 28, 2.5).sr_size
    with Image.open(saved / "mine" / "g_x2.png") as sr:
        assert sr.mode == "L" and sr.size == (24, 20)


def test_saved_images_are_what_was_scored(images, tmp_path) -> None:
    """PSNR of a saved bicubic PNG against its HR equals the CSV row (both 8-bit)."""
    import torch

    from odesr.degrade import make_case
    from odesr.metrics import score

    out = tmp_path / "e.csv"
    argv = ["eval", "--model", "bicubic", "--dataset", str(images), "--scales", "3"]
    assert main([*argv, "--out", str(out), "--save-images", str(tmp_path / "sr")]) == 0
    with open(out, newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["image"] == "a")
    hr = torch.from_numpy(np.array(Image.open(images / "a.png"))).permute(2, 0, 1) / 255.0
    hr_ref, _, case = make_case(hr[None].float(), 3.0, "metasr")
    sr = torch.from_numpy(np.array(Image.open(tmp_path / "sr" / "mine" / "a_x3.png")))
    assert case.sr_size == tuple(sr.shape[:2])
    p, _ = score(sr.permute(2, 0, 1)[None].float() / 255.0, hr_ref, 3.0)
    assert abs(float(p[0]) - float(row["psnr"])) < 1e-3


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--model", "rdn-ode-unweighted", "--seed", "9"],
            "no published 'rdn-ode-unweighted' of seed 9",
        ),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--checkpoint", "x.pt", "--seed", "1"], "--seed goes with --model"),
    ],
)
def test_eval_name_and_seed_errors(images, tmp_path, capsys, extra, needle) -> None:
    argv = ["eval", *extra, "--dataset", str(images), "--out", str(tmp_path / "e.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert not (tmp_path / "e.csv.lock").exists()


def test_eval_published_model_by_name_and_seed(images, tmp_path) -> None:
    out = tmp_path / "e.csv"
    argv = ["eval", "--model", "vdsr-ode-hr", "--seed", "1", "--dataset", str(images)]
    assert main([*argv, "--scales", "2", "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model"] for r in rows} == {"vdsr-ode-hr seed 1"}
    assert {r["solver"] for r in rows} == {"path-step"}
