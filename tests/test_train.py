"""Trainer: real-image smoke training, patch/path equivalence, exact resume (also after SIGKILL),
NaN handling and 2-process DDP (gloo). Smoke preset, tiny patches; a few seconds each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import odesr.train as tr
from odesr.batches import path_derivative, path_patch
from odesr.degrade import path_pad, path_point
from odesr.train_state import _rank_rng_state, read_checkpoint, resume_mismatch

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    """The datasets folder ($ODESR_DATA or the shared copy); missing data fails under CI=true."""
    for cand in (os.environ.get("ODESR_DATA"), "/work/shared/datasets", str(REPO / "data")):
        if cand and (Path(cand) / "Set5" / "HR").is_dir():
            return Path(cand)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Set5 not found (set ODESR_DATA to the datasets folder)")
    pytest.skip("Set5 not found (set ODESR_DATA)")


def _cfg(name: str = "smoke/vdsr-ode", **over) -> dict:
    base = {"data": ["Set5"], "val": {"every": 0}, "log_every": 1}
    base.update(over)
    return tr.load_config(name, base)


def _run(cfg: dict, out: Path, resume: bool = False, data_workers: int = 0) -> dict:
    return tr.train(
        cfg,
        out,
        resume=resume,
        device="cpu",
        data_root=str(_data_root()),
        progress=False,
        data_workers=data_workers,
    )


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _final(out: Path, name: str = "final.pt") -> tuple[dict, dict]:
    return read_checkpoint(out / name)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _env(**extra: str) -> dict:
    # same thread count as this process: CPU float results depend on it
    env = dict(
        os.environ, ODESR_DATA=str(_data_root()), OMP_NUM_THREADS=str(torch.get_num_threads())
    )
    env.update(extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("t", [2.0, 2.5, 3.7, 1.3])
def test_patch_path_point_equals_full_image(t: float) -> None:
    """A patch cut with a grid-aligned margin has exactly the full image's I(t) there."""
    img = torch.rand(3, 90, 110, generator=torch.Generator().manual_seed(1))
    full = path_point(img, t)
    for top, left in [(0, 0), (33, 57), (90 - 24, 110 - 24), (5, 71)]:
        it, hr = path_patch(img, top, left, 24, t, quantize_lr=False)
        torch.testing.assert_close(it, full[:, top : top + 24, left : left + 24], atol=2e-6, rtol=0)
        assert torch.equal(hr, img[:, top : top + 24, left : left + 24])
    # quantised LR (the training input): same up to the rare 8-bit rounding tie
    fq = path_point(img, t, quantize_lr=True)
    it, _ = path_patch(img, 33, 57, 24, t, quantize_lr=True)
    assert (it - fq[:, 33:57, 57:81]).abs().max() < 0.01


def test_path_derivative_is_a_central_difference() -> None:
    img = torch.rand(3, 70, 70, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    it, d = path_derivative(img, 20, 20, 16, 2.3, h=1e-3)
    pad = path_pad(2.301)
    crop = img[:, 20 - pad : 36 + pad, 20 - pad : 36 + pad]
    core = (slice(None), slice(pad, pad + 16), slice(pad, pad + 16))
    ref = (path_point(crop, 2.301, pad=0) - path_point(crop, 2.299, pad=0))[core] / 2e-3
    torch.testing.assert_close(d.double(), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(it.double(), path_point(crop, 2.3, pad=0)[core], atol=1e-6, rtol=0)
    _, d1 = path_derivative(img, 20, 20, 16, 1.0005, h=1e-3)  # one-sided near t = 1
    assert torch.isfinite(d1).all()


def test_smoke_training_lowers_loss(tmp_path: Path) -> None:
    cfg = _cfg("smoke/vdsr+t", max_steps=40, checkpoint_every=0, lr_halve_every=1000)
    res = _run(cfg, tmp_path / "run")
    losses = [r["loss"] for r in _log(tmp_path / "run") if "loss" in r and "done" not in r]
    assert res["step"] == 40 and len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert (tmp_path / "run" / "final.pt").exists() and (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("name", ["smoke/vdsr-ode", "smoke/vdsr-ode-path", "smoke/rdn-fixed-x2"])
def test_resume_is_bitwise_identical(tmp_path: Path, name: str) -> None:
    cfg = _cfg(name, max_steps=7, checkpoint_every=3)
    _run(cfg, tmp_path / "straight")
    _run({**cfg, "max_steps": 4}, tmp_path / "split")
    _run(cfg, tmp_path / "split", resume=True)
    (sa, ea), (sb, eb) = _final(tmp_path / "straight"), _final(tmp_path / "split")
    assert ea["step"] == eb["step"] == 7
    assert _same_state(sa, sb)
    for k, v in ea["optimizer"]["state"].items():
        assert all(torch.equal(v[n], eb["optimizer"]["state"][k][n]) for n in v)
    steps = [r["step"] for r in _log(tmp_path / "split") if "loss" in r and "done" not in r]
    assert steps == list(range(1, 8))  # log has no duplicate/missing step after resume


def test_checkpoints_record_the_machine_of_each_segment(tmp_path: Path) -> None:
    """``trained_on``: one segment per machine setting, a new one from the step a resume changed
    the torch thread count at; published weights keep it (weights_only_extra)."""
    import platform

    from odesr.checkpoints import load_checkpoint, weights_only_extra

    cfg = _cfg("smoke/vdsr-ode", max_steps=5, checkpoint_every=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _run({**cfg, "max_steps": 2}, tmp_path / "run")
        _run({**cfg, "max_steps": 3}, tmp_path / "run", resume=True)  # same machine: no new one
        torch.set_num_threads(2)
        _run(cfg, tmp_path / "run", resume=True)
    finally:
        torch.set_num_threads(threads)
    _, extra = load_checkpoint(tmp_path / "run" / "final.pt")
    segments = weights_only_extra(extra)["trained_on"]
    cpu = f"cpu:{platform.machine()}"
    assert [(s["from_step"], s["device"]) for s in segments] == [(0, cpu + "x1"), (3, cpu + "x2")]
    assert all(s["torch"] == torch.__version__ and s["world"] == 1 for s in segments)


def test_data_workers_train_the_same_weights(tmp_path: Path) -> None:
    """Batches made ahead by 2 workers, with a resume in the middle, train bitwise the weights
    of the serial run (the prefetched but untrained batches are drawn again after the resume)."""
    cfg = _cfg("smoke/vdsr-ode", max_steps=7, checkpoint_every=3)
    _run(cfg, tmp_path / "serial")
    _run({**cfg, "max_steps": 4}, tmp_path / "ahead", data_workers=2)
    _run(cfg, tmp_path / "ahead", resume=True, data_workers=2)
    assert _same_state(_final(tmp_path / "serial")[0], _final(tmp_path / "ahead")[0])
    shares = [r["data_share"] for r in _log(tmp_path / "ahead") if "data_share" in r]
    assert len(shares) == 7 and all(0.0 <= s <= 1.0 for s in shares)


def test_sigkill_then_resume_gives_same_final_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "odesr.train",
        "smoke/vdsr-ode",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        "data=[Set5]",
        "--set",
        "val.every=0",
        "--set",
        "checkpoint_every=4",
        "--max-steps",
        "100000",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    _, extra = _final(out, "last.pt")
    k = int(extra["step"])
    assert k >= 4 and k % 4 == 0
    target = k + 5
    cfg = _cfg("smoke/vdsr-ode", checkpoint_every=4, max_steps=target)
    _run(cfg, out, resume=True)
    _run(cfg, tmp_path / "straight")
    (sa, ea), (sb, eb) = _final(out), _final(tmp_path / "straight")
    assert ea["step"] == eb["step"] == target
    assert _same_state(sa, sb)


def test_nan_loss_stops_with_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    real = tr.compute_loss
    calls = {"n": 0}

    def poisoned(step_module, batch):
        calls["n"] += 1
        loss = real(step_module, batch)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(tr, "compute_loss", poisoned)
    monkeypatch.setenv("ODESR_DATA", str(_data_root()))
    parser = tr.add_arguments(__import__("argparse").ArgumentParser())
    args = parser.parse_args(
        [
            "smoke/vdsr+t",
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "--no-progress",
            "--set",
            "checkpoint_every=2",
            "--set",
            "val.every=0",
            "--set",
            "data=[Set5]",
        ]
    )
    assert tr.run_from_args(args) == tr.EXIT_NONFINITE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite loss (nan) at step 5" in err[0] and "last.pt" in err[0]
    _, extra = _final(tmp_path / "r", "last.pt")
    assert extra["step"] == 4
    assert not (tmp_path / "r" / "final.pt").exists()


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "odesr.train",
        "smoke/vdsr-ode",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--max-steps",
        "4",
        "--set",
        "data=[Set5]",
        "--set",
        "val.every=0",
    ]
    res = subprocess.run(
        cmd, cwd=REPO, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ranks agree: True" in res.stdout
    done = [r for r in _log(out) if r.get("done")]
    assert done and done[-1]["ranks_agree"] is True and done[-1]["step"] == 4
    _, extra = _final(out)
    assert len(extra["rng"]["samplers"]) == 2  # both ranks' data streams are resumable
    assert len(extra["rng"]["ranks"]) == 2  # and both ranks' global generators


def test_rank_rng_state_picks_own_rank() -> None:
    rng = {"samplers": [{}, {}], "ranks": [{"id": 0}, {"id": 1}]}
    assert _rank_rng_state(rng, 1, 2) == {"id": 1}
    assert _rank_rng_state(rng, 2, 3) == {"id": 0}  # world size changed: rank 0's
    old = {"python": "p", "numpy": "n", "torch": "t", "samplers": [{}]}  # older checkpoints
    assert _rank_rng_state(old, 0, 1) is old


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    cfg = _cfg("smoke/vdsr+t", max_steps=3, checkpoint_every=3)
    _run(cfg, tmp_path / "r")
    with pytest.raises(tr.TrainError, match=r"cannot resume.*different batch_size, lr"):
        changed = {**cfg, "lr": 2 * cfg["lr"], "batch_size": 3, "max_steps": 5}
        _run(changed, tmp_path / "r", resume=True)
    assert resume_mismatch(cfg, {**cfg, "max_steps": 9, "log_every": 5}) == []
    res = _run({**cfg, "max_steps": 5}, tmp_path / "r", resume=True)  # extending is fine
    assert res["step"] == 5


@pytest.mark.parametrize("tf32", [False, True])
def test_training_math_is_float32_unless_tf32_is_asked(tmp_path: Path, monkeypatch, tf32) -> None:
    """``train(tf32=...)`` sets the cuDNN/cuBLAS TF32 flags for the whole run (PyTorch's own
    default is TF32 for convolutions) and restores them after; the flags are what a GPU reads."""
    seen = {}

    def fake_train(*args, **kwargs):
        seen["flags"] = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        return {"step": 0, "loss": 0.0}

    monkeypatch.setattr(tr, "_train", fake_train)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    tr.train(_cfg(), tmp_path / "run", device="cpu", tf32=tf32)
    assert seen["flags"] == (tf32, tf32)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


@pytest.mark.parametrize("kind", ["inv_span", "inv_residual"])
def test_scale_weighted_training_records_its_weights_and_resumes(tmp_path: Path, kind) -> None:
    """A scale-weighted run trains other weights than the unweighted one, stores its weight
    table (mean 1 over the scales), and resumes bitwise like any run."""
    cfg = _cfg(
        "smoke/vdsr+t", max_steps=4, checkpoint_every=2, mixed_scales=True, scale_weight=kind
    )
    plain = _cfg("smoke/vdsr+t", max_steps=4, checkpoint_every=2, mixed_scales=True)
    _run(cfg, tmp_path / "w")
    _run(plain, tmp_path / "p")
    state, extra = _final(tmp_path / "w")
    assert not _same_state(state, _final(tmp_path / "p")[0])
    table = extra["scale_weights"]
    assert set(table) == {"1.5", "2", "2.5", "3"}
    assert abs(sum(table.values()) / 4 - 1) < 1e-9 and table["1.5"] > table["3"]
    assert extra["config"]["scale_weight"] == kind
    assert "scale_weights" not in _final(tmp_path / "p")[1]
    resumed = tmp_path / "r"  # 2 steps, then resumed to 4 (the step schedule allows it)
    _run({**cfg, "max_steps": 2}, resumed)
    _run(cfg, resumed, resume=True)
    assert _same_state(_final(resumed)[0], state)
