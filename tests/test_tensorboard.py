"""TensorBoard event files of a training run: scalars and validation images read back with
TensorBoard's own EventAccumulator and compared with ``metrics.jsonl`` (the independent record)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import odesr.train as tr

REPO = Path(__file__).resolve().parents[1]
event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is a dev dependency (make install)",
)


def _data_root() -> Path:
    for cand in (os.environ.get("ODESR_DATA"), str(REPO.parent / "shared" / "datasets")):
        if cand and (Path(cand) / "Set5" / "HR").is_dir():
            return Path(cand)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Set5 not found (set ODESR_DATA to the datasets folder)")
    pytest.skip("Set5 not found (set ODESR_DATA)")


def _events(run: Path):
    acc = event_accumulator.EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_training_writes_scalars_and_images(tmp_path: Path, one_thread) -> None:
    val = {"every": 3, "dataset": "Set5", "scales": [2.0, 3.0], "n_images": 1, "max_size": 32}
    cfg = tr.load_config(
        "smoke/vdsr-ode", {"data": ["Set5"], "val": val, "log_every": 2, "max_steps": 6}
    )
    run = tmp_path / "run"
    tr.train(cfg, run, device="cpu", data_root=str(_data_root()), progress=False)

    assert list(run.glob("events.out.tfevents.*")), "no event file in the run folder"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    acc = _events(run)
    tags = acc.Tags()
    for key in ("loss", "lr", "steps_per_s", "scale"):
        want = [(r["step"], r[key]) for r in records if key in r and not r.get("done")]
        got = [(e.step, e.value) for e in acc.Scalars(f"train/{key}")]
        assert [s for s, _ in got] == [s for s, _ in want] == [2, 4, 6]
        for (_, g), (_, w) in zip(got, want, strict=True):
            assert g == pytest.approx(w, rel=1e-6)  # event files store float32
    val_records = [r for r in records if "val_psnr" in r]
    assert [r["step"] for r in val_records] == [3, 6]
    for scale in ("2", "3"):
        got = [(e.step, e.value) for e in acc.Scalars(f"val/psnr_x{scale}")]
        want = [(r["step"], r["val_psnr"][scale]) for r in val_records]
        assert [s for s, _ in got] == [3, 6]
        assert [g for _, g in got] == pytest.approx([w for _, w in want], rel=1e-6)
        assert 10 < got[0][1] < 60  # a PSNR in dB, not a loss
    (image_tag,) = tags["images"]
    assert image_tag == "val/baby_x3"  # Set5's first image, at the largest validated scale
    images = acc.Images(image_tag)
    assert [e.step for e in images] == [3, 6]
    # bicubic | SR | HR side by side; metasr protocol on the 32 px crop at x3 (by hand: 32 is not
    # divisible by 3 -> crop 28, LR ceil(28/3) = 10, SR floor(10 * 3) = 30)
    assert (images[0].height, images[0].width) == (30, 3 * 30)


def test_resume_purges_events_past_the_checkpoint(tmp_path: Path, one_thread) -> None:
    import shutil

    base = {"data": ["Set5"], "val": {"every": 0}, "log_every": 1, "checkpoint_every": 2}
    run, data = tmp_path / "run", str(_data_root())

    def train(max_steps: int, resume: bool) -> None:
        cfg = tr.load_config("smoke/vdsr+t", {**base, "max_steps": max_steps})
        tr.train(cfg, run, resume=resume, device="cpu", data_root=data, progress=False)

    train(4, resume=False)
    shutil.copy(run / "last.pt", tmp_path / "step4.pt")
    train(6, resume=True)  # events of steps 5 and 6 written ...
    shutil.copy(tmp_path / "step4.pt", run / "last.pt")  # ... then "killed" back to step 4
    train(6, resume=True)
    steps = [e.step for e in _events(run).Scalars("train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]  # 5 and 6 once each: the stale ones were purged
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r and not r.get("done")] == steps


def test_without_tensorboard_only_metrics_jsonl(tmp_path: Path, monkeypatch) -> None:
    from odesr import tensorboard_log

    monkeypatch.setattr(tensorboard_log, "_summary_writer", lambda: None)

    class Log:
        def write(self, **record):
            self.last = record

    log = Log()
    assert tensorboard_log.tee(log, tmp_path, enabled=True) is log
    assert not list(tmp_path.iterdir())
