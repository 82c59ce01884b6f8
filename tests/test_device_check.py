"""bench.device_check's small-model section (issue 25), as a CPU dry run: it runs end to end,
writes every number to the JSON and both tables to the Markdown, and compares with the CPU
calibration it is given. The GPU numbers themselves come only from a lent GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import device_check
from odesr.train import load_config


def test_cpu_reference_is_the_calibrated_step_time() -> None:
    """A made-up calibration: 0.5 s per step plus nothing per GFLOP is 2 steps/s."""
    cal = {"train": {"vdsr": {"step_s": 0.5, "s_per_gflop": 0.0}, "rdn": {"step_s": 0.25,
           "s_per_gflop": 0.0}}}  # fmt: skip
    assert device_check._cpu_step_seconds(load_config("cpu/vdsr-ode", []), cal) == 0.5
    assert device_check._cpu_step_seconds(load_config("cpu/rdn+t", []), cal) == 0.25
    assert device_check._cpu_step_seconds(load_config("cpu/rdn+t", []), None) is None


def test_small_model_section_dry_run(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "dc"
    argv = [
        "--data-root", str(data_root), "--out", str(out), "--device", "cpu",
        "--skip", "eval", "--skip", "train", "--small-profile", "smoke",
        "--ks", "1,2", "--small-steps", "4", "--images", "1",
    ]  # fmt: skip
    assert device_check.main(argv) == 0
    info = json.loads((out / "device-check.json").read_text())
    train, evals = info["small_train"], info["small_eval"]
    assert [(r["model"], r["k"]) for r in train] == [
        (m, k) for m in device_check.SMALL_MODELS for k in (1, 2)
    ]
    from bench.cost_model import measured_gpu_steps, step_key
    from odesr.train import load_config

    measured = measured_gpu_steps(out / "device-check.json")  # K = 1 runs price one seed
    for r in train:
        assert "error" not in r, r
        if r["k"] == 1:
            assert r["step_key"] == step_key(load_config(f"smoke/{r['model']}", []))
            assert measured[r["step_key"]] == r["seed_steps_per_s"]
        assert r["seed_steps_per_s"] > 0 and r["steps"] == 4
        assert r["vs_cpu"] == pytest.approx(r["seed_steps_per_s"] / r["cpu_one_thread_steps_per_s"])
    assert [r["model"] for r in evals] == list(device_check.SMALL_MODELS)
    for r in evals:  # 1 image x 3 scales; the pipeline holds the network's time
        assert r["image_scales"] == 3 and r["pipeline_ms"] >= r["network_ms"] > 0
        assert r["network_ops"] > 0 and r["other_ops"] > 0
    md = (out / "device-check.md").read_text()
    assert "K seeds trained together" in md and "evaluation pipeline against the network" in md
    assert md.count("| rdn-ode |") == 3  # two K rows, one evaluation row


def test_op_count_splits_the_network_from_the_pipeline(data_root: Path) -> None:
    """The network's share equals the operators of the same super_resolve call counted on its
    own (a plain dispatch mode around it), the rest is what the pipeline adds."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from odesr.data import list_images, load_images
    from odesr.degrade import make_case
    from odesr.evaluate import EvalSettings
    from odesr.models import build
    from odesr.train import load_config

    class Plain(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Plain.n += 1
            return func(*args, **(kwargs or {}))

    images = load_images(list_images("B100", str(data_root))[:1])
    model = build(dict(load_config("smoke/vdsr-ode", [])["model"])).eval()
    _, lr, case = make_case(images[0].rgb[None], 2.0, EvalSettings().protocol)
    model.super_resolve(lr, 2.0, case.sr_size)  # resize matrices made: count steady states
    ops = device_check._OpCount()
    ops.run(model, images, [2.0], EvalSettings())
    with Plain():
        model.super_resolve(lr, 2.0, case.sr_size)
    assert ops.network == Plain.n > 0
    assert ops.other > 0
    assert "super_resolve" not in vars(model)  # the wrapper is gone


def test_small_runs_share_the_data_workers(tmp_path: Path, data_root: Path, monkeypatch) -> None:
    """K seeds share the data workers (workers // K each, at least one): the run records them and
    the share of its time spent waiting for batches."""
    import odesr.multiseed

    monkeypatch.setattr(device_check, "SMALL_MODELS", ("vdsr+t",))
    given = []
    real = odesr.multiseed.train_seeds

    def recording(*args, **kwargs):
        given.append(kwargs["data_workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(odesr.multiseed, "train_seeds", recording)
    (row,) = device_check.small_train(str(data_root), tmp_path, "cpu", [2], 4, "smoke", None, 5)
    assert "error" not in row, row
    assert given == [2] and row["data_workers"] == 4 and 0 <= row["data_share"] <= 1
    assert row["vs_cpu"] is None and row["seed_steps_per_s"] > 0
