"""``python -m bench.demo`` needs no benchmark data: it trains and evaluates on scikit-image's
bundled images even when no data root exists (the cpu preset's BSD200 hold-out is switched off)."""

from __future__ import annotations

import pytest

from bench import demo


@pytest.mark.slow
def test_demo_runs_without_any_data_root(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ODESR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data either
    code = demo.main(
        f"--steps 2 --scales 2 --workdir {tmp_path / 'wd'} --results {tmp_path / 'results'} "
        f"--checkpoints {tmp_path / 'ck'}".split()
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert (tmp_path / "results" / "demo" / "demo.csv").exists()
    assert "demo done" in out.out
