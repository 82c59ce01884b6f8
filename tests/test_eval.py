from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
import torch

from odesr.cli import main
from odesr.evaluate import EvalSettings, evaluate_dataset, parse_scales, summarize
from odesr.models import build


def test_parse_scales():
    assert parse_scales("1.1:1.5:0.1") == [1.1, 1.2, 1.3, 1.4, 1.5]
    assert parse_scales("2,3,4") == [2.0, 3.0, 4.0]
    assert parse_scales("1.5,2.7") == [1.5, 2.7]
    assert len(parse_scales("1.1:4.0:0.1")) == 30
    for bad in ["", "a", "1:2", "0.5", "3:2:0.1", "nan"]:
        with pytest.raises(ValueError):
            parse_scales(bad)


def _published(reference, dataset: str) -> pd.DataFrame:
    return pd.read_csv(reference / "published_bicubic.csv").query("dataset == @dataset")


def _check_published(rows, published):
    means = {round(s, 6): (p, ss) for s, p, ss, _ in summarize(rows)}
    for _, ref in published.iterrows():
        p, s = means[float(ref.scale)]
        assert abs(p - ref.psnr) <= 0.015, (ref.scale, p, ref.psnr)
        assert abs(s - ref.ssim) <= 0.001, (ref.scale, s, ref.ssim)


def test_set5_bicubic_matches_published(data_root, reference):
    rows = evaluate_dataset(
        build({"name": "bicubic"}),
        "Set5",
        [2, 3, 4],
        data_root,
        EvalSettings(protocol="modcrop"),
        progress=False,
    )
    _check_published(rows, _published(reference, "Set5"))


@pytest.mark.slow
def test_b100_bicubic_matches_published(data_root, reference):
    rows = evaluate_dataset(
        build({"name": "bicubic"}),
        "B100",
        [2, 3, 4],
        data_root,
        EvalSettings(protocol="modcrop"),
        progress=False,
    )
    _check_published(rows, _published(reference, "B100"))


@pytest.mark.slow
def test_b100_bicubic_integer_scales_match_paper_table1(data_root, reference):
    rows = evaluate_dataset(
        build({"name": "bicubic"}), "B100", [2, 3, 4], data_root, EvalSettings(), progress=False
    )
    paper = pd.read_csv(reference / "paper_tables.csv").query(
        "table == 'table1' and method == 'bicubic'"
    )
    for scale, p, _, n in summarize(rows):
        ref = float(paper[(paper.scale - scale).abs() < 1e-6].psnr.iloc[0])
        assert n == 100 and abs(p - ref) <= 0.01, (scale, p, ref)


def test_cli_eval_writes_tidy_csv(data_root, tmp_path, capsys):
    out = tmp_path / "sub" / "e.csv"
    rc = main(
        [
            "eval",
            "--model",
            "bicubic",
            "--dataset",
            "Set5",
            "--scales",
            "1.5,2.7",
            "--out",
            str(out),
            "--data-root",
            str(data_root),
            "--no-progress",
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10
    for col in ["model", "dataset", "image", "scale", "psnr", "ssim", "seconds", "nfe", "protocol"]:
        assert col in rows[0]
    assert {r["nfe"] for r in rows} == {"0"} and rows[0]["protocol"] == "metasr"
    assert "x2.7" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--model", "nope"], "unknown model"),
        (["--model", "rdn-fixed"], "needs trained weights"),  # published per scale only
        (["--model", "vdsr-ode", "--seed", "99"], "no published 'vdsr-ode' of seed 99"),
        (["--model", "bicubic", "--scales", "0.5"], "scale"),
        (["--model", "bicubic", "--dataset", "Set14"], "Set14"),
    ],
)
def test_cli_eval_errors_one_line_exit_2(data_root, tmp_path, capsys, argv, needle):
    if "--dataset" not in argv:
        argv = argv + ["--dataset", "Set5"]
    rc = main(["eval", *argv, "--out", str(tmp_path / "x.csv"), "--data-root", str(data_root)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def test_bicubic_fast_path_matches_generic_path_and_float64(data_root, monkeypatch):
    """Bicubic's image-by-image path (forked workers, float32 metrics against prepared HR
    statistics) gives the rows of the generic batched path, in the same order, and agrees with
    float64 metrics to 1e-4 dB / 1e-5 (tables print 0.01 dB / 1e-4). Its torch version, that
    is: the native kernels (tests/test_native.py) agree within those tolerances only."""
    monkeypatch.setenv("ODESR_NATIVE", "0")
    from baselines.bicubic import Bicubic
    from odesr.data import list_images, load_image
    from odesr.evaluate import evaluate_images

    class Plain(Bicubic):  # same model under another name: takes the generic path
        def __init__(self) -> None:
            super().__init__()
            self.spec = {"name": "bicubic-generic"}

    images = [load_image(f) for f in list_images("Set5", data_root)] * 2  # sizes repeat
    scales = [1.3, 2.0, 3.7]
    fast = evaluate_images(build({"name": "bicubic"}), images, scales, EvalSettings(workers=2))
    serial = evaluate_images(build({"name": "bicubic"}), images, scales, EvalSettings(workers=1))
    generic = evaluate_images(Plain(), images, scales, EvalSettings())
    exact = evaluate_images(Plain(), images, scales, EvalSettings(metric_dtype=torch.float64))
    key = [(r["image"], r["scale"]) for r in fast]
    names = [m.name for m in images[:5]]
    assert key == [(r["image"], r["scale"]) for r in generic]  # scale, then size group
    assert key == [(n, s) for s in scales for n in names for _ in range(2)]
    for a, b, c, d in zip(fast, serial, generic, exact, strict=True):
        assert a["psnr"] == b["psnr"] == c["psnr"] and a["ssim"] == b["ssim"] == c["ssim"]
        assert abs(a["psnr"] - d["psnr"]) < 1e-4 and abs(a["ssim"] - d["ssim"]) < 1e-5


def test_bicubic_worker_pool_finishes_when_parent_ignores_sigterm(data_root):
    """A parent whose SIGTERM handler returns (submitit's job wrapper does) must not hang the forked
    bicubic pool at shutdown (it did: Pool.terminate waited on workers that inherited it)."""
    import subprocess
    import sys

    code = (
        "import signal; signal.signal(signal.SIGTERM, lambda *_: print('bypassing SIGTERM'))\n"
        "from odesr.evaluate import EvalSettings, evaluate_dataset\n"
        "from odesr.models import build\n"
        f"rows = evaluate_dataset(build({{'name': 'bicubic'}}), 'Set5', [2.0], {str(data_root)!r},"
        " EvalSettings(workers=2), progress=False)\n"
        "print(len(rows))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"


def test_models_are_evaluated_in_float32_not_tf32():
    """PyTorch's default runs cuDNN convolutions in TF32 on a GPU; an evaluation turns that off
    for the model's solve (unless EvalSettings.tf32) and restores the caller's settings after."""
    from odesr.data import LoadedImage
    from odesr.evaluate import evaluate_images

    seen = []

    class Probe(torch.nn.Module):
        spec = {"name": "probe"}

        def super_resolve(self, lr, scale, size, solver=None, tile=None):
            from types import SimpleNamespace

            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            up = torch.nn.functional.interpolate(lr, size=size, mode="bicubic")
            return SimpleNamespace(image=up.clamp(0, 1), nfe=0)

    image = LoadedImage(path=Path("probe.png"), rgb=torch.rand(3, 24, 24), channels=3, bit_depth=8)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        evaluate_images(Probe(), [image], [2.0])
        evaluate_images(Probe(), [image], [2.0], EvalSettings(tf32=True))
        assert seen == [(False, False), (True, True)]
        assert torch.backends.cudnn.allow_tf32 is True  # the caller's setting is back
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_batched_scores_equal_each_image_scored_alone(data_root, tmp_path):
    """A network's rows from batches (mixed sizes, a grey file of the same size as an RGB one,
    an image twice) equal, bit for bit, those of each image evaluated alone, and agree with
    PSNR/SSIM computed directly on the protocol's HR crop in float64 (odesr.metrics.score)."""
    from PIL import Image

    from odesr.data import list_images, load_image
    from odesr.degrade import make_case
    from odesr.evaluate import evaluate_images
    from odesr.metrics import score
    from odesr.train import load_config

    torch.manual_seed(0)
    model = build(dict(load_config("smoke/vdsr+t", [])["model"])).eval()
    files = list_images("B100", data_root)[:4]
    grey_file = tmp_path / "grey.png"
    Image.open(files[0]).convert("L").save(grey_file)
    images = [load_image(f) for f in [*files, grey_file]]
    images.append(images[1])
    assert images[4].channels == 1 and images[4].rgb.shape == images[0].rgb.shape
    scales = [2.0, 3.3]
    batched = evaluate_images(model, images, scales, EvalSettings(batch_size=16))
    alone = {
        (id(m), s): evaluate_images(model, [m], [s], EvalSettings(batch_size=1))[0]
        for m in images
        for s in scales
    }
    order = [(n, s) for s in scales for n in (0, 1, 2, 5, 3, 4)]  # size groups, grey apart
    assert [(r["image"], r["scale"]) for r in batched] == [(images[n].name, s) for n, s in order]
    for (n, s), row in zip(order, batched, strict=True):
        ref = alone[(id(images[n]), s)]
        assert (row["psnr"], row["ssim"]) == (ref["psnr"], ref["ssim"])
        if images[n].channels == 3:
            hr, lr, case = make_case(images[n].rgb[None], s)
            with torch.no_grad():
                sr = model.super_resolve(lr, s, case.sr_size).image
            p, q = score(sr.double(), hr.double(), s)
            assert abs(row["psnr"] - float(p)) < 1e-3 and abs(row["ssim"] - float(q)) < 5e-5


def test_prepared_batches_follow_settings_and_keep_the_newest(data_root, monkeypatch):
    """A batch's prepared HR side is made again when what it depends on changes (metric dtype,
    model dtype, channel count), is reused otherwise, and the newest one stays cached even when
    it alone is over the byte budget."""
    import dataclasses
    import importlib

    from odesr.data import list_images, load_image

    ev = importlib.import_module("odesr.evaluate")  # the package's `evaluate` is a function
    images = [load_image(f) for f in list_images("Set5", data_root)[:1]]
    first = ev._prepared(images, EvalSettings())
    assert ev._prepared(images, EvalSettings()) is first
    wide = ev._prepared(images, EvalSettings(metric_dtype=torch.float64))
    assert wide.reference.dtype == torch.float64 and first.reference.dtype == torch.float32
    assert ev._prepared(images, EvalSettings(dtype=torch.float64)).hr.dtype == torch.float64
    grey = [dataclasses.replace(images[0], channels=1)]  # the same tensor, scored as grey
    assert ev._prepared(grey, EvalSettings()).reference.plane.shape[1] == 1
    assert first.reference.plane.shape[1] == 1 and first.reference.test_y_channel
    assert not ev._prepared(grey, EvalSettings()).reference.test_y_channel
    monkeypatch.setattr(ev, "_PREPARED_BYTES", 1)
    newest = ev._prepared(images, EvalSettings(y_rounding="float"))
    assert ev._prepared(images, EvalSettings(y_rounding="float")) is newest


@pytest.mark.slow
@pytest.mark.parametrize("config", ["smoke/rdn+t", "smoke/rdn-ode"])
def test_compiled_backbone_gives_the_same_rows(data_root, config):
    """EvalSettings(compile=True) runs the backbone through torch.compile for the call only:
    the rows equal the eager ones (PSNR to 1e-6 dB; bit for bit on the measured CPU) and the
    model holds its plain backbone again afterwards."""
    from odesr.data import list_images, load_image
    from odesr.evaluate import evaluate_images
    from odesr.train import load_config

    torch.manual_seed(0)
    model = build(dict(load_config(config, [])["model"])).eval()
    holder = model.func if hasattr(model, "func") else model
    plain = holder.net
    images = [load_image(f) for f in list_images("Set5", data_root)[:2]]
    eager = evaluate_images(model, images, [2.0, 3.3], EvalSettings())
    compiled = evaluate_images(model, images, [2.0, 3.3], EvalSettings(compile=True))
    assert holder.net is plain
    for a, b in zip(eager, compiled, strict=True):
        assert (a["image"], a["scale"]) == (b["image"], b["scale"])
        assert abs(a["psnr"] - b["psnr"]) < 1e-6 and abs(a["ssim"] - b["ssim"]) < 1e-8


def test_batch_size_default_follows_the_device():
    """No batch size given: one image at a time on the CPU (same rows, less CPU time),
    EVAL_BATCH_SIZE images on a GPU; a given size is kept."""
    from odesr.arguments import CPU_EVAL_BATCH_SIZE, EVAL_BATCH_SIZE

    assert EvalSettings().batch_size == EvalSettings(device="cpu").batch_size == 1
    assert CPU_EVAL_BATCH_SIZE == 1
    assert EvalSettings(device="cuda").batch_size == EVAL_BATCH_SIZE == 16
    assert EvalSettings(device="cuda:1", batch_size=3).batch_size == 3
    auto = EvalSettings(device="auto").batch_size
    assert auto == (EVAL_BATCH_SIZE if torch.cuda.is_available() else 1)


def test_compile_failure_is_one_line(data_root, tmp_path, monkeypatch, capsys):
    """A torch.compile that fails (here: made to) ends odesr eval --compile with one line naming
    the option, exit 2, no traceback and no CSV; the model's backbone is put back."""
    from torch._dynamo.exc import TorchDynamoException

    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise TorchDynamoException("no working C++ compiler found\nmore lines")

    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: Broken())
    out = tmp_path / "rows.csv"
    bundled = str(Path(__file__).resolve().parents[1] / "odesr/weights/vdsr-ode-cpu.pt")
    argv = ["eval", "--checkpoint", bundled, "--dataset", "Set5",
            "--scales", "2", "--limit", "1", "--compile", "--out", str(out),
            "--data-root", str(data_root), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--compile" in err and "C++ compiler" in err, err
    assert "Traceback" not in err and not out.exists()
