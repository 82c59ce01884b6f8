"""The Python face (``odesr.load_model / upscale / evaluate``): light import, same type back,
MATLAB's output size, MATLAB's numbers (golden file), the rows ``odesr eval`` writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import odesr

REPO = Path(__file__).resolve().parents[1]


def test_import_odesr_does_not_import_torch() -> None:
    code = "import sys, odesr; print(sorted(odesr.__all__), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "['__version__', 'evaluate', 'load_model', 'upscale'] False"
    assert "load_model" in odesr.__doc__ and "upscale" in odesr.__doc__


def test_api_names_survive_importing_the_modules() -> None:
    import importlib

    mod = importlib.import_module("odesr.upscale")
    importlib.import_module("odesr.evaluate")
    assert callable(odesr.upscale) and callable(odesr.evaluate)
    assert sys.modules["odesr.upscale"] is mod and hasattr(mod, "upscale_array")


def test_load_model() -> None:
    assert odesr.load_model().is_ode  # the bundled small vdsr-ODE
    assert not odesr.load_model("bicubic").is_ode


def test_upscale_matches_matlab_golden(golden: Path) -> None:
    # MATLAB imresize(A, [5 5], 'bicubic') of a 4x4 image (shared/golden/README.md): x1.25
    a = np.zeros((4, 4), np.uint8)
    a[0, 0], a[1, 0], a[0, 1], a[0, 3] = 100, 10, 1, 100
    want = np.clip(np.round(np.load(golden / "matlab_imresize" / "up_up_topleft_noaa.npy")), 0, 255)
    got = odesr.upscale(a, 1.25, "bicubic")
    assert got.dtype == np.uint8 and got.shape == (5, 5)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((5, 7), np.uint8),
        ((5, 7, 3), np.uint8),
        ((5, 7), np.uint16),
        ((5, 7, 4), np.uint8),
        ((5, 7, 1), np.uint16),
    ],
)
def test_upscale_numpy_same_type_and_ceil_size(shape, dtype) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    out = odesr.upscale(a, 2.5, "bicubic")
    assert out.dtype == dtype
    assert out.shape == (13, 18, *shape[2:])  # ceil(5 x 2.5) = 13, ceil(7 x 2.5) = 18


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_upscale_pil_same_mode(mode: str) -> None:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (6, 9)).astype(np.uint16))
    else:
        n = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        arr = rng.integers(0, 255, (6, 9, n)).astype(np.uint8)
        im = Image.fromarray(arr[..., 0] if n == 1 else arr)
    out = odesr.upscale(im, 1.5, "bicubic")
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == (14, 9)


def test_upscale_equals_the_cli(tmp_path: Path) -> None:
    from odesr.cli import main

    rng = np.random.default_rng(2)
    arr = rng.integers(0, 255, (11, 13, 3)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    argv = f"upscale {tmp_path / 'in.png'} --scale 2.3 --out {out} --steps 3 --no-progress"
    assert main(argv.split()) == 0
    cli = np.asarray(Image.open(out))
    api = odesr.upscale(arr, 2.3, steps=3)  # the bundled model, same solver override
    assert cli.shape == api.shape == (26, 30, 3)  # ceil(11 x 2.3), ceil(13 x 2.3)
    assert np.array_equal(cli, api)


def test_upscale_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        odesr.upscale(np.zeros((4, 4), np.int32), 2, "bicubic")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        odesr.upscale(np.full((4, 4), 2.0, np.float32), 2, "bicubic")
    with pytest.raises(ValueError, match="> 1"):
        odesr.upscale(np.zeros((4, 4), np.uint8), 0.5, "bicubic")
    with pytest.raises(ValueError, match="not an ODE model"):
        odesr.upscale(np.zeros((4, 4), np.uint8), 2, "bicubic", method="euler")


def test_evaluate_returns_the_rows_odesr_eval_writes(tmp_path: Path, data_root: Path) -> None:
    from odesr.cli import main
    from odesr.evaluate import EVAL_COLUMNS

    table = odesr.evaluate("bicubic", "Set5", [2, 3], data_root=data_root)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == EVAL_COLUMNS
    csv = tmp_path / "e.csv"
    argv = f"eval --model bicubic --dataset Set5 --scales 2,3 --out {csv} --no-progress".split()
    assert main([*argv, "--data-root", str(data_root)]) == 0
    cli = pd.read_csv(csv, keep_default_na=False)
    key = ["dataset", "image", "scale"]
    a, b = (
        table.sort_values(key).reset_index(drop=True),
        cli.sort_values(key).reset_index(drop=True),
    )
    assert (
        a[["model", "dataset", "protocol", "y_rounding"]]
        .astype(str)
        .equals(b[["model", "dataset", "protocol", "y_rounding"]].astype(str))
    )
    assert np.allclose(a["psnr"], b["psnr"], atol=1e-9) and np.allclose(a["ssim"], b["ssim"])
    # independent reference: published bicubic Set5 PSNR, 33.66 / 30.39 dB (2 decimals; metasr)
    means = table.groupby("scale")["psnr"].mean().tolist()
    assert means == pytest.approx([33.66, 30.39], abs=0.015)
