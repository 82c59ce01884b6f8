"""The paper's tables ship with bench (``bench/reference/paper_tables.csv``): equal to the shared
copy, and the fallback of :func:`bench.report.paper_tables_path`."""

from __future__ import annotations


def test_packaged_paper_tables_equal_the_shared_ones(reference) -> None:
    from bench.report import PACKAGED_PAPER_TABLES

    shared = reference / "paper_tables.csv"
    assert PACKAGED_PAPER_TABLES.read_bytes() == shared.read_bytes()


def test_paper_tables_fall_back_to_the_packaged_copy(tmp_path, monkeypatch) -> None:
    from bench.report import PACKAGED_PAPER_TABLES, PAPER_TABLES_ENV, paper_tables_path

    monkeypatch.delenv(PAPER_TABLES_ENV, raising=False)
    nowhere = tmp_path / "elsewhere" / "datasets"
    assert paper_tables_path(nowhere) == PACKAGED_PAPER_TABLES
    beside = tmp_path / "reference" / "paper_tables.csv"
    beside.parent.mkdir()
    beside.write_text("x\n")
    assert paper_tables_path(tmp_path / "datasets") == beside
    assert paper_tables_path(nowhere, tmp_path / "mine.csv") == tmp_path / "mine.csv"
    monkeypatch.setenv(PAPER_TABLES_ENV, str(tmp_path / "env.csv"))
    assert paper_tables_path(nowhere) == tmp_path / "env.csv"
