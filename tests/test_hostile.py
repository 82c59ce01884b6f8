"""Hostile inputs, faults and concurrent runs: every bad case gets one stderr line and
exit 2 with nothing written, odd images come out right, results files and temporaries survive
kills and damage. Tiny images, the bicubic model or the bundled small checkpoint: each test runs
in a few seconds."""

from __future__ import annotations

import csv
import importlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from filelock import FileLock
from PIL import Image

from bench.profile import Profile
from bench.report import load_results
from bench.results import ResultsFile, row_key
from bench.runner import run_experiment
from odesr.cli import main
from odesr.data import DataError, read_image
from odesr.evaluate import MAX_SCALES, parse_scales
from odesr.io import read_csv_rows, remove_stale_temporaries, write_bytes_atomic
from odesr.ode import MAX_STEPS, time_grid
from odesr.upscale import BUNDLED_MODEL

# the modules (``odesr.evaluate`` / ``odesr.upscale`` name the API functions of the package)
evaluate_mod = importlib.import_module("odesr.evaluate")
upscale_mod = importlib.import_module("odesr.upscale")

REPO = Path(__file__).resolve().parents[1]
SENTINEL = b"pre-existing output, must stay untouched"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pattern(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def img(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(_pattern()).save(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A one-image dataset folder big enough for the metasr protocol at x2..x4."""
    d = tmp_path / "set"
    d.mkdir()
    Image.fromarray(_pattern(48, 48)).save(d / "a.png")
    return d


def _bomb_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header claims side x side pixels (> 2x Pillow's limit) with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line_2(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and needle in err, err


def _eval(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--no-progress", "--dataset", str(folder), "--out", str(out), *extra]


def _up(src: Path, out: Path, *extra: str) -> list[str]:
    return ["upscale", "--no-progress", str(src), "--scale", "2", "--out", str(out), *extra]


@pytest.fixture()
def no_eval(monkeypatch):
    """Fail the test if evaluation starts (checks must come first)."""

    def refuse(*a, **k):
        raise AssertionError("evaluation started before the arguments were checked")

    monkeypatch.setattr(evaluate_mod, "evaluate_dataset", refuse)


# ------------------------------------------------------------------ devices, bounds, outputs


@pytest.mark.parametrize("device", ["foo", "mps", "cuda:99", ""])
def test_bad_device_upscale_and_eval(device, img, folder, tmp_path, capsys, no_eval) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        device = "cuda:4096"
    out = tmp_path / "o.png"
    rc, err = _run(_up(img, out, "--device", device), capsys)
    _one_line_2(rc, err, "--device")
    assert not out.exists()
    rc, err = _run(
        _eval(folder, tmp_path / "e.csv", "--model", "bicubic", "--device", device), capsys
    )
    _one_line_2(rc, err, "--device")
    assert not (tmp_path / "e.csv").exists()


def test_empty_model_name_refused_not_defaulted(img, folder, tmp_path, capsys) -> None:
    """Found by the fuzzer: ``--model ''`` crashed eval and made upscale use the bundled model."""
    rc, err = _run(_up(img, tmp_path / "o.png", "--model", ""), capsys)
    _one_line_2(rc, err, "unknown model ''")
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", ""), capsys)
    _one_line_2(rc, err, "unknown model ''")
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "e.csv").exists()


def test_bad_device_bench_run(tmp_path, capsys) -> None:
    from bench.__main__ import main as bench_main

    argv = ["run", "ci-smoke", "--profile", "smoke", "--device", "mps"]
    rc = bench_main([*argv, "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path)])
    _one_line_2(rc, capsys.readouterr().err.strip(), "--device mps")
    assert list(tmp_path.iterdir()) == []


def test_bad_device_train_is_a_usage_error(capsys, tmp_path) -> None:
    """--device follows one rule for every command (odesr.validate.device): refused in one line
    before any run folder is made."""
    rc, err = _run(
        ["train", "smoke/vdsr-ode", "--device", "mps", "--out", str(tmp_path / "r")], capsys
    )
    _one_line_2(rc, err, "--device mps: mps devices are not supported")
    assert not (tmp_path / "r").exists()


def test_decompression_bomb_in_eval_folder(folder, tmp_path, capsys) -> None:
    bomb = _bomb_png(folder / "b.png")
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, str(bomb))
    assert "too large" in err and not (tmp_path / "e.csv").exists()
    with pytest.raises(DataError, match="too large"):
        read_image(bomb)


def test_eval_out_is_a_folder_refused_before_evaluating(folder, tmp_path, capsys, no_eval) -> None:
    (tmp_path / "r.csv").mkdir()
    rc, err = _run(_eval(folder, tmp_path / "r.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "is a folder")


def test_eval_out_other_file_not_replaced(folder, tmp_path, capsys, no_eval) -> None:
    other = tmp_path / "model.pt"
    other.write_bytes(SENTINEL)
    rc, err = _run(_eval(folder, other, "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "not an odesr eval CSV")
    assert other.read_bytes() == SENTINEL


def test_eval_out_unwritable_refused_before_evaluating(folder, tmp_path, capsys, no_eval) -> None:
    (tmp_path / "file").write_bytes(b"x")
    rc, err = _run(_eval(folder, tmp_path / "file" / "r.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "not a folder")


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--step-size", "1e-9"], f"the limit is {MAX_STEPS}"),
        (["--steps", "1000000000"], f"the limit is {MAX_STEPS}"),
        (["--solver", "dopri5", "--rtol", "-1"], "--rtol"),
        (["--solver", "dopri5", "--atol=-1e-3"], "--atol"),
        (["--solver", "dopri5", "--atol", "nan"], "--atol"),
        (["--scales", "2:1e12:1"], f"at most {MAX_SCALES}"),
        (["--scales", "2:inf:1"], "--scales"),
        (["--solver", "nope"], "nope"),
    ],
)
def test_eval_bounds_checked_first(folder, tmp_path, capsys, no_eval, extra, needle) -> None:
    argv = _eval(folder, tmp_path / "e.csv", "--checkpoint", str(BUNDLED_MODEL), *extra)
    start = time.perf_counter()
    rc, err = _run(argv, capsys)
    _one_line_2(rc, err, needle)
    assert time.perf_counter() - start < 20  # refused, not run (generous: shared machine)
    assert not (tmp_path / "e.csv").exists()


def test_eval_costly_tiles_refused_before_solving(folder, tmp_path, capsys, monkeypatch) -> None:
    """The tile check runs on the loaded images' sizes, before the model is called."""

    def refuse(*a, **k):
        raise AssertionError("the model ran before the tiles were checked")

    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    argv = _eval(folder, tmp_path / "e.csv", "--checkpoint", str(BUNDLED_MODEL), "--tile", "8")
    rc, err = _run(argv, capsys)
    _one_line_2(rc, err, "--tile 8 with")
    assert "a.png" in err and not (tmp_path / "e.csv").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--step-size", "1e-9"], f"the limit is {MAX_STEPS}"),
        (["--step-size", "5e-324"], "too small"),
        (["--steps", "5000"], f"the limit is {MAX_STEPS}"),
        (["--tile", "8"], "overlap"),
        (["--tile", "8", "--overlap", "40"], "overlap"),
    ],
)
def test_upscale_bounds_checked_first(img, tmp_path, capsys, extra, needle) -> None:
    out = tmp_path / "o.png"
    rc, err = _run(_up(img, out, *extra), capsys)
    _one_line_2(rc, err, needle)
    assert not out.exists()


def test_small_tile_with_small_overlap_still_works(img, tmp_path, capsys) -> None:
    out = tmp_path / "o.png"
    rc, err = _run(_up(img, out, "--model", "bicubic", "--tile", "16", "--overlap", "8"), capsys)
    assert rc == 0, err
    ref = _run(_up(img, tmp_path / "ref.png", "--model", "bicubic"), capsys)
    assert ref[0] == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(tmp_path / "ref.png")))


def test_bounds_in_library() -> None:
    assert len(time_grid(4.0, step_size=3 / MAX_STEPS)) == MAX_STEPS + 1
    with pytest.raises(ValueError, match="limit"):
        time_grid(4.0, step_size=3 / (MAX_STEPS + 1))
    assert parse_scales("2,2,3,2:3:0.5") == [2.0, 3.0, 2.5]  # repeats dropped, order kept
    assert len(parse_scales(f"1.001:{1 + MAX_SCALES / 1000}:0.001")) == MAX_SCALES
    with pytest.raises(ValueError, match="at most"):
        parse_scales(f"1.001:{1.001 + MAX_SCALES / 1000}:0.001")


def test_duplicate_scales_give_one_row_each(folder, tmp_path, capsys) -> None:
    out = tmp_path / "e.csv"
    rc, err = _run(_eval(folder, out, "--model", "bicubic", "--scales", "2,2,2.0,3,2:3:1"), capsys)
    assert rc == 0, err
    with open(out, newline="") as fh:
        scales = [r["scale"] for r in csv.DictReader(fh)]
    assert scales == ["2.0", "3.0"]


# ------------------------------------------------------------------ images


def test_palette_transparency_kept_as_alpha(tmp_path, capsys) -> None:
    idx = np.zeros((16, 20), np.uint8)
    idx[:, 10:] = 1  # left half: index 0 (transparent), right half: index 1 (opaque)
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([200, 10, 10, 10, 200, 10] + [0] * 762)
    src = tmp_path / "pal.png"
    pal.save(src, transparency=0)
    arr, _ = read_image(src)
    assert arr.shape == (16, 20, 4) and set(np.unique(arr[..., 3])) == {0.0, 1.0}
    out = tmp_path / "o.png"
    rc, err = _run(_up(src, out, "--model", "bicubic"), capsys)
    assert rc == 0, err
    res = Image.open(out)
    assert res.mode == "RGBA" and res.size == (40, 32)
    alpha = np.asarray(res)[..., 3]
    assert (alpha[:, :16] == 0).all() and (alpha[:, 24:] == 255).all()


def test_exif_orientation_applied(tmp_path, capsys) -> None:
    stored = _pattern(20, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    src = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(src, exif=exif.tobytes(), quality=95)
    plain = tmp_path / "plain.jpg"
    Image.fromarray(stored).save(plain, quality=95)
    decoded = np.asarray(Image.open(plain))
    arr, _ = read_image(src)
    assert arr.shape == (24, 20, 3)
    assert np.array_equal((arr * 255).round().astype(np.uint8), np.rot90(decoded, k=-1))
    out = tmp_path / "o.png"
    rc, err = _run(_up(src, out, "--model", "bicubic"), capsys)
    assert rc == 0, err
    assert Image.open(out).size == (40, 48)  # (width, height) of the displayed image, x2


def test_float_tiff_in_unit_range_kept(tmp_path, capsys) -> None:
    src = tmp_path / "f.tif"
    Image.fromarray(np.full((12, 14), 0.25, np.float32), mode="F").save(src)
    out = tmp_path / "o.png"
    rc, err = _run(_up(src, out, "--model", "bicubic"), capsys)
    assert rc == 0, err
    res = np.asarray(Image.open(out))
    assert res.dtype == np.uint16 and res.shape == (24, 28)
    assert np.all(res == round(0.25 * 65535))  # a constant image stays constant under bicubic


@pytest.mark.parametrize("value", [255.0, -0.5, float("nan")])
def test_float_tiff_out_of_range_refused(tmp_path, capsys, value) -> None:
    src = tmp_path / "f.tif"
    arr = np.full((12, 14), 0.5, np.float32)
    arr[3, 4] = value
    Image.fromarray(arr, mode="F").save(src)
    out = tmp_path / "o.png"
    rc, err = _run(_up(src, out, "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "float image")
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_multi_frame_one_warning(tmp_path, capsys, suffix) -> None:
    frames = [Image.fromarray(np.roll(_pattern(), k, axis=1)) for k in range(3)]
    src = tmp_path / f"anim{suffix}"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    out = tmp_path / "o.png"
    rc, err = _run(_up(src, out, "--model", "bicubic"), capsys)
    assert rc == 0 and out.exists()
    assert err.splitlines() == [f"odesr: warning: {src}: 3 frames; only the first is used"]


# ------------------------------------------------------------------ non-finite weights/outputs


def _edit_bundled(tmp_path: Path, value: float) -> Path:
    payload = torch.load(BUNDLED_MODEL, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], value)
    path = tmp_path / f"edited-{value}.pt"
    torch.save(payload, path)
    return path


def test_nan_weights_refused_at_load(img, folder, tmp_path, capsys) -> None:
    ckpt = _edit_bundled(tmp_path, float("nan"))
    out = tmp_path / "o.png"
    out.write_bytes(SENTINEL)
    rc, err = _run(_up(img, out, "--checkpoint", str(ckpt), "--overwrite"), capsys)
    _one_line_2(rc, err, "NaN/inf")
    assert str(ckpt) in err and out.read_bytes() == SENTINEL
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--checkpoint", str(ckpt)), capsys)
    _one_line_2(rc, err, "NaN/inf")
    assert not (tmp_path / "e.csv").exists()


def test_bench_run_with_nan_checkpoint_one_line(tmp_path, capsys) -> None:
    from bench.__main__ import main as bench_main

    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(_pattern(40, 44)).save(data / "a.png")
    exp = _tiny_experiment(data)
    exp["models"] = {
        "m": {
            "model": {"name": "vdsr-ode", "checkpoint": str(_edit_bundled(tmp_path, float("nan")))}
        }
    }
    exp["sweeps"][0]["models"] = ["m"]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    argv = ["run", str(path), "--profile", "smoke", "--device", "cpu", "--no-progress"]
    rc = bench_main([*argv, "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "NaN/inf" in err[-1] and "Traceback" not in "\n".join(err)
    assert not list((tmp_path / "r").rglob("*.csv"))


def test_non_finite_output_refused_before_writing(img, folder, tmp_path, capsys) -> None:
    ckpt = _edit_bundled(tmp_path, 1e30)  # finite weights whose output overflows to inf/NaN
    out = tmp_path / "o.png"
    rc, err = _run(_up(img, out, "--checkpoint", str(ckpt)), capsys)
    _one_line_2(rc, err, "NaN/inf")
    assert not out.exists()
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--checkpoint", str(ckpt)), capsys)
    _one_line_2(rc, err, "NaN/inf")
    assert not (tmp_path / "e.csv").exists()


# ------------------------------------------------------------------ writes: overwrite, locks, kills


def test_overwrite_refusal_enforced_at_write_time(img, tmp_path, capsys, monkeypatch) -> None:
    """Another run creates the output after this one checked: it is not replaced."""
    out = tmp_path / "o.png"
    real = upscale_mod.encode

    def racing_encode(arr, fmt):
        out.write_bytes(SENTINEL)  # the other writer wins the race
        return real(arr, fmt)

    monkeypatch.setattr(upscale_mod, "encode", racing_encode)
    rc, err = _run(_up(img, out, "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "exists")
    assert out.read_bytes() == SENTINEL
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_without_overwrite_is_exclusive(tmp_path) -> None:
    path = tmp_path / "x.bin"
    write_bytes_atomic(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_bytes_atomic(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first"
    write_bytes_atomic(path, b"third")
    assert path.read_bytes() == b"third"


def test_second_eval_writer_refused(folder, tmp_path, capsys) -> None:
    """A running ``odesr eval`` holds ``OUT.lock``; a second one on the same --out is refused
    before it evaluates, and leaves the file alone."""
    out = tmp_path / "e.csv"
    earlier = b"model,dataset,image,scale\nbicubic,set,a,2.0\n"  # the first writer's rows
    out.write_bytes(earlier)
    with FileLock(tmp_path / "e.csv.lock"):  # the first writer, mid-run (a lock per open file)
        rc, err = _run(_eval(folder, out, "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "another odesr eval")
    assert out.read_bytes() == earlier
    # once the lock is free, eval runs and replaces the file
    rc = main(_eval(folder, out, "--model", "bicubic", "--scales", "2"))
    assert rc == 0 and out.read_bytes().startswith(b"model,")


# The slow fsync sleeps in short slices: a process-directed SIGTERM may be delivered to any
# thread (torch's or an image loader's), and Python runs the handler only when the main thread
# returns to bytecode; one 60 s sleep would then outlast the test's timeout (seen once in CI).
_SLOW_WRITE = """
import os, sys, time
import odesr.io
def slow_fsync(fd):
    print("writing", flush=True)
    for _ in range(600):
        time.sleep(0.1)
os.fsync = slow_fsync
from odesr.cli import main
sys.exit(main(sys.argv[1:]))
"""


_SLOW_WRITE_IO = """
import os, sys, time
import odesr.io
def slow_fsync(fd):
    print("writing", flush=True)
    time.sleep(60)
os.fsync = slow_fsync
odesr.io.write_bytes_atomic(sys.argv[1], b"x" * 2_000_000)
"""


def _start_slow_writer(argv: list[str], script: str = _SLOW_WRITE) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the temporary is written
    assert line.strip() == "writing", proc.stderr.read() if proc.stderr else ""
    return proc


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_sigterm_during_write_leaves_no_temporary(img, tmp_path) -> None:
    out_dir = tmp_path / "out"
    proc = _start_slow_writer(_up(img, out_dir / "o.png", "--model", "bicubic"))
    assert len(_temps(out_dir)) == 1
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    assert _temps(out_dir) == [] and not (out_dir / "o.png").exists()


def test_sigkill_temporary_removed_by_next_run(img, tmp_path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_slow_writer([str(out_dir / "o.png")], _SLOW_WRITE_IO)  # a 2 MB write
    proc.kill()
    proc.communicate(timeout=60)
    stale = _temps(out_dir)
    assert len(stale) == 1 and stale[0].startswith(".o.png.")
    assert not (out_dir / "o.png").exists()
    # a later run (here: another output in the same folder) removes it and writes normally
    rc = main(_up(img, out_dir / "p.png", "--model", "bicubic"))
    assert rc == 0 and _temps(out_dir) == [] and Image.open(out_dir / "p.png").size == (48, 40)


def test_live_writers_temporaries_are_kept(tmp_path) -> None:
    import fcntl

    live = tmp_path / ".x.png.odesr-0123456789abcdef.tmp"  # a running writer's: locked
    with open(live, "wb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert remove_stale_temporaries(tmp_path) == []
        write_bytes_atomic(tmp_path / "y.png", b"data")
        assert live.exists()
    assert remove_stale_temporaries(tmp_path) == [live]  # its writer is gone: stale


# ------------------------------------------------------------------ damaged results CSVs


def _tiny_profile(tmp_path: Path) -> Profile:
    """The smoke profile with its results in ``tmp_path/r`` and checkpoints in ``tmp_path/ck``."""
    return Profile("smoke", tmp_path / "r", tmp_path / "ck")


def _tiny_experiment(data: Path) -> dict:
    return {
        "name": "tiny",
        "seen_scales": "2",
        "models": {"bicubic": {"paper": "bicubic", "model": {"name": "bicubic"}}},
        "sweeps": [
            {"name": "main", "models": ["bicubic"], "datasets": {str(data): "2,3,4"}, "limit": None}
        ],
        "report": {"tables": [], "figures": []},
    }


@pytest.mark.parametrize("cut", ["mid-line", "before-scale"])
def test_damaged_results_csv_repaired_and_reevaluated(tmp_path, capsys, cut) -> None:
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        Image.fromarray(_pattern(40, 44, seed=i)).save(data / f"im{i}.png")
    kw = dict(device="cpu", progress=False, log=lambda m: None)
    first = run_experiment(_tiny_experiment(data), _tiny_profile(tmp_path), **kw)
    path = first.results
    whole = path.read_text()
    good = {row_key(r): (r["psnr"], r["ssim"]) for r in ResultsFile(path).read()}
    assert len(good) == 6
    lines = whole.splitlines(keepends=True)
    last = lines[-1]
    if cut == "mid-line":
        damaged = "".join(lines[:-1]) + last[: len(last) - 12]  # cut inside the last field(s)
    else:
        header = lines[0].rstrip("\n").split(",")
        fields = last.split(",")
        damaged = "".join(lines[:-1]) + ",".join(fields[: header.index("scale")])
    path.write_text(damaged)
    with pytest.raises(DataError, match=f"{path.name} line {len(lines)}: damaged"):
        load_results(path)
    capsys.readouterr()
    again = run_experiment(_tiny_experiment(data), _tiny_profile(tmp_path), **kw)
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and f"line {len(lines)}: damaged" in notice[0], notice
    assert again.done >= 1  # the cut unit is re-evaluated
    aside = path.with_name(path.name + ".damaged")
    assert aside.read_text() == damaged
    found = read_csv_rows(path, numeric=("scale",))
    assert found.damaged == [] and len(found.rows) == 6
    assert {row_key(r): (r["psnr"], r["ssim"]) for r in found.rows} == good


def test_damaged_line_in_the_middle_drops_neighbour_units(tmp_path, capsys) -> None:
    store = ResultsFile(tmp_path / "r.csv")
    rows = [
        dict(
            sweep="s",
            model="m",
            weights="w",
            solver_opts="-",
            dataset="d",
            scale=sc,
            subset="all",
            image=f"i{k}",
            psnr=30.0,
            ssim=0.9,
        )
        for sc in (2.0, 3.0, 4.0)
        for k in range(2)
    ]
    for sc in (2.0, 3.0, 4.0):
        store.put_unit([r for r in rows if r["scale"] == sc])
    lines = store.path.read_text().splitlines(keepends=True)
    lines[3] = "garbage,row\n"  # line 4: the first row of the x3 unit
    store.path.write_text("".join(lines))
    kept = store.read()
    assert "line 4: damaged" in capsys.readouterr().err
    assert sorted({float(r["scale"]) for r in kept}) == [4.0]  # x2 and x3 touch the bad line


# ------------------------------------------------------------------ resources without bounds


def test_bomb_between_pillow_limits_refused_from_its_header(folder, tmp_path, capsys) -> None:
    """12000 x 12000 is above Pillow's limit but below twice it, where Pillow only warns."""
    bomb = _bomb_png(folder / "b.png", side=12000)
    assert bomb.stat().st_size < 200
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, f"{bomb}: image too large: 12000x12000")
    assert not (tmp_path / "e.csv").exists()
    rc, err = _run(_up(bomb, tmp_path / "o.png", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "ODESR_MAX_PIXELS")


def test_pixel_ceiling_is_settable(img, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ODESR_MAX_PIXELS", "100")
    rc, err = _run(_up(img, tmp_path / "o.png", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "24x20 = 480 pixels, more than the limit of 100")
    monkeypatch.setenv("ODESR_MAX_PIXELS", "lots")
    rc, err = _run(_up(img, tmp_path / "o.png", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "ODESR_MAX_PIXELS='lots'")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join(['*' + chr(97 + k)] * 9)}]\n"
                for k in range(8)
            ),
            "aliases",
        ),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
        ("x: '" + "y" * (2 << 20) + "'\n", "characters of YAML"),
    ],
    ids=["alias-bomb", "deep", "huge"],
)
def test_hostile_yaml_refused_in_one_line(tmp_path, capsys, text, needle) -> None:
    from odesr.config import ConfigError, read_yaml

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_yaml(path)
    rc, err = _run(["train", str(path), "--out", str(tmp_path / "run")], capsys)
    _one_line_2(rc, err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "spec,needle",
    [
        ({"name": "vdsr-ode", "net": {"width": 10**7}}, "net.width=10000000 is out of range"),
        ({"name": "vdsr-ode", "net": {"width": 60000, "depth": 50}}, "parameters, more than"),
        ({"name": "vdsr-ode", "net": {"depht": 3}}, "'depht'"),
        ({"name": "vdsr-ode", "sharpen": 2}, "'sharpen'"),
        ({"name": "vdsr-ode", "net": {"width": "abc"}}, "cannot be built"),
    ],
)
def test_model_specs_checked_before_allocating(spec, needle, img, tmp_path, capsys) -> None:
    from odesr.models import ModelError, build

    with pytest.raises(ModelError, match=needle):
        build(spec)
    # a checkpoint whose spec says so is refused the same way, in one line
    payload = torch.load(BUNDLED_MODEL, weights_only=True)
    payload["spec"] = {
        **payload["spec"],
        **spec,
        "net": {**payload["spec"]["net"], **spec.get("net", {})},
    }
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    rc, err = _run(_up(img, tmp_path / "o.png", "--checkpoint", str(bad)), capsys)
    _one_line_2(rc, err, str(bad))
    assert not (tmp_path / "o.png").exists()


def test_train_spec_typo_refused(tmp_path, capsys) -> None:
    argv = ["train", "smoke/vdsr-ode", "--out", str(tmp_path / "run"), "--no-progress"]
    rc, err = _run([*argv, "--set", "model.net.depht=3"], capsys)
    _one_line_2(rc, err, "'depht'")
    rc, err = _run([*argv, "--set", "scales=[null]"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_out_onto_a_huge_file_reads_its_first_bytes_only(folder, tmp_path, capsys, no_eval) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(6 << 30)  # sparse: reading it all would take a minute
    start = time.perf_counter()
    rc, err = _run(_eval(folder, big, "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "not an odesr eval CSV")
    assert time.perf_counter() - start < 10 and big.stat().st_size == 6 << 30


@pytest.mark.parametrize("text", ["2:1e12:1e-300", "1.5:1e308:1e-308", "2:3:1e-320"])
def test_scale_ranges_that_overflow_refused(text, folder, tmp_path, capsys, no_eval) -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_SCALES}"):
        parse_scales(text)
    rc, err = _run(
        _eval(folder, tmp_path / "e.csv", "--model", "bicubic", "--scales", text), capsys
    )
    _one_line_2(rc, err, "--scales")


@pytest.mark.parametrize("scale", ["1e39", "1e300", "9000"])
def test_huge_scale_refused(scale, img, tmp_path, capsys) -> None:
    out = tmp_path / "o.png"
    for model in (["--model", "bicubic"], []):
        argv = ["upscale", "--no-progress", str(img), "--scale", scale, "--out", str(out), *model]
        rc, err = _run(argv, capsys)
        _one_line_2(rc, err, "--scale")
    with pytest.raises(ValueError, match="scale"):
        odesr_api().upscale(_pattern(), float(scale), "bicubic")
    assert not out.exists()


def odesr_api():
    import odesr

    return odesr


# ------------------------------------------------------------------ temporaries: only our own


def test_only_odesr_temporaries_are_swept(img, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    theirs = [
        ".draft.txt.2147483647.swp.tmp",  # a user's file in the old pattern, dead "pid"
        ".x.99999999999999999999.a.tmp",  # a 20-digit number (crashed the pid check)
        ".o.png.odesr-0123456789abcdef.tmp.bak",
        ".o.png.odesr-0123456789ABCDEF.tmp",  # not our token alphabet
        "o.png.odesr-0123456789abcdef.tmp",  # no leading dot
    ]
    for name in theirs:
        (out_dir / name).write_bytes(SENTINEL)
    (out_dir / ".d.odesr-0123456789abcdef.tmp").mkdir()  # a folder of that name
    (out_dir / ".l.odesr-0123456789abcdef.tmp").symlink_to(out_dir / theirs[0])
    stale = out_dir / ".o.png.odesr-fedcba9876543210.tmp"  # ours, writer gone (unlocked)
    stale.write_bytes(b"partial")
    rc, err = _run(_up(img, out_dir / "p.png", "--model", "bicubic"), capsys)
    assert rc == 0, err
    for name in theirs:
        assert (out_dir / name).read_bytes() == SENTINEL, name
    assert (out_dir / ".d.odesr-0123456789abcdef.tmp").is_dir()
    assert (out_dir / ".l.odesr-0123456789abcdef.tmp").is_symlink()
    assert not stale.exists() and (out_dir / "p.png").is_file()


# ------------------------------------------------------------------ numbers silently wrong


def _results_with(tmp_path: Path, data: Path, values: dict[int, str]) -> tuple[Path, dict]:
    kw = dict(device="cpu", progress=False, log=lambda m: None)
    first = run_experiment(_tiny_experiment(data), _tiny_profile(tmp_path), **kw)
    rows = list(csv.DictReader(first.results.open()))
    for k, value in values.items():
        rows[k]["psnr"] = value
    with first.results.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return first.results, kw


def _three_images(tmp_path: Path) -> Path:
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.fromarray(_pattern(40, 44, seed=i)).save(data / f"im{i}.png")
    return data


@pytest.mark.parametrize("value", ["nan", "", "abc", "inf"])
def test_rows_without_a_finite_metric_are_not_done(tmp_path, value) -> None:
    from bench.report import summarize

    data = _three_images(tmp_path)
    path, kw = _results_with(tmp_path, data, {0: value})
    store = ResultsFile(path)
    assert len(store.done_units()) == 2  # of 3: the unit holding the bad row is missing
    df = load_results(path)
    assert int(summarize(df)["incomplete"].sum()) == 1
    again = run_experiment(_tiny_experiment(data), _tiny_profile(tmp_path), **kw)
    assert again.done == 1 and len(store.done_units()) == 3
    assert all(np.isfinite(float(r["psnr"])) for r in store.read())


def test_report_caption_names_incomplete_rows(tmp_path) -> None:
    from bench.report import write_report

    data = _three_images(tmp_path)
    exp = _tiny_experiment(data)
    exp["report"]["tables"] = [{"kind": "scales", "sweep": "main", "dataset": data.name}]
    path, kw = _results_with(tmp_path, data, {0: "nan"})
    written = write_report(exp, _tiny_profile(tmp_path))
    text = "".join(Path(p).read_text() for p in written if str(p).endswith(".md"))
    assert "INCOMPLETE: 1 image rows lack a finite PSNR/SSIM" in text


def test_evaluate_honours_limit_and_checks_options(folder, data_root) -> None:
    import odesr

    assert len(odesr.evaluate("bicubic", "Set5", [2], data_root=data_root, limit=2)) == 2
    assert len(odesr.evaluate("bicubic", "Set5", [2], data_root=data_root)) == 5
    for bad in (
        dict(limit=0),
        dict(batch_size=0),
        dict(batch_size=-3),
        dict(tile=0),
        dict(y_rounding="round"),
        dict(protocol="nope"),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            odesr.evaluate("bicubic", folder, [2], **bad)
    with pytest.raises(TypeError, match="lmit"):
        odesr.evaluate("bicubic", folder, [2], lmit=2)


def _cli_read(path: Path, tmp_path: Path, capsys) -> np.ndarray:
    out = tmp_path / f"cli-{path.stem}.png"
    rc, err = _run(_up(path, out, "--model", "bicubic"), capsys)
    assert rc == 0, err
    return np.asarray(Image.open(out))


def test_python_face_reads_float_and_int_modes_as_the_cli(tmp_path, capsys) -> None:
    import odesr

    grey = _pattern()[..., 0].astype(np.float32) / 255.0
    f_img = Image.fromarray(grey, mode="F")
    f_img.save(tmp_path / "f.tif")
    cli_f = _cli_read(tmp_path / "f.tif", tmp_path, capsys)
    api_f = odesr.upscale(f_img, 2, "bicubic")
    assert api_f.mode == "F"
    assert np.array_equal(np.asarray(odesr.upscale(tmp_path / "f.tif", 2, "bicubic")), cli_f)
    assert np.abs(np.asarray(api_f) * 65535 - cli_f.astype(np.float64)).max() <= 0.5 + 1e-3
    assert np.asarray(api_f).mean() > 0.2  # not black
    i16 = _pattern()[..., 0].astype(np.int32) * 257
    i_img = Image.fromarray(i16, mode="I")
    i_img.save(tmp_path / "i.tif")
    cli_i = _cli_read(tmp_path / "i.tif", tmp_path, capsys)
    api_i = np.asarray(odesr.upscale(i_img, 2, "bicubic"))
    assert np.array_equal(api_i, cli_i) and api_i.mean() < 50000  # not saturated white


def test_python_face_takes_numpy_float_and_torch(tmp_path) -> None:
    import odesr

    arr = _pattern()
    ref = odesr.upscale(arr, 2, "bicubic")
    as_float = odesr.upscale(arr.astype(np.float32) / 255, 2, "bicubic")
    assert as_float.dtype == np.float32 and as_float.shape == ref.shape
    assert np.abs(as_float * 255 - ref).max() <= 0.5 + 1e-3
    chw = torch.from_numpy(arr).permute(2, 0, 1)
    t = odesr.upscale(chw, 2, "bicubic")
    assert t.dtype == torch.uint8 and np.array_equal(t.permute(1, 2, 0).numpy(), ref)
    n = odesr.upscale(chw[None].float() / 255, 2, "bicubic")
    assert n.shape == (1, 3, 40, 48) and n.dtype == torch.float32
    with pytest.raises(ValueError, match="image: dtype int32"):
        odesr.upscale(arr.astype(np.int32), 2, "bicubic")
    with pytest.raises(ValueError, match="image: tensor shape"):
        odesr.upscale(torch.zeros(4, 4), 2, "bicubic")
    with pytest.raises(TypeError, match="image: expected a path"):
        odesr.upscale([[1, 2]], 2, "bicubic")
    with pytest.raises(ValueError, match="not an ODE model: solver"):
        odesr.upscale(arr, 2, "bicubic", solver="euler")
    with pytest.warns(DeprecationWarning, match="solver="):
        same = odesr.upscale(arr, 2, None, method="euler", steps=2)
    assert np.array_equal(same, odesr.upscale(arr, 2, None, solver="euler", steps=2))
    with pytest.raises(TypeError, match="stepz"):
        odesr.upscale(arr, 2, "bicubic", stepz=2)
    with pytest.raises(TypeError, match="solver must be a method name .*give steps="):
        odesr.upscale(arr, 2, None, solver={"method": "rk4", "steps": 2})  # was: unhashable dict


def test_int32_beyond_16_bits_refused_not_clipped(tmp_path, capsys) -> None:
    import odesr

    img = Image.fromarray((np.arange(480, dtype=np.int32).reshape(20, 24) * 2000), mode="I")
    img.save(tmp_path / "big.tif")
    rc, err = _run(_up(tmp_path / "big.tif", tmp_path / "o.png", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "only 16-bit values")
    with pytest.raises(ValueError, match="only 16-bit values"):
        odesr.upscale(img, 2, "bicubic")


def test_grey_and_alpha_stays_grey_and_alpha(tmp_path, capsys) -> None:
    import odesr

    la = np.stack([_pattern()[..., 0], np.full((20, 24), 200, np.uint8)], axis=2)
    Image.fromarray(la).save(tmp_path / "la.png")
    rc, err = _run(_up(tmp_path / "la.png", tmp_path / "o.png", "--model", "bicubic"), capsys)
    assert rc == 0, err
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "LA" and out.size == (48, 40)
    api = odesr.upscale(Image.fromarray(la), 2, "bicubic")
    assert api.mode == "LA" and np.array_equal(np.asarray(api), np.asarray(out))
    assert np.asarray(odesr.upscale(la, 2, "bicubic")).shape == (40, 48, 2)


@pytest.mark.parametrize("size", ["-3", "0"])
def test_bench_run_bad_batch_size(size, tmp_path, capsys) -> None:
    from bench.__main__ import main as bench_main

    argv = ["run", "ci-smoke", "--profile", "smoke", "--batch-size", size]
    rc = bench_main([*argv, "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path)])
    _one_line_2(rc, capsys.readouterr().err.strip(), "--batch-size")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ data lost


def test_refused_training_leaves_the_existing_run_alone(tmp_path, capsys, data_root) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / "config.yaml").write_text("kept: true\n")
    argv = ["train", "smoke/vdsr-ode", "--out", str(run), "--no-progress", "--max-steps", "1"]
    argv += ["--data-root", str(data_root), "--set", "val.every=1"]
    rc, err = _run([*argv, "--set", f"val.dataset={tmp_path / 'nowhere'}"], capsys)
    _one_line_2(rc, err, "nowhere")
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert (run / "config.yaml").read_text() == "kept: true\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl"]


def test_same_stem_twice_refused(folder, tmp_path, capsys, no_eval) -> None:
    Image.fromarray(_pattern(48, 48)).save(folder / "a.tif")
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "share the name 'a'")


def test_non_utf8_name_refused_before_work(folder, tmp_path, capsys, no_eval) -> None:
    name = os.fsdecode(b"b\xff.png")
    Image.fromarray(_pattern(48, 48)).save(os.path.join(folder, name))
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, "not valid UTF-8")


@pytest.mark.parametrize("side,scale,needle", [(4, "4", "too small"), (14, "2", "SSIM needs")])
def test_small_image_in_a_later_dataset_found_before_any_work(
    side, scale, needle, folder, tmp_path, capsys, no_eval
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_pattern(side, side)).save(other / "s.png")
    argv = _eval(folder, tmp_path / "e.csv", "--model", "bicubic", "--scales", scale)
    rc, err = _run([*argv, "--dataset", str(other)], capsys)
    _one_line_2(rc, err, needle)
    assert str(other / "s.png") in err


# ------------------------------------------------------------------ one line, not a traceback


def test_disk_full_is_one_line_and_leaves_nothing(img, tmp_path) -> None:
    import resource

    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    big = tmp_path / "big.png"
    Image.fromarray(_pattern(200, 200)).save(big)
    argv = [sys.executable, "-m", "odesr.cli", *_up(big, out_dir / "o.png", "--model", "bicubic")]
    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "File too large" in proc.stderr
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("kind", ["folder", "loop"])
def test_bad_lock_is_one_line(kind, folder, tmp_path, capsys, no_eval) -> None:
    lock = tmp_path / "e.csv.lock"
    if kind == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(lock)
    rc, err = _run(_eval(folder, tmp_path / "e.csv", "--model", "bicubic"), capsys)
    _one_line_2(rc, err, str(lock))


def test_os_errors_become_one_line() -> None:
    import errno

    from odesr.cli import error_line

    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/o.png")
    assert error_line(exc).startswith("/x/o.png: No space left on device")
    assert (
        error_line(IsADirectoryError(errno.EISDIR, "Is a directory", "/l")) == "/l: Is a directory"
    )
    assert error_line(ValueError("first\nsecond")) == "first"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(x) for x in text.split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_ctrl_c_during_a_pooled_eval_is_one_line(data_root, tmp_path) -> None:
    argv = [sys.executable, "-m", "odesr.cli", "eval", "--no-progress", "--model", "bicubic"]
    argv += ["--dataset", "B100", "--data-root", str(data_root), "--scales", "1.1:4:0.005"]
    proc = subprocess.Popen(
        [*argv, "--out", str(tmp_path / "e.csv")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while len(_children(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # until the worker pool runs
    assert len(_children(proc.pid)) >= 2, "no worker pool started"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "odesr: interrupted", err
    assert not (tmp_path / "e.csv").exists()


def _bench(argv: list[str], capsys) -> tuple[int, str]:
    from bench.__main__ import main as bench_main

    rc = bench_main(argv)
    return rc, capsys.readouterr().err.strip()


def test_experiment_faults_are_one_line(tmp_path, capsys) -> None:
    data = _three_images(tmp_path)
    common = ["--profile", "smoke", "--checkpoints", str(tmp_path / "ck"), "--no-progress"]
    exp = _tiny_experiment(data)
    # scales: [null]
    exp["models"]["bicubic"]["scales"] = [None]
    (tmp_path / "null.yaml").write_text(yaml.safe_dump(exp))
    rc, err = _bench(
        ["run", str(tmp_path / "null.yaml"), "--results", str(tmp_path / "r"), *common], capsys
    )
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    # a truncated checkpoint
    cut = tmp_path / "cut.pt"
    cut.write_bytes(BUNDLED_MODEL.read_bytes()[:5000])
    exp = _tiny_experiment(data)
    exp["models"] = {
        "m": {"paper": "vdsr-ode", "model": {"name": "vdsr-ode", "checkpoint": str(cut)}}
    }
    exp["sweeps"][0]["models"] = ["m"]
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(exp))
    rc, err = _bench(
        ["run", str(tmp_path / "cut.yaml"), "--results", str(tmp_path / "r"), *common], capsys
    )
    assert rc == 2 and "Traceback" not in err, err  # a progress line, then the error's line
    assert str(cut) in err.splitlines()[-1] and "not a readable odesr checkpoint" in err
    # a results folder that is a file: refused before any unit is evaluated
    (tmp_path / "rfile").write_text("x")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(_tiny_experiment(data)))
    rc, err = _bench(
        ["run", str(tmp_path / "ok.yaml"), "--results", str(tmp_path / "rfile"), *common], capsys
    )
    _one_line_2(rc, err, "not a folder")
    assert not (tmp_path / "ck").exists()


def test_edited_results_header_refused_untouched(tmp_path, capsys) -> None:
    data = _three_images(tmp_path)
    path, kw = _results_with(tmp_path, data, {})
    text = path.read_text().replace(",psnr,", ",PSNR,", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match="header lacks column"):
        run_experiment(_tiny_experiment(data), _tiny_profile(tmp_path), **kw)
    with pytest.raises(DataError, match="restore its header"):
        load_results(path)
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(_tiny_experiment(data)))
    argv = [
        "run",
        str(tmp_path / "ok.yaml"),
        "--profile",
        "smoke",
        "--results",
        str(tmp_path / "r"),
    ]
    rc, err = _bench([*argv, "--checkpoints", str(tmp_path / "ck"), "--no-progress"], capsys)
    _one_line_2(rc, err, "header lacks column(s) psnr")
    assert path.read_text() == text and not list(path.parent.glob("*.damaged*"))
