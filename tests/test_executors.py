"""submitit-local end to end on the smoke profile: `bench.train_all --executor submitit-local`
trains a checkpoint as a submitit job; a preemption signal (SIGUSR2, what SLURM sends) makes the
job requeue itself and resume from last.pt. `bench run --executor submitit-local` evaluates units
as jobs that append to one results CSV. The same job objects go to SLURM with --executor slurm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("submitit", reason="submitit is a dev dependency (make install)")
pytestmark = pytest.mark.slow  # each job is a process of its own (torch imported in each)

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _experiment(tmp_path: Path) -> Path:
    # Set5 as training data: 5 images load faster than T91's 91 (this tests plumbing, not SR)
    train = {"max_steps": 40, "checkpoint_every": 5, "data": ["Set5"], "val.every": 0}
    exp = {
        "name": "sub",
        "models": {
            "bicubic": {"model": {"name": "bicubic"}},
            "bundled": {"model": {"name": "vdsr-ode", "checkpoint": "bundled"}},
            "bundled-again": {"model": {"name": "vdsr-ode", "checkpoint": "bundled"}},
            "m": {"config": "vdsr+t", "train": train},
        },
        "sweeps": [
            {"name": "main", "models": ["bundled", "bundled-again"], "datasets": {"Set5": "2"}},
            {"name": "net", "models": ["m"], "datasets": {"Set5": "2"}, "limit": 1},
        ],
    }
    path = tmp_path / "sub.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _env(data_root: Path) -> dict:
    return dict(os.environ, ODESR_DATA=str(data_root), OMP_NUM_THREADS="1")


def test_train_all_submitit_local_requeues_and_resumes(tmp_path: Path, data_root: Path) -> None:
    exp, ck, jobs = _experiment(tmp_path), tmp_path / "ck", tmp_path / "jobs"
    cmd = [sys.executable, "-m", "bench.train_all", str(exp), "--checkpoints", str(ck)]
    cmd += "--profile smoke --executor submitit-local".split() + ["--jobs-folder", str(jobs)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(data_root), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(ck.glob("smoke/*/last.pt")):  # the job has trained 5 steps
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        (controller,) = _children(proc.pid)  # submitit's local controller -> the job's process
        (task,) = _children(controller)
        os.kill(task, signal.SIGUSR2)  # SLURM's preemption signal (submitit's USR2)
        out, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "1 checkpoints to train as submitit-local jobs" in out
    assert ": ok (" in out
    (log,) = jobs.glob("*_0_log.out")
    (err,) = jobs.glob("*_0_log.err")
    text = log.read_text() + err.read_text()
    assert "this job is preempted" in text and "Requeued job" in text
    assert "(resuming)" in log.read_text()  # the requeued job went on from last.pt
    (run,) = [p.parent for p in ck.glob("smoke/*/final.pt")]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r and not r.get("done")]
    assert steps == list(range(5, 41, 5))  # log_every 5 (smoke config), none lost or repeated
    assert records[-1]["done"] and records[-1]["step"] == 40
    from odesr.train_state import read_checkpoint

    assert read_checkpoint(run / "final.pt")[1]["step"] == 40


def test_bench_run_submitit_local_one_job_per_model(tmp_path: Path, data_root: Path) -> None:
    """... and the job logs go to the run's own folder, ``<checkpoints>/<profile>/jobs``, not
    to the current directory."""
    exp, results, ck = _experiment(tmp_path), tmp_path / "results", tmp_path / "ck"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "bench", "run", str(exp), "--results", str(results)]
    cmd += "--profile smoke --models bundled,bundled-again --executor submitit-local".split()
    cmd += ["--checkpoints", str(ck), "--no-progress"]
    out = subprocess.run(
        cmd, cwd=cwd, env=_env(data_root), capture_output=True, text=True, timeout=400
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("submitted") == 2 and out.stdout.count(": ok (") == 2
    assert list(cwd.iterdir()) == []
    assert len(list((ck / "smoke" / "jobs").glob("*_0_log.out"))) == 2
    rows = pd.read_csv(results / "smoke" / "sub.csv")
    n_images = len(list((data_root / "Set5" / "HR").iterdir()))
    assert sorted(rows["model"].unique()) == ["bundled", "bundled-again"]
    assert len(rows) == 2 * n_images  # 2 models x every Set5 image at x2, once each
    mean = rows.groupby(["model", "scale"])["psnr"].mean()
    assert mean["bundled"].tolist() == mean["bundled-again"].tolist()
    # bench/README.md's table for the bundled model (Set5 x2, one rk4 step): 36.10 dB
    assert mean["bundled"].tolist() == pytest.approx([36.10], abs=0.01)
