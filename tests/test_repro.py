"""bench.repro's figures against a hand computation."""

import math

import pytest

from bench.repro import thread_and_seed_figures


def test_thread_and_seed_figures_by_hand() -> None:
    one = {("a", 2.0): 30.0, ("b", 2.0): 32.0, ("a", 3.0): 1.0}
    other = {("a", 2.0): 30.1, ("b", 2.0): 31.9, ("a", 3.0): 5.0}
    seed1 = {("a", 2.0): 31.0, ("b", 2.0): 33.0, ("a", 3.0): 9.0}
    figs = thread_and_seed_figures(one, other, [one, seed1], 2.0)
    assert figs["thread_delta_mean"] == pytest.approx(0.0, abs=1e-12)
    assert figs["thread_delta_abs"] == pytest.approx(0.1)
    # seed means 31 and 32: sample standard deviation 1 / sqrt(2); per-image |diff| 1 and 1
    assert figs["seed_sd_of_means"] == pytest.approx(1 / math.sqrt(2))
    assert figs["seed_pair_abs"] == pytest.approx(1.0)
    assert "seed_sd_of_means" not in thread_and_seed_figures(one, other, [one], 3.0)
