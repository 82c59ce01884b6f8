"""``odesr upscale``: bad inputs (one line, exit 2, nothing overwritten) and the happy paths
(formats, bit depths, grey, alpha, folders, sizes, tiles, trajectory GIF)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from odesr import checkpoints, models
from odesr.cli import main
from odesr.degrade import quantize
from odesr.resize import imresize
from odesr.tiling import bicubic_window, tile_grid
from odesr.upscale import output_shape, upscale_array

REPO = Path(__file__).resolve().parents[1]
SENTINEL = b"pre-existing output, must stay untouched"


def _rgb(h: int = 12, w: int = 16, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(x / 3.0)[..., None] * np.cos(y / 4.0)[..., None]
    arr = base + 0.1 * rng.random((h, w, channels))
    return (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP barrier stalls on a busy 2-core box
    (a 32x36 conv takes ~50 ms with 2 threads under load, ~0.4 ms with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """Random-weight smoke checkpoints: an ODE model and a model of another kind."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    out = {}
    for name in ("vdsr-ode", "meta-rdn"):
        path = d / f"{name}.pt"
        spec = {"name": name, "preset": "smoke"}
        if name == "meta-rdn":
            spec["hidden"] = 16
        checkpoints.save_checkpoint(path, models.build(spec))
        out[name] = path
    return out


@pytest.fixture()
def img(tmp_path: Path) -> Path:
    return _save(tmp_path / "in.png", _rgb())


@pytest.fixture()
def existing(tmp_path: Path) -> Path:
    out = tmp_path / "out" / "result.png"
    out.parent.mkdir()
    out.write_bytes(SENTINEL)
    return out


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["upscale", "--no-progress", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_user_error(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("odesr: error: "), err
    assert needle.lower() in lines[0].lower(), (needle, err)
    assert "Traceback" not in err


# --------------------------------------------------------------------------- bad inputs


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "empty":
        p = tmp_path / "empty.png"
        p.write_bytes(b"")
        return p
    if kind == "truncated":
        good = _save(tmp_path / "good.png", _rgb(40, 40)).read_bytes()
        p = tmp_path / "truncated.png"
        p.write_bytes(good[: len(good) // 2])
        return p
    if kind == "text":
        p = tmp_path / "notes.png"
        p.write_text("this is a text file, not an image\n")
        return p
    if kind == "tiny":
        return _save(tmp_path / "tiny.png", _rgb(1, 1))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("missing", "no such file"),
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("text", "not a readable image"),
        ("tiny", "too small"),
    ],
)
def test_bad_image_one_line_exit_2_nothing_written(
    tmp_path: Path, existing: Path, capsys, kind: str, needle: str
) -> None:
    bad = _bad_file(tmp_path, kind)
    argv = [str(bad), "--scale", "2", "--out", str(existing), "--model", "bicubic"]
    rc, _, err = _run([*argv, "--overwrite"], capsys)
    _assert_user_error(rc, err, needle)
    assert bad.name in err
    assert existing.read_bytes() == SENTINEL


@pytest.mark.parametrize("scale", ["1", "0.5", "-2", "nan", "inf", "abc", "0"])
def test_bad_scale(img: Path, existing: Path, capsys, scale: str) -> None:
    argv = [str(img), "--scale", scale, "--out", str(existing), "--model", "bicubic", "--overwrite"]
    rc, _, err = _run(argv, capsys)
    _assert_user_error(rc, err, "--scale")
    assert repr(scale) in err
    assert existing.read_bytes() == SENTINEL


def test_huge_output_refused_before_decoding(tmp_path: Path, existing: Path, capsys) -> None:
    big = _save(tmp_path / "big.png", np.zeros((1000, 1000, 3), np.uint8))
    base = [str(big), "--out", str(existing), "--model", "bicubic", "--overwrite"]
    rc, _, err = _run([*base, "--scale", "100"], capsys)
    _assert_user_error(rc, err, "exceeds the 256 Mpx limit")
    assert "big.png" in err and "100000x100000" in err
    rc, _, err = _run([*base, "--scale", "17", "--tile", "512"], capsys)  # 289 Mpx
    _assert_user_error(rc, err, "exceeds the 256 Mpx limit")
    assert existing.read_bytes() == SENTINEL


def test_budget_needs_tile(tmp_path: Path, existing: Path, capsys) -> None:
    big = _save(tmp_path / "big.png", np.zeros((1000, 1000, 3), np.uint8))
    argv = [str(big), "--out", str(existing), "--model", "bicubic", "--overwrite", "--scale", "9"]
    rc, _, err = _run(argv, capsys)
    _assert_user_error(rc, err, "exceeds the 64 Mpx budget; pass --tile")
    assert existing.read_bytes() == SENTINEL


def test_unwritable_output_folder(tmp_path: Path, img: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "sub" / "o.png"
    rc, _, err = _run([str(img), "--scale", "2", "--out", str(out), "--model", "bicubic"], capsys)
    _assert_user_error(rc, err, "is not a folder")
    assert str(blocker) in err
    assert blocker.read_text() == "x"


def test_existing_output_needs_overwrite(img: Path, existing: Path, capsys) -> None:
    rc, _, err = _run(
        [str(img), "--scale", "2", "--out", str(existing), "--model", "bicubic"], capsys
    )
    _assert_user_error(rc, err, "--overwrite")
    assert existing.read_bytes() == SENTINEL
    rc, _, err = _run(
        [str(img), "--scale", "2", "--out", str(existing), "--model", "bicubic", "--overwrite"],
        capsys,
    )
    assert rc == 0, err
    assert Image.open(existing).size == (32, 24)


def _bad_checkpoint(tmp_path: Path, kind: str, ckpts: dict[str, Path]) -> Path:
    p = tmp_path / f"{kind}.pt"
    if kind == "plain-torch":
        torch.save({"weights": torch.zeros(3)}, p)
    elif kind == "corrupt":
        data = ckpts["vdsr-ode"].read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        p.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "missing":
        pass
    return p


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("plain-torch", "not an odesr checkpoint"),
        ("corrupt", "not a readable odesr checkpoint"),
        ("garbage", "not a readable odesr checkpoint"),
        ("empty", "empty file"),
        ("missing", "no such file"),
    ],
)
def test_bad_checkpoint(
    tmp_path: Path, img: Path, existing: Path, ckpts, capsys, kind: str, needle: str
) -> None:
    ck = _bad_checkpoint(tmp_path, kind, ckpts)
    argv = [str(img), "--scale", "2", "--out", str(existing), "--checkpoint", str(ck)]
    rc, _, err = _run([*argv, "--overwrite"], capsys)
    _assert_user_error(rc, err, needle)
    assert ck.name in err
    assert existing.read_bytes() == SENTINEL


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "rdn-fixed"], "needs trained weights"),  # published per scale only
        (["--model", "bicubic", "--trajectory", "traj"], "not an ODE model"),
        (["--model", "bicubic", "--steps", "3"], "not an ODE model"),
        (["--model", "bicubic", "--tile", "0"], "--tile must be >= 8"),
        (["--model", "bicubic", "--format", "gif"], "--format"),
    ],
)
def test_bad_options(img: Path, existing: Path, capsys, extra: list[str], needle: str) -> None:
    argv = [str(img), "--scale", "2", "--out", str(existing), "--overwrite", *extra]
    rc, _, err = _run(argv, capsys)
    _assert_user_error(rc, err, needle)
    assert existing.read_bytes() == SENTINEL


def test_bad_solver_settings(img: Path, existing: Path, ckpts, capsys) -> None:
    base = [str(img), "--scale", "2", "--out", str(existing), "--overwrite"]
    base += ["--checkpoint", str(ckpts["vdsr-ode"])]
    rc, _, err = _run([*base, "--solver", "leapfrog"], capsys)
    _assert_user_error(rc, err, "unknown --solver 'leapfrog'")
    rc, _, err = _run([*base, "--step-size", "nan"], capsys)
    _assert_user_error(rc, err, "--step-size")
    assert existing.read_bytes() == SENTINEL


def test_unsupported_output_suffix(img: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _run(
        [str(img), "--scale", "2", "--out", str(tmp_path / "o.bmp"), "--model", "bicubic"], capsys
    )
    _assert_user_error(rc, err, "unsupported format '.bmp'")


def test_one_bad_file_in_a_folder_writes_nothing(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _save(src / "a.png", _rgb())
    (src / "b.png").write_text("not an image")
    out = tmp_path / "dst"
    rc, _, err = _run([str(src), "--scale", "2", "--out", str(out), "--model", "bicubic"], capsys)
    _assert_user_error(rc, err, "b.png")
    assert not out.exists() or not any(out.iterdir())


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("odesr")
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    bad = tmp_path / "bad.png"
    bad.write_text("text")
    proc = subprocess.run(
        [
            str(exe),
            "upscale",
            str(bad),
            "--scale",
            "2",
            "--out",
            str(tmp_path / "o.png"),
            "--model",
            "bicubic",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.png" in lines[0], proc.stderr
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize(
    "suffix, mode", [(".png", "RGB"), (".jpg", "RGB"), (".tif", "RGB"), (".webp", "RGB")]
)
def test_formats_in_and_out(tmp_path: Path, capsys, suffix: str, mode: str) -> None:
    src = _save(tmp_path / f"in{suffix}", _rgb(13, 17))
    out = tmp_path / f"out{suffix}"
    rc, stdout, err = _run(
        [str(src), "--scale", "1.7", "--out", str(out), "--model", "bicubic"], capsys
    )
    assert rc == 0, err
    im = Image.open(out)
    assert im.format == {".png": "PNG", ".jpg": "JPEG", ".tif": "TIFF", ".webp": "WEBP"}[suffix]
    assert im.size == (29, 23)  # ceil(17 * 1.7) x ceil(13 * 1.7), MATLAB's output size
    assert im.mode == mode
    assert "29x23" in stdout
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("h, w, scale", [(12, 16, 2.0), (13, 17, 1.7), (7, 9, 3.3), (5, 6, 4.0)])
def test_output_size_is_matlab_ceil(tmp_path: Path, capsys, h: int, w: int, scale: float) -> None:
    src = _save(tmp_path / "in.png", _rgb(h, w))
    out = tmp_path / "o.png"
    rc, _, err = _run(
        [str(src), "--scale", str(scale), "--out", str(out), "--model", "bicubic"], capsys
    )
    assert rc == 0, err
    assert Image.open(out).size == (math.ceil(w * scale), math.ceil(h * scale))  # as imresize
    assert output_shape(h, w, scale) == Image.open(out).size[::-1]


def test_bicubic_model_equals_imresize(tmp_path: Path, capsys) -> None:
    arr = _rgb(13, 17)
    src = _save(tmp_path / "in.png", arr)
    out = tmp_path / "o.png"
    rc, _, err = _run([str(src), "--scale", "2.5", "--out", str(out), "--model", "bicubic"], capsys)
    assert rc == 0, err
    got = np.asarray(Image.open(out)).astype(np.int64)
    x = torch.from_numpy(arr.transpose(2, 0, 1) / 255.0)
    ref = quantize(imresize(x, scale=2.5)) * 255  # MATLAB's size: ceil(13 x 2.5) x ceil(17 x 2.5)
    ref = ref.round().numpy().transpose(1, 2, 0).astype(np.int64)
    assert np.abs(got - ref).max() <= 1
    assert (got == ref).mean() > 0.999


def test_sixteen_bit_grey_stays_sixteen_bit(tmp_path: Path, capsys) -> None:
    y, x = np.mgrid[0:10, 0:14]
    arr = (30000 + 20000 * np.sin(x / 3.0) * np.cos(y / 2.0) + 7).astype(np.uint16)
    for suffix in (".png", ".tif"):
        src = _save(tmp_path / f"in16{suffix}", arr)
        assert Image.open(src).mode == "I;16"
        out = tmp_path / f"out16{suffix}"
        rc, _, err = _run(
            [str(src), "--scale", "2", "--out", str(out), "--model", "bicubic"], capsys
        )
        assert rc == 0, err
        im = Image.open(out)
        assert im.mode == "I;16" and im.size == (28, 20)
        got = np.asarray(im).astype(np.float64)
        ref = imresize(torch.from_numpy(arr / 65535.0)[None], scale=2.0)[0].numpy()
        ref = np.floor(np.clip(ref, 0, 1) * 65535 + 0.5)
        assert np.abs(got - ref).max() <= 1  # 16-bit precision, not 8-bit


def test_grey_stays_grey(tmp_path: Path, ckpts, capsys) -> None:
    src = _save(tmp_path / "g.png", _rgb(10, 12, channels=1)[..., 0])
    assert Image.open(src).mode == "L"
    out = tmp_path / "g_x2.png"
    rc, _, err = _run(
        [
            str(src),
            "--scale",
            "2",
            "--out",
            str(out),
            "--checkpoint",
            str(ckpts["vdsr-ode"]),
            "--steps",
            "1",
        ],
        capsys,
    )
    assert rc == 0, err
    im = Image.open(out)
    assert im.mode == "L" and im.size == (24, 20)


def test_rgba_keeps_alpha_resized_by_bicubic(tmp_path: Path, ckpts, capsys) -> None:
    arr = _rgb(10, 12, channels=4)
    arr[..., 3] = np.linspace(0, 255, 12).astype(np.uint8)[None, :]
    src = _save(tmp_path / "a.png", arr)
    out = tmp_path / "a_x2.png"
    rc, _, err = _run(
        [
            str(src),
            "--scale",
            "2.5",
            "--out",
            str(out),
            "--checkpoint",
            str(ckpts["vdsr-ode"]),
            "--steps",
            "1",
        ],
        capsys,
    )
    assert rc == 0, err
    im = Image.open(out)
    assert im.mode == "RGBA" and im.size == (30, 25)
    alpha = np.asarray(im)[..., 3].astype(np.int64)
    a = torch.from_numpy(arr[..., 3] / 255.0)
    ref = (quantize(imresize(a, scale=2.5, size=(25, 30))) * 255).round().numpy().astype(np.int64)
    assert np.abs(alpha - ref).max() <= 1


def test_folder_mode_and_format(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _save(src / "one.png", _rgb(8, 10, seed=1))
    _save(src / "two.jpg", _rgb(9, 11, seed=2))
    (src / "readme.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "dst"
    rc, _, err = _run([str(src), "--scale", "2", "--out", str(out), "--model", "bicubic"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    assert Image.open(out / "two.png").size == (22, 18)
    out2 = tmp_path / "dst2"
    rc, _, err = _run(
        [
            str(src / "one.png"),
            str(src / "two.jpg"),
            "--scale",
            "3",
            "--out",
            str(out2),
            "--model",
            "bicubic",
            "--format",
            "webp",
        ],
        capsys,
    )
    assert rc == 0, err
    assert sorted(p.name for p in out2.iterdir()) == ["one.webp", "two.webp"]


def test_other_model_kind_works(img: Path, tmp_path: Path, ckpts, capsys) -> None:
    out = tmp_path / "m.png"
    rc, _, err = _run(
        [str(img), "--scale", "2.2", "--out", str(out), "--checkpoint", str(ckpts["meta-rdn"])],
        capsys,
    )
    assert rc == 0, err
    assert Image.open(out).size == (36, 27)  # ceil(16 x 2.2) x ceil(12 x 2.2)


def test_trajectory_pngs_and_gif(img: Path, tmp_path: Path, ckpts, capsys) -> None:
    traj = tmp_path / "traj"
    out = tmp_path / "o.png"
    rc, _, err = _run(
        [
            str(img),
            "--scale",
            "2",
            "--out",
            str(out),
            "--checkpoint",
            str(ckpts["vdsr-ode"]),
            "--steps",
            "4",
            "--solver",
            "euler",
            "--trajectory",
            str(traj),
        ],
        capsys,
    )
    assert rc == 0, err
    pngs = sorted(traj.glob("in_*.png"))
    assert len(pngs) == 5 and pngs[0].name == "in_000_t2.000.png"
    assert pngs[-1].name == "in_004_t1.000.png"
    gif = Image.open(traj / "in.gif")
    assert gif.n_frames == 5 > 1
    # last frame of the trajectory is the written result
    assert np.array_equal(np.asarray(Image.open(pngs[-1])), np.asarray(Image.open(out)))


def test_bicubic_window_is_a_window_of_imresize() -> None:
    # reference: the whole MATLAB-exact enlargement (odesr.resize, checked against MATLAB's own
    # outputs in test_resize), cut to each tile's window
    rng = np.random.default_rng(0)
    for n, m, s in [(7, 9, 2.0), (13, 6, 1.7), (5, 8, 3.3), (20, 11, 4.0)]:
        lr = torch.from_numpy(rng.random((3, n, m)))
        size = (math.ceil(n * s), math.ceil(m * s))
        full = imresize(lr, scale=s, size=size)
        for t in tile_grid(*size, tile=5, overlap=3):
            got = bicubic_window(lr, s, size, *t.window)
            (a, b), (c, d) = t.window
            assert torch.allclose(got, full[:, a:b, c:d], atol=1e-12, rtol=0)


def test_tiles_with_safe_overlap_equal_one_tile(ckpts) -> None:
    model = checkpoints.load(ckpts["vdsr-ode"])
    arr = _rgb(14, 18).astype(np.float64) / 255.0
    solver = {"method": "rk4", "steps": 1}
    overlap = model.safe_overlap(2.0, **solver)
    size = output_shape(14, 18, 2.0)
    whole = upscale_array(model, arr, 2.0, size, tile=1024, solver=solver).rgb
    tiled = upscale_array(model, arr, 2.0, size, tile=8, overlap=overlap, solver=solver).rgb
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
    ref = model.super_resolve(
        torch.from_numpy(arr.transpose(2, 0, 1)).float()[None], 2.0, size, **solver
    ).image[0]
    np.testing.assert_allclose(whole, ref.permute(1, 2, 0).numpy(), atol=1e-5, rtol=0)


def test_bundled_model_is_the_default(img: Path, tmp_path: Path, capsys) -> None:
    from odesr.upscale import BUNDLED_MODEL

    assert BUNDLED_MODEL.is_file(), f"bundled model missing: {BUNDLED_MODEL}"
    assert BUNDLED_MODEL.stat().st_size < 5 * 2**20
    out = tmp_path / "d.png"
    rc, stdout, err = _run([str(img), "--scale", "2", "--out", str(out), "--steps", "2"], capsys)
    assert rc == 0, err
    assert "vdsr-ode" in stdout and Image.open(out).size == (32, 24)


def test_missing_bundled_model_message(img: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(checkpoints, "BUNDLED_MODEL", tmp_path / "nowhere" / "vdsr-ode-cpu.pt")
    rc, _, err = _run([str(img), "--scale", "2", "--out", str(tmp_path / "o.png")], capsys)
    _assert_user_error(rc, err, "bundled model")
    assert "--model bicubic" in err
