"""Shared fixtures. Tests that need ../shared fail (not skip) in CI when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread per test process (subprocesses inherit it): the tests' tensors are small,
# where a second thread costs more than it gives, and a busy machine makes threads much slower.
# `make test` runs two test processes instead (pytest-xdist), one per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    # the xdist controller (-n N) runs no tests: it does not import torch (3 CPU-seconds)
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    import torch

    torch.set_num_threads(1)


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODESR_SHARED", REPO.parent / "shared"))


def _skip_or_fail(message: str) -> None:
    """Skip a test whose prerequisite is missing; under ``CI=true`` fail it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _need(path: Path) -> Path:
    if not path.exists():
        _skip_or_fail(f"required test data missing: {path}")
    return path


@pytest.fixture(scope="module")
def kernels():
    """:mod:`odesr.native`, built and switched on (else skip; fail under ``CI=true``)."""
    from odesr import native

    if not native.available():
        why = native.load_error() or f"{native.ENV}=0"
        _skip_or_fail(
            f"odesr native kernels unavailable ({why}); build: python setup.py build_ext -i"
        )
    return native


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The benchmark datasets folder ($ODESR_DATA, else ../shared/datasets)."""
    env = os.environ.get("ODESR_DATA")
    return _need(Path(env) if env else SHARED / "datasets")


@pytest.fixture(scope="session")
def golden() -> Path:
    return _need(SHARED / "golden")


@pytest.fixture(scope="session")
def reference() -> Path:
    return _need(SHARED / "reference")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is much faster (and immune to a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
