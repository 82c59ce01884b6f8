from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from odesr.data import DataError, dataset_dir, list_images, load_image, resolve_data_root


def test_named_datasets_found(data_root):
    assert len(list_images("Set5", data_root)) == 5
    assert len(list_images("b100", data_root)) == 100  # names are case-insensitive
    img = load_image(list_images("Set5", data_root)[0])
    assert img.rgb.shape[0] == 3 and img.channels == 3 and 0 <= float(img.rgb.min())
    assert float(img.rgb.max()) <= 1


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("ODESR_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root("elsewhere").name == "elsewhere"
    monkeypatch.delenv("ODESR_DATA")
    assert str(resolve_data_root(None)) == "data"


def test_folder_and_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        dataset_dir("Set14", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        dataset_dir("NoSuchSet", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(empty)
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(empty / "a.png")
    assert [p.name for p in list_images(empty)] == ["a.png"]


def test_grey_image_replicated_but_remembered(tmp_path):
    arr = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.channels == 1 and img.rgb.shape == (3, 8, 8)
    assert float((img.rgb[0] - img.rgb[2]).abs().max()) == 0


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"hello, not a png", "not a readable")])
def test_bad_files_named(tmp_path, content, match):
    f = tmp_path / "bad.png"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_image(f)
    assert "bad.png" in str(info.value)


def test_truncated_png_named(tmp_path):
    f = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(f)
    f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.png"):
        load_image(f)
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "missing.png")
