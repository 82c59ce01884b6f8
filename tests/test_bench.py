"""bench/: resumable runner, concurrent writers, reports, x8 ensemble, dataset fetcher.

Everything runs on tiny synthetic images with the bicubic model (no training), so it is fast.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from bench.experiment import load_experiment
from bench.fetch_data import FetchError, fetch
from bench.profile import Profile
from bench.report import write_report
from bench.results import COLUMNS, ResultsFile, row_key, upgrade_row
from bench.runner import run_experiment
from odesr.ensemble import TRANSFORMS, SelfEnsemble, forward_transform, inverse_transform
from odesr.models import SRResult, build

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, n: int = 3, size: tuple[int, int] = (40, 52)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"im{i}.png")
    return folder


def _experiment(data: Path, name: str = "tiny", models=("bicubic", "bicubic2")) -> dict:
    return {
        "name": name,
        "seen_scales": "2,3",
        "models": {m: {"paper": "bicubic", "model": {"name": "bicubic"}} for m in models},
        "sweeps": [
            {
                "name": "main",
                "models": list(models),
                "datasets": {str(data): "2,2.5,3,4"},
                "limit": None,
            }
        ],
        "report": {
            "tables": [
                {
                    "kind": "scales",
                    "sweep": "main",
                    "file": "tiny-table",
                    "block": 3,
                    "paper_table": "table1",
                }
            ],
            "figures": [{"kind": "psnr_vs_scale", "sweep": "main", "file": "tiny-fig"}],
        },
    }


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _strip(rows: list[dict]) -> list[tuple]:
    return sorted((row_key(r), r["psnr"], r["ssim"]) for r in rows)


class _Stop(Exception):
    pass


def test_runner_resumes_after_kill(tmp_path: Path) -> None:
    data = _images(tmp_path / "imgs")
    exp = _experiment(data)
    kw = dict(device="cpu", progress=False, log=lambda m: None)
    a = Profile("smoke", tmp_path / "a", tmp_path / "ck")
    b = Profile("smoke", tmp_path / "b", tmp_path / "ck")
    straight = run_experiment(exp, a, **kw)
    assert straight.done == straight.planned == 8

    calls = []

    def boom(unit) -> None:
        calls.append(unit.key)
        if len(calls) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        run_experiment(exp, b, on_unit=boom, **kw)
    partial = _rows(tmp_path / "b" / "smoke" / "tiny.csv")
    assert len(partial) == 3 * 3  # three whole units of 3 images
    again = run_experiment(exp, b, **kw)
    assert (again.skipped, again.done) == (3, 5)
    resumed = _rows(tmp_path / "b" / "smoke" / "tiny.csv")
    full = _rows(tmp_path / "a" / "smoke" / "tiny.csv")
    assert len(resumed) == len({row_key(r) for r in resumed}) == 24
    assert _strip(resumed) == _strip(full)
    assert list(resumed[0])[: len(COLUMNS)] == COLUMNS
    # a third run has nothing to do and changes nothing
    third = run_experiment(exp, b, **kw)
    assert third.done == 0 and _strip(_rows(tmp_path / "b" / "smoke" / "tiny.csv")) == _strip(full)
    r = resumed[0]
    assert r["seen"] in ("True", "False") and r["nfe"] == "0" and r["subset"] == "all"
    assert (r["protocol"], r["y_rounding"], r["seed"]) == ("metasr", "matlab", "")
    assert r["code_rev"] and "git_rev" not in r
    legacy = upgrade_row({"git_rev": "abc", "psnr": "30"})
    assert legacy == {"code_rev": "abc", "psnr": "30", "protocol": "metasr", "y_rounding": "matlab"}


def test_two_writers_keep_csv_valid(tmp_path: Path) -> None:
    data = _images(tmp_path / "imgs", n=2, size=(30, 30))
    paths = []
    for i, models in enumerate((("m1", "m2"), ("m3", "m4"))):
        p = tmp_path / f"exp{i}.yaml"
        p.write_text(yaml.safe_dump(_experiment(data, name="shared", models=models)))
        paths.append(p)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench",
                "run",
                str(p),
                "--profile",
                "smoke",
                "--device",
                "cpu",
                "--results",
                str(tmp_path / "res"),
                "--checkpoints",
                str(tmp_path / "ck"),
                "--no-progress",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in paths
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    rows = _rows(tmp_path / "res" / "smoke" / "shared.csv")
    assert len(rows) == 4 * 4 * 2  # 4 models x 4 scales x 2 images, nobody lost
    assert len({row_key(r) for r in rows}) == len(rows)
    assert {r["model"] for r in rows} == {"m1", "m2", "m3", "m4"}
    assert all(float(r["psnr"]) > 0 for r in rows)


def test_put_unit_replaces_not_duplicates(tmp_path: Path) -> None:
    store = ResultsFile(tmp_path / "r.csv")
    row = dict(
        sweep="s",
        model="m",
        weights="m-123",
        solver_opts="-",
        dataset="d",
        scale=2.0,
        subset="all",
        image="a",
        psnr=1.0,
        ssim=0.5,
    )
    store.put_unit([row])
    store.put_unit([dict(row, psnr=2.0)])
    rows = store.read()
    assert len(rows) == 1 and float(rows[0]["psnr"]) == 2.0
    assert store.done_units() == {("s", "m", "m-123", "-", "d", 2.0, "all")}
    # rows made with other weights (a changed training config) do not count as done
    store.put_unit([dict(row, weights="m-456")])
    assert len(store.done_units()) == 2


def test_report_rows_are_the_current_subset_only(tmp_path: Path) -> None:
    """Rows of an earlier, smaller image subset of the same (untrained) model stay in the CSV but
    are not reported: the mean over 3 images is not mixed with the mean over 1."""
    from bench.report import current_rows, load_results, summarize

    data = _images(tmp_path / "imgs", n=3, size=(30, 30))
    exp = _experiment(data, models=("bicubic",))
    kw = dict(device="cpu", progress=False, log=lambda m: None)
    profile = Profile("smoke", tmp_path / "res")
    exp["sweeps"][0]["limit"] = 1
    run_experiment(exp, profile, **kw)
    exp["sweeps"][0]["limit"] = None
    run_experiment(exp, profile, **kw)
    rows = load_results(tmp_path / "res" / "smoke" / "tiny.csv")
    assert set(rows["subset"]) == {"first 1", "all"}
    current = current_rows(rows, load_experiment(exp), Profile("smoke"))
    assert set(current["subset"]) == {"all"} and len(current) == 3 * 4  # 3 images x 4 scales
    by_hand = rows[rows["subset"] == "all"].groupby("scale")["psnr"].mean()
    summary = summarize(current).set_index("scale")["psnr"]
    assert summary.to_dict() == pytest.approx(by_hand.to_dict())


def test_report_on_tiny_csv(tmp_path: Path) -> None:
    data = _images(tmp_path / "imgs", n=2, size=(30, 30))
    exp = _experiment(data)
    profile = Profile("smoke", tmp_path / "res", tmp_path / "ck")
    run_experiment(exp, profile, device="cpu", progress=False, log=lambda m: None)
    paper = tmp_path / "reference" / "paper_tables.csv"
    kw = dict(log=lambda m: None, paper_tables=paper)
    with pytest.raises(FileNotFoundError, match="paper tables not found"):
        write_report(exp, profile, **kw)  # the tables promise a paper comparison
    paper.parent.mkdir()
    paper.write_text("table,dataset,method,solver,scale,psnr\ntable1,imgs,bicubic,,2.0,30.0\n")
    written = write_report(exp, profile, **kw)
    names = {p.name for p in written}
    assert {"tiny-table.md", "tiny-table.tex", "tiny-fig.png", "tiny-report.md"} <= names
    md = (tmp_path / "res" / "smoke" / "tiny-table.md").read_text()
    assert "Profile smoke" in md and "paper" in md and "30.00" in md and "×2" in md
    assert "Evaluated on cpu:" in md  # the machine that made the numbers
    tex = (tmp_path / "res" / "smoke" / "tiny-table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\caption{" in tex and r"$\Delta$" in tex
    assert (tmp_path / "res" / "smoke" / "tiny-fig.png").read_bytes()[:4] == b"\x89PNG"


def test_report_on_a_fresh_clone_rewrites_nothing(
    tmp_path: Path, monkeypatch, data_root, reference
) -> None:
    """`python -m bench report table1` without checkpoints reproduces every committed file byte
    for byte (the figures that need weights are redrawn from the published ones, as `bench run`
    finds them). Whether every unit of the profile is in the committed CSV is not asserted here:
    while a profile is being retrained the report shows what exists (its caption counts the
    images per model)."""
    committed = REPO / "results" / "cpu"
    (tmp_path / "results").mkdir()
    shutil.copytree(committed, tmp_path / "results" / "cpu")
    monkeypatch.chdir(tmp_path)
    profile = Profile("cpu", Path("results"), tmp_path / "no-checkpoints")  # relative, as run
    paper = reference / "paper_tables.csv"
    written = write_report(
        "table1", profile, data_root=str(data_root), log=lambda m: None, paper_tables=paper
    )
    # 2 tables x (md, tex), the gains figure, fig3 and fig1 (published weights), the index
    assert len(written) == 8
    # compared by digest: pytest's diff of two long byte strings runs for tens of minutes
    changed = [
        path.name
        for path in sorted((tmp_path / "results" / "cpu").iterdir())
        if path.is_file()
        and hashlib.sha256(path.read_bytes()).digest()
        != hashlib.sha256((committed / path.name).read_bytes()).digest()
    ]
    assert changed == [], "bench report table1 rewrote these committed files"


def test_a_model_entry_without_solver_is_evaluated_with_its_own() -> None:
    """The hr model names path-step in its model spec (the only solver it accepts); an entry
    without ``solver`` takes it, other ODE models the default one-step RK4."""
    from odesr.ode import DEFAULT_SOLVER

    exp = load_experiment("solver-ablation")
    for profile in ("smoke", "cpu", "paper"):
        units = exp.units(Profile(profile))
        hr = {tuple(sorted(u.solver.items())) for u in units if u.model.id == "vdsr-ode-hr"}
        assert hr == {(("method", "path-step"), ("steps", 1))}, profile
    units = load_experiment("table1").units(Profile("cpu"))
    assert {u.solver["method"] for u in units if u.model.id == "vdsr-ode"} == {
        DEFAULT_SOLVER.method
    }


def test_experiment_files_resolve() -> None:
    for name in ("table1", "solver-ablation", "extrapolation", "ci-smoke", "claims"):
        exp = load_experiment(name)
        units = exp.units(Profile("smoke"))
        assert units, name
        assert len({u.key for u in units}) == len(units), name
    t1 = load_experiment("table1")
    smoke = t1.units(Profile("smoke"))
    fixed = {u.scale for u in smoke if u.model.id == "rdn-fixed"}
    assert fixed == {2.0, 3.0, 4.0}
    assert len({u.model.key for u in smoke if u.model.id == "rdn-fixed"}) == 3
    plus = [u for u in smoke if u.model.id == "rdn-ode+"]
    assert plus[0].model.ensemble == "x8"
    assert plus[0].model.key == next(u for u in smoke if u.model.id == "rdn-ode").model.key
    cpu = t1.units(Profile("cpu"))
    assert {u.limit for u in cpu if u.model.id == "bicubic"} == {None}
    assert {u.limit for u in cpu if u.model.id == "vdsr-ode"} == {20}
    assert not [u for u in cpu if u.model.id == "rdn-ode+"]  # cpu: claims.yaml measures it
    assert len({u.scale for u in t1.units(Profile("paper")) if u.model.id == "rdn-ode+"}) == 30
    ext = load_experiment("extrapolation")
    assert len({u.scale for u in ext.units(Profile("paper")) if u.model.id == "bicubic"}) == 69 + 2
    cpu_ext = ext.units(Profile("cpu"))
    for model in ("bicubic", "vdsr+t", "vdsr-ode", "rdn+t", "meta-rdn", "rdn-ode"):
        scales = {u.scale for u in cpu_ext if u.model.id == model}
        assert len(scales) == 71 and {1.1, 1.15, 4.5, 5.0, 6.0} <= scales, model
    assert {u.limit for u in cpu_ext if u.model.id == "rdn-ode"} == {10}
    seen = {u.scale: ext.seen(u.model, u.scale) for u in cpu_ext if u.model.id == "vdsr-ode"}
    assert seen[1.1] and not seen[1.25] and not seen[4.4] and not seen[6.0]


# ----------------------------------------------------------------------------- ensemble


class _Equivariant(torch.nn.Module):
    """Nearest x2 upsampling of a pixel-wise function: exactly flip/rotation equivariant."""

    def super_resolve(self, lr, scale, size, **opts):
        out = lr.repeat_interleave(2, -2).repeat_interleave(2, -1) ** 2
        assert tuple(out.shape[-2:]) == tuple(size)
        return SRResult(out, 1)


def test_transforms_invert() -> None:
    x = torch.randn(1, 3, 5, 7)
    for rot, flip in TRANSFORMS:
        assert torch.equal(inverse_transform(forward_transform(x, rot, flip), rot, flip), x)
    assert len(set(TRANSFORMS)) == 8


def test_ensemble_equals_equivariant_base() -> None:
    lr = torch.rand(2, 3, 6, 9)
    base = _Equivariant()
    one = base.super_resolve(lr, 2.0, (12, 18))
    ens = SelfEnsemble(base).super_resolve(lr, 2.0, (12, 18))
    assert ens.nfe == 8
    assert torch.allclose(ens.image, one.image, atol=1e-6)


def test_ensemble_bicubic_shape_and_symmetric_input() -> None:
    bic = build({"name": "bicubic"})
    ens = SelfEnsemble(bic)
    lr = torch.rand(1, 3, 10, 13)
    out = ens.super_resolve(lr, 3.0)
    assert out.image.shape == bic.super_resolve(lr, 3.0).image.shape == (1, 3, 30, 39)
    # a D4-symmetric input gives 8 identical outputs; their mean is that output
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    sym = ((yy - 4) ** 2 + (xx - 4) ** 2).div(32).expand(1, 3, 9, 9).contiguous()
    a = ens.super_resolve(sym, 2.0).image
    b = bic.super_resolve(sym, 2.0).image
    assert torch.allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------- fetch_data


@pytest.fixture()
def http_dir(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _zip_with_images(path: Path) -> str:
    src = _images(path.parent / "src" / "Tiny" / "HR", n=2, size=(8, 8))
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"Tiny/HR/{f.name}")
        zf.writestr("Tiny/README.txt", "not an image")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_data_local_server(http_dir, tmp_path: Path) -> None:
    www, url = http_dir
    digest = _zip_with_images(www / "tiny.zip")
    manifest = tmp_path / "datasets.yaml"
    entry = {"name": "Tiny", "url": f"{url}/tiny.zip", "sha256": digest, "subdir": "Tiny/HR"}
    manifest.write_text(yaml.safe_dump({"datasets": [entry]}))
    root = tmp_path / "data"
    out = fetch("Tiny", root, manifest, log=lambda m: None)
    assert out == root / "Tiny" / "HR"
    assert sorted(p.name for p in out.iterdir()) == ["im0.png", "im1.png"]
    from odesr.data import list_images

    assert len(list_images(str(out))) == 2
    # an existing dataset is left alone
    assert fetch("Tiny", root, manifest, log=lambda m: None) == out


def test_fetch_data_checksum_mismatch(http_dir, tmp_path: Path) -> None:
    www, url = http_dir
    _zip_with_images(www / "tiny.zip")
    manifest = tmp_path / "datasets.yaml"
    entry = {"name": "Tiny", "url": f"{url}/tiny.zip", "sha256": "0" * 64, "subdir": "Tiny/HR"}
    manifest.write_text(yaml.safe_dump({"datasets": [entry]}))
    root = tmp_path / "data"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch("Tiny", root, manifest, log=lambda m: None)
    assert not (root / "Tiny").exists()
    assert not (root / ".downloads" / "tiny.zip").exists()
    entry["sha256"] = None
    manifest.write_text(yaml.safe_dump({"datasets": [entry]}))
    with pytest.raises(FetchError, match="no sha256"):
        fetch("Tiny", root, manifest, log=lambda m: None)


def test_real_manifest_parses() -> None:
    from bench.fetch_data import load_manifest

    m = load_manifest()
    assert {"B100", "BSD200", "Set5", "T91"} <= set(m)


def test_gains_table_and_pair_difference() -> None:
    import pandas as pd

    from bench.report import gains_table, pair_difference

    rows = [
        ("bicubic-subset", "", 2.0, 30.0),
        ("bicubic-subset", "", 3.0, 27.0),
        ("ode", "ODE", 2.0, 31.0),
        ("ode", "ODE", 3.0, 27.5),
        ("plus", "", 2.0, 31.2),
        ("plus", "", 3.0, 27.4),
    ]
    summary = pd.DataFrame(
        [dict(model=m, paper=p, scale=s, psnr=v, dataset="B100") for m, p, s, v in rows]
    )
    ref = pd.DataFrame(
        [
            dict(table="t1", dataset="B100", method=m, solver="", scale=s, psnr=v)
            for m, s, v in [("bicubic", 2.0, 29.0), ("ODE", 2.0, 31.5)]
        ]
    )
    header, table = gains_table(
        summary, ref, ["ode", "plus"], "B100", "bicubic-subset", "t1", [2.0, 3.0]
    )
    assert header == ["scale", "ode", "plus"]
    assert table[0] == ["×2", "+1.00 (+2.50)", "+1.20"]
    assert table[1] == ["×3", "+0.50", "+0.40"]
    assert pair_difference(summary, "B100", "ode", "plus") == (
        "ode - plus: -0.05 dB averaged over 2 scales (per scale -0.20 to +0.10)"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\nState:\tZ" not in fh.read()  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_train_all_sigterm_stops_its_workers(tmp_path: Path, data_root) -> None:
    exp = {
        "name": "long",
        "models": {
            "m": {
                "config": "vdsr+t",
                "train": {"max_steps": 100000, "data": ["Set5"], "val.every": 0},
            }
        },
        "sweeps": [{"name": "main", "models": ["m"], "datasets": {"Set5": "2"}}],
    }
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(exp))
    cmd = [
        sys.executable,
        "-m",
        "bench.train_all",
        str(path),
        "--profile",
        "smoke",
        "--checkpoints",
        str(tmp_path / "ck"),
        "--jobs",
        "1",
        "--data-root",
        str(data_root),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "ck").glob("smoke/*/metrics.jsonl")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no training started within 120 s"
            time.sleep(0.2)
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        deadline = time.monotonic() + 30
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], "workers outlived train_all"
    finally:
        proc.kill()
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)


def test_published_weights_stand_in_for_a_missing_checkpoint(tmp_path: Path, data_root) -> None:
    """bench.publish strips training state; a run with no checkpoint evaluates the published
    weights (same rows as from final.pt) and trains nothing."""
    from bench.publish import main as publish_main
    from odesr.checkpoints import TRAINING_STATE, load_checkpoint

    train = {"max_steps": 3, "data": ["Set5"], "val.every": 0, "checkpoint_every": 3}
    exp = {
        "name": "pub",
        "models": {"m": {"config": "vdsr+t", "train": train}},
        "sweeps": [{"name": "main", "models": ["m"], "datasets": {"Set5": "2"}, "limit": 1}],
    }
    path = tmp_path / "pub.yaml"
    path.write_text(yaml.safe_dump(exp))
    ck, res_a, res_b = tmp_path / "ck", tmp_path / "a", tmp_path / "b"
    run = functools.partial(
        run_experiment,
        load_experiment(path),
        data_root=str(data_root),
        device="cpu",
        progress=False,
        log=lambda _: None,
    )
    run(Profile("smoke", res_a, ck))
    (plan,) = load_experiment(path).all_plans(Profile("smoke"))
    final = Profile("smoke", res_a, ck).checkpoint_dir(plan.key) / "final.pt"
    assert set(TRAINING_STATE) & set(load_checkpoint(final)[1])  # optimizer state is there
    assert (
        publish_main(
            [str(path), "--profile", "smoke", "--results", str(res_b), "--checkpoints", str(ck)]
        )
        == 0
    )
    published = Profile("smoke", res_b, ck).published_weights(plan.key)
    model, extra = load_checkpoint(published)
    assert not set(TRAINING_STATE) & set(extra) and extra["step"] == 3
    assert published.stat().st_size < final.stat().st_size
    shutil.rmtree(ck)
    run(Profile("smoke", res_b, ck))
    assert not ck.exists()  # nothing trained
    rows_a, rows_b = (_rows(res / "smoke" / "pub.csv") for res in (res_a, res_b))
    assert [r["psnr"] for r in rows_a] == [r["psnr"] for r in rows_b]


def test_train_all_trains_seeds_together_as_separate_runs(tmp_path: Path, data_root) -> None:
    """--together 2: the two seeds of a model train in one process (stacked) into their usual
    checkpoint folders, with weights equal to separate training to float tolerance and
    ``seeds_together`` in trained_on; an LR-input model falls back to one seed at a time; a
    second run has nothing to train."""
    from bench.train_all import main as train_all
    from odesr.checkpoints import load_checkpoint

    def train() -> dict:  # a new dict each time: yaml.safe_dump writes no anchors then
        return {"max_steps": 3, "data": ["Set5"], "val.every": 0, "checkpoint_every": 3}

    exp = {
        "name": "together",
        "models": {
            "m": {"config": "vdsr+t", "train": train()},
            "lr": {"config": "vdsr-fixed", "train": train()},
        },
        "sweeps": [{"name": "main", "models": ["m", "lr"], "datasets": {"Set5": "2"},
                    "limit": 1, "seeds": [0, 1]}],
    }  # fmt: skip
    path = tmp_path / "together.yaml"
    path.write_text(yaml.safe_dump(exp))
    common = [str(path), "--profile", "smoke", "--results", str(tmp_path / "res"), "--jobs", "1"]
    common += ["--threads", "1", "--device", "cpu", "--data-root", str(data_root)]
    assert train_all([*common, "--checkpoints", str(tmp_path / "a"), "--together", "2"]) == 0
    assert train_all([*common, "--checkpoints", str(tmp_path / "b")]) == 0
    plans = load_experiment(path).all_plans(Profile("smoke"))
    assert len(plans) == 4
    for plan in plans:
        together, extra = load_checkpoint(
            Profile("smoke", tmp_path / "res", tmp_path / "a").checkpoint_dir(plan.key) / "final.pt"
        )
        alone, _ = load_checkpoint(
            Profile("smoke", tmp_path / "res", tmp_path / "b").checkpoint_dir(plan.key) / "final.pt"
        )
        stacked = extra["trained_on"][-1].get("seeds_together")
        assert stacked == (2 if plan.id == "m" else None), (plan.id, extra["trained_on"])
        alone_state = alone.state_dict()
        for name, value in together.state_dict().items():
            torch.testing.assert_close(value, alone_state[name], rtol=1e-5, atol=1e-5)
    again = subprocess.run(
        [sys.executable, "-m", "bench.train_all", *common, "--checkpoints", str(tmp_path / "a"),
         "--together", "2"], capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0 and again.stdout.startswith("0 checkpoints to train"), again


def test_train_all_threads_option(tmp_path: Path, capsys) -> None:
    """--threads sets the torch threads per worker (default cores // jobs), and says so."""
    from bench.train_all import main as train_all

    path = tmp_path / "none.yaml"
    path.write_text(yaml.safe_dump(_experiment(_images(tmp_path / "imgs", n=1), models=("b",))))
    assert train_all([str(path), "--jobs", "1", "--threads", "1", "--profile", "smoke"]) == 0
    assert "0 checkpoints to train with 1 workers on cpu, 1 threads each" in capsys.readouterr().out


def test_run_no_train_evaluates_only_trained_weights(tmp_path: Path, data_root) -> None:
    """--no-train: units of untrained weights wait (nothing is trained, the log names them);
    the next run with training completes the experiment without redoing the bicubic units."""
    train = {"max_steps": 2, "data": ["Set5"], "val.every": 0, "checkpoint_every": 2}
    exp = {
        "name": "notrain",
        "models": {
            "b": {"model": {"name": "bicubic"}},
            "m": {"config": "vdsr+t", "train": train},
        },
        "sweeps": [{"name": "main", "models": ["b", "m"], "datasets": {"Set5": "2,3"}, "limit": 1}],
    }
    path = tmp_path / "notrain.yaml"
    path.write_text(yaml.safe_dump(exp))
    ck, res = tmp_path / "ck", tmp_path / "res"
    logged: list[str] = []
    run = functools.partial(
        run_experiment,
        load_experiment(path),
        Profile("smoke", res, ck),
        data_root=str(data_root),
        device="cpu",
        progress=False,
        log=logged.append,
    )
    first = run(train=False)
    assert (first.planned, first.done, first.skipped, first.waiting) == (4, 2, 0, 2)
    assert not ck.exists()
    assert any("2 units wait for weights" in m and "m seed 0" in m for m in logged)
    assert {r["model"] for r in _rows(first.results)} == {"b"}
    logged.clear()
    again = run(train=False)  # nothing ready to run: says so, does not claim all are there
    assert (again.skipped, again.done, again.waiting) == (2, 0, 2)
    assert any("nothing to run now (2 of 4 units" in m and "2 waiting" in m for m in logged)
    second = run()
    assert (second.skipped, second.done, second.waiting) == (2, 2, 0)
    assert sorted(r["model"] for r in _rows(second.results)) == ["b", "b", "m", "m"]


def test_prune_removes_only_rows_of_units_the_experiment_no_longer_plans(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A row per current smoke unit of table1 stays; a row of replaced weights and one of
    another subset go; --dry-run changes nothing."""
    from bench.experiment import dataset_label
    from bench.runner import prune_results

    exp = load_experiment("table1")
    rows = []
    for u in exp.units(Profile("smoke")):
        rows.append(
            {c: "" for c in COLUMNS}
            | dict(
                sweep=u.sweep,
                model=u.model.id,
                weights=u.model.key,
                solver_opts="-",
                dataset=dataset_label(u.dataset),
                scale=u.scale,
                subset=u.subset,
                image="a",
                psnr=30.0,
                ssim=0.9,
            )  # fmt: skip
        )
    old = dict(rows[-1], weights="vdsr-ode-0000000000", model="vdsr-ode")
    other = dict(rows[-1], subset="first 99")
    # the same weights and subset, but of a sweep that no longer has them (a sweep's subset
    # changed while another sweep keeps the old one): it went unnoticed before the sweep counted
    gone_sweep = dict(rows[-1], sweep="no-such-sweep")
    profile = Profile("smoke", tmp_path)
    path = profile.results_csv("table1")
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([*rows, old, other, gone_sweep])
    before = path.read_bytes()
    assert prune_results("table1", profile, dry_run=True) == 0
    assert "would remove 3 rows" in capsys.readouterr().out and path.read_bytes() == before
    assert prune_results("table1", profile) == 0
    kept = ResultsFile(path).read()
    assert len(kept) == len(rows)
    planned = {(u.model.id, u.model.key) for u in exp.units(Profile("smoke"))}
    assert {(r["model"], r["weights"]) for r in kept} == planned
    assert prune_results("table1", Profile("smoke", tmp_path / "none")) == 2
