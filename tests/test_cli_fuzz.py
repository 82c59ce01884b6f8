"""Property-based fuzz of the command line (hypothesis): whatever the arguments, ``odesr`` exits
0 or 2, never prints a traceback, and a refusal is one line. The expensive parts (evaluation,
the network pass, training) are replaced by cheap stand-ins, so parsing, validation, image
reading, model loading and output writing are what runs. ``ODESR_FUZZ_LOG=path`` keeps a line
per argument set; ``ODESR_FUZZ_EXAMPLES=N`` sets how many run (default 300)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from odesr import train as train_mod
from odesr.cli import main
from odesr.upscale import BUNDLED_MODEL

# the modules (``odesr.evaluate`` / ``odesr.upscale`` name the API functions of the package)
evaluate_mod = importlib.import_module("odesr.evaluate")
upscale_mod = importlib.import_module("odesr.upscale")

NUMBERS = [
    "2", "1", "0", "-1", "1.5", "3.7", "8", "1e-9", "1e12", "nan", "inf", "-inf", "1e309",
    "5e-324", "abc", "", " ", "2:1e12:1", "2:4:0.5", "2,2,3", "2:3", ":", "1:2:3:4", "3:2:1",
    "2:4:0", "2:inf:1", "1e-300", "9" * 30, "0x10", "1_000", "2,", ",", "--", "-",
]  # fmt: skip
DEVICES = ["cpu", "cuda", "cuda:0", "cuda:-1", "mps", "foo", "", "cpu:0", "meta", "CPU", "xla"]
SOLVERS = ["euler", "midpoint", "rk4", "rk4-classic", "dopri5", "nope", "", "RK4"]
EXAMPLES = int(os.environ.get("ODESR_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Files the fuzzer may name: good and bad images, a folder, a text file, a bomb."""
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / "img.png")
    (d / "set").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / "set" / "a.png")
    (d / "text.png").write_text("not an image")
    (d / "empty.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / "f.tif")
    (d / "out").mkdir()
    (d / "bad.yaml").write_text("model: {name: vdsr-ode\nlr: [1, 2\n")
    return {
        "img": str(d / "img.png"),
        "set": str(d / "set"),
        "text": str(d / "text.png"),
        "empty": str(d / "empty.png"),
        "tif": str(d / "f.tif"),
        "missing": str(d / "nope.png"),
        "out_dir": str(d / "out"),
        "out_png": str(d / "out" / "o.png"),
        "out_csv": str(d / "out" / "e.csv"),
        "under_file": str(d / "img.png" / "x.csv"),
        "yaml_bad": str(d / "bad.yaml"),
        "ckpt": str(shutil.copy(BUNDLED_MODEL, d / "model.pt")),  # a copy: --out may name it
    }


@pytest.fixture(scope="module")
def cheap(world):
    """Stand-ins for the expensive steps (module-scoped: hypothesis reruns the test body)."""

    def fake_eval(model, dataset, scales, data_root=None, settings=None, progress=True, limit=None):
        evaluate_mod.list_images(dataset, data_root)  # real dataset resolution
        return [
            dict(image="a", scale=s, psnr=30.0, ssim=0.9, seconds=0.0, nfe=1, protocol="metasr",
                 dataset=str(dataset))
            for s in scales
        ]  # fmt: skip

    def fake_upscale(model, arr, scale, size, *, sink=None, on_tile=None, **kw):
        H, W = size
        if sink is not None:
            sink(np.full((H, W, 3), 0.5, np.float32), (slice(0, H), slice(0, W)))
        alpha = np.ones((H, W), np.float32) if arr.shape[2] == 4 else None
        return upscale_mod.Restored(None, alpha, 1)

    def fake_train(cfg, out, **kw):
        return {"step": 0, "loss": 0.0, "final": str(out)}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_mod, "evaluate_dataset", fake_eval)
        mp.setattr(upscale_mod, "upscale_array", fake_upscale)
        mp.setattr(train_mod, "train", fake_train)
        yield


def _argv(draw, world: dict[str, str]) -> list[str]:
    paths = st.sampled_from(sorted(world.values()))
    num = st.sampled_from(NUMBERS) | st.text(max_size=6)
    command = draw(st.sampled_from(["eval", "upscale", "train", "bogus", ""]))
    argv = [command] if command else []
    if command == "eval":
        options = {
            "--scales": num, "--steps": num, "--step-size": num, "--rtol": num, "--atol": num,
            "--tile": num, "--batch-size": num, "--limit": num,
            "--device": st.sampled_from(DEVICES), "--solver": st.sampled_from(SOLVERS),
            "--protocol": st.sampled_from(["metasr", "x"]),
            "--y-rounding": st.sampled_from(["matlab", "float", "x"]), "--data-root": paths,
        }  # fmt: skip
        if draw(st.booleans()):
            argv += ["--model", draw(st.sampled_from(["bicubic", "vdsr-ode", "nope", ""]))]
        else:
            argv += ["--checkpoint", draw(paths)]
        if draw(st.integers(0, 9)):
            argv += ["--dataset", draw(paths | st.sampled_from(["Set5", "Set14", "x"]))]
        if draw(st.integers(0, 9)):
            argv += ["--out", draw(paths)]
        argv.append("--no-progress")
    elif command == "upscale":
        options = {
            "--scale": num, "--steps": num, "--step-size": num, "--tile": num, "--overlap": num,
            "--device": st.sampled_from(DEVICES), "--solver": st.sampled_from(SOLVERS),
            "--format": st.sampled_from(["png", "jpeg", "tiff", "webp", "gif", ""]),
            "--model": st.sampled_from(["bicubic", "vdsr-ode", "meta-rdn", "nope"]),
            "--checkpoint": paths, "--trajectory": paths,
        }  # fmt: skip
        argv += draw(st.lists(paths, min_size=0, max_size=2))
        if draw(st.integers(0, 9)):
            argv += ["--scale", draw(num)]
        if draw(st.integers(0, 9)):
            argv += ["--out", draw(paths)]
        argv.append("--no-progress")
        if draw(st.booleans()):
            argv.append("--overwrite")
    elif command == "train":
        options = {
            "--device": st.sampled_from(["auto", *DEVICES]), "--max-steps": num, "--seed": num,
            "--out": paths,
        }  # fmt: skip
        configs = ["smoke/vdsr-ode", "nope/x", "", world["text"], world["yaml_bad"]]
        argv.append(draw(st.sampled_from(configs)))
        argv.append("--no-progress")
    else:
        options = {"--help": st.just(None), "--version": st.just(None)}
    for flag in draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4)):
        value = draw(options[flag])
        argv += [flag] if value is None else [flag, value]
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["-h", "--bogus", "x", "--"])))
    return argv


@st.composite
def _argvs(draw, world):
    return _argv(draw, world)


def test_cli_fuzz_exit_0_or_2_no_traceback(world, cheap) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_argvs(world))
    def check(argv: list[str]) -> None:
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
                rc = exc.code if isinstance(exc.code, int) else 2
        for p in Path(world["out_dir"]).iterdir():  # keep each example independent
            if p.is_file():
                p.unlink()
        text = err.getvalue()
        log = os.environ.get("ODESR_FUZZ_LOG")
        if log:
            with open(log, "a") as fh:
                last = (text.strip().splitlines() or [""])[-1]
                fh.write(f"{rc}\t{argv!r}\t{last[:160]}\n")
        assert rc in (0, 2), (argv, text)
        assert "Traceback" not in text, (argv, text)
        if rc == 2:  # the refusal is one line (besides one-line warnings)
            lines = [ln for ln in text.splitlines() if ln.strip() and "warning:" not in ln]
            assert len(lines) == 1, (argv, text)

    check()
