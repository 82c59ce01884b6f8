"""pytest-benchmark suite of the hot paths (``make bench``; ``make bench-save`` records a baseline).

Every benchmark also times a *reference* in the same run and stores ``ratio`` in its
``extra_info``: reference time / our time for the bicubic path (the peer pipeline of
:mod:`bench.peer`), fraction of the float32 matmul peak for the networks. Ratios survive a busy
or different machine much better than seconds; the session ends with a table of them next to
the ratios saved in ``bench/benchmarks/baseline.json`` so a slowdown shows as a ratio change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bench.inference_speed import matmul_peak
from bench.speed_eval import best_of

BASELINE = Path(__file__).with_name("baseline.json")
_RATIOS: dict[str, tuple[float, str]] = {}


def best_seconds(fn, repeat: int = 3) -> float:
    """Shortest wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    return best_of(fn, repeat)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(1)  # one core each: stable on a shared machine, like evaluation workers


@pytest.fixture(scope="session")
def matmul_gflops() -> float:
    """float32 matmul throughput, one thread (GFLOP/s, 1024^3)."""
    return matmul_peak(1024, 5)


@pytest.fixture
def record_ratio(benchmark):
    """``record_ratio(value, meaning)``: store the ratio with the benchmark and the summary."""

    def record(value: float, meaning: str) -> None:
        benchmark.extra_info["ratio"] = value
        benchmark.extra_info["ratio_meaning"] = meaning
        _RATIOS[benchmark.name] = (value, meaning)

    return record


def data_root() -> str:
    root = os.environ.get("ODESR_DATA")
    if not root or not Path(root, "B100", "HR").is_dir():
        pytest.fail("benchmarks need B100: set ODESR_DATA (make sets it to ../shared/datasets)")
    return root


def pytest_terminal_summary(terminalreporter) -> None:
    if not _RATIOS:
        return
    saved = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    tr = terminalreporter
    tr.write_sep("-", f"ratios (load {os.getloadavg()[0]:.1f}; baseline {BASELINE.name})")
    for name, (value, meaning) in sorted(_RATIOS.items()):
        old = saved.get(name, {}).get("ratio")
        change = f"{value / old - 1:+.0%} vs {old:.3g}" if old else "no baseline"
        tr.write_line(f"{name:<40} {value:8.3g}  {change:<18} {meaning}")
    if os.environ.get("ODESR_BENCH_SAVE"):
        record = {n: {"ratio": v, "meaning": m} for n, (v, m) in sorted(_RATIOS.items())}
        BASELINE.write_text(json.dumps(record, indent=1) + "\n")
        tr.write_line(f"saved {len(record)} ratios to {BASELINE}")
