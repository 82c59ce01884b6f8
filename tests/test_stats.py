"""Intervals for the crossed seeds x images design (bench/stats.py) and Holm's step-down.

References are independent of the code under test: ANOVA mean squares and a Holm sequence worked
by hand, and simulated data with known effect and variance components (coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats

# ----------------------------------------------------------------------------- by hand

# d[seed, image] = [[1, 2, 3], [3, 4, 8]]: grand mean 3.5; seed means 2, 5; image means 2, 3, 5.5
# MS_seed = 3 * (1.5^2 + 1.5^2) / 1 = 13.5; MS_image = 2 * (1.5^2 + 0.5^2 + 2^2) / 2 = 6.5
# residuals +-0.5, +-0.5, -+1: sum of squares 3 on 2 df, MS_resid = 1.5
# Var(mean) = (13.5 + 6.5 - 1.5) / 6 = 18.5 / 6; df = 18.5^2 / (13.5^2 + 6.5^2 / 2 + 1.5^2 / 2)
HAND = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0]])
HAND_SE = math.sqrt(18.5 / 6)
HAND_DF = 18.5**2 / (13.5**2 / 1 + 6.5**2 / 2 + 1.5**2 / 2)


def test_two_way_t_by_hand() -> None:
    iv = stats.two_way_t(HAND)
    assert HAND_DF == pytest.approx(1.673594, abs=1e-6)
    assert iv.estimate == pytest.approx(3.5, abs=1e-12)
    assert iv.df == pytest.approx(HAND_DF, rel=1e-12)
    half = sps.t.ppf(0.975, HAND_DF) * HAND_SE
    assert (iv.low, iv.high) == pytest.approx((3.5 - half, 3.5 + half), rel=1e-12)
    assert iv.p_value == pytest.approx(2 * sps.t.sf(3.5 / HAND_SE, HAND_DF), rel=1e-12)
    assert (iv.n_seeds, iv.n_images, iv.estimator) == (2, 3, stats.T_ESTIMATOR)
    assert iv.verdict == "inconclusive"  # half-width ~ 11 on 1.7 df


def test_two_way_t_falls_back_to_the_residual_when_the_combination_is_not_positive() -> None:
    # [[0, 1], [1, 0]]: seed and image means all 0.5, MS_seed = MS_image = 0, MS_resid = 1
    iv = stats.two_way_t(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert iv.df == 1.0  # (S - 1)(I - 1)
    half = sps.t.ppf(0.975, 1.0) * math.sqrt(1.0 / 4)
    assert (iv.low, iv.high) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)


def test_one_seed_one_image_and_one_cell() -> None:
    values = np.array([0.1, 0.3, 0.2, 0.6])
    half = sps.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    for table in (values[None, :], values[:, None]):  # one seed: over images; one image: seeds
        iv = stats.two_way_t(table)
        assert iv.df == 3 and iv.estimate == pytest.approx(0.3)
        assert (iv.low, iv.high) == pytest.approx((0.3 - half, 0.3 + half), rel=1e-12)
    one = stats.two_way_t(np.array([[0.4]]))
    assert one.estimate == 0.4 and math.isnan(one.low) and math.isnan(one.p_value)
    assert one.verdict == "inconclusive" and one.width == math.inf
    ci = stats.crossed_interval({("0", "a"): 0.4})
    assert ci.chosen.estimator == stats.T_ESTIMATOR  # unknown width counts as the wider


def test_constant_differences_give_a_zero_width_interval() -> None:
    values = {(s, i): 0.37 for s in range(3) for i in range(10)}
    ci = stats.crossed_interval(values, n_boot=500)
    iv = ci.chosen
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((0.37, 0.37, 0.37), abs=1e-12)
    assert iv.verdict == "holds" and iv.p_value < 1e-20 and (iv.n_seeds, iv.n_images) == (3, 10)


def test_complete_block_drops_the_sparsest_seed_or_image() -> None:
    full = {(s, i): float(s + i) for s in range(3) for i in range(10)}
    partial = {k: v for k, v in full.items() if not (k[0] == 2 and k[1] >= 3)}  # seed 2: 3 images
    table, seeds, images, dropped = stats.complete_block(partial)
    assert seeds == [0, 1] and len(images) == 10 and dropped == 3
    assert table.shape == (2, 10) and table[1, 4] == 5.0
    one_gap = {k: v for k, v in full.items() if k != (0, 9)}  # one image missing for one seed
    table, seeds, images, dropped = stats.complete_block(one_gap)
    assert seeds == [0, 1, 2] and 9 not in images and dropped == 2
    ci = stats.crossed_interval(partial, n_boot=200)
    assert ci.dropped == 3 and (ci.t.n_seeds, ci.t.n_images) == (2, 10)


def test_the_crossed_bootstrap_shares_one_image_draw_across_seeds() -> None:
    # image effects only (+-1), identical in every seed: the crossed bootstrap sees the image
    # spread once, like the t interval; the nested one averages it over independent draws
    table = np.tile(np.array([1.0, -1.0] * 5), (5, 1))
    crossed = stats.crossed_bootstrap_replicates(table, 4000, rng_seed=1)
    nested = stats.hierarchical_bootstrap_replicates(table, 4000, rng_seed=1)
    assert crossed.std() == pytest.approx(1 / math.sqrt(10), rel=0.1)
    assert nested.std() == pytest.approx(1 / math.sqrt(50), rel=0.1)
    iv = stats.crossed_bootstrap(table, 4000)
    assert iv.estimator == stats.BOOT_ESTIMATOR and iv.low < 0 < iv.high


def test_the_wider_interval_is_reported_and_named() -> None:
    rng = np.random.default_rng(5)
    values = {(s, i): 0.1 + rng.normal(0, 0.05) for s in range(3) for i in range(10)}
    ci = stats.crossed_interval(values, n_boot=2000)
    wider = ci.t if ci.t.width >= ci.boot.width else ci.boot
    assert (ci.chosen.low, ci.chosen.high) == (wider.low, wider.high)
    assert ci.chosen.p_value == ci.t.p_value
    # reproducible: a fixed generator seed
    assert stats.crossed_interval(values, n_boot=2000) == ci


def test_verdicts() -> None:
    assert stats.Interval(0.1, 0.01, 0.2, 3, 10).verdict == "holds"
    assert stats.Interval(-0.1, -0.2, -0.01, 3, 10).verdict == "fails"
    assert stats.Interval(0.1, -0.01, 0.2, 3, 10).verdict == "inconclusive"
    assert stats.Interval(0.0, 0.0, 0.2, 3, 10).verdict == "inconclusive"


def test_pairing_and_pooling_by_hand() -> None:
    a = {(0, "x", 2.0): 30.0, (0, "x", 3.0): 28.0, (1, "x", 2.0): 31.0, (1, "y", 2.0): 29.0}
    b = {(0, "x", 2.0): 29.5, (0, "x", 3.0): 28.5, (1, "x", 2.0): 30.0, (2, "x", 2.0): 0.0}
    d = stats.paired_differences(a, b)
    assert d == {(0, "x", 2.0): 0.5, (0, "x", 3.0): -0.5, (1, "x", 2.0): 1.0}
    pooled = stats.pool_scales(d)
    assert pooled == {(0, "x"): 0.0, (1, "x"): 1.0}
    assert stats.complete_block(pooled)[0].mean() == 0.5


def test_holm_by_hand() -> None:
    # m = 4, sorted p 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop (0.04 not reached)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    # all pass: 0.02 <= 0.025, then 0.02 <= 0.05
    assert stats.holm([0.02, 0.02]) == [True, True]
    # 0.001 <= 0.05/3, 0.02 <= 0.05/2, 0.9 > 0.05
    assert stats.holm([0.02, 0.001, 0.9]) == [True, True, False]
    # the smallest fails (0.03 > 0.05/3): nothing is rejected, though 0.049 < 0.05
    assert stats.holm([0.03, 0.04, 0.049]) == [False, False, False]
    assert stats.holm([float("nan"), 0.01]) == [False, True]  # NaN: in the family as p = 1


# ----------------------------------------------------------------------------- coverage

TRUE_EFFECT = 0.05  # dB
SD_SEED, SD_IMAGE, SD_RESID = 0.019, 0.014, 0.015  # dB
DESIGNS = [(3, 10), (5, 20), (5, 100)]
N_SETS = 4000
N_BOOT_TEST = 200  # enough to show a coverage far below 95%


def _simulate(n_seeds: int, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """``N_SETS`` crossed tables d = mu + a_seed + b_image + e with the known components."""
    shape = (N_SETS, n_seeds, n_images)
    return (
        TRUE_EFFECT
        + rng.normal(0, SD_SEED, (N_SETS, n_seeds, 1))
        + rng.normal(0, SD_IMAGE, (N_SETS, 1, n_images))
        + rng.normal(0, SD_RESID, shape)
    )


def _covers(low: np.ndarray, high: np.ndarray) -> float:
    return float(np.mean((low <= TRUE_EFFECT) & (TRUE_EFFECT <= high)))


def _percentile(replicates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.quantile(replicates, [0.025, 0.975], axis=-1)
    return low, high


@pytest.mark.parametrize("n_seeds,n_images", DESIGNS)
def test_coverage_of_the_two_way_t_and_not_of_the_nested_bootstrap(
    n_seeds: int, n_images: int
) -> None:
    """4000 simulated data sets per design: the two-way t interval (and the reported one, the
    wider of it and the crossed bootstrap) covers the true effect 92.5-97.5% of the time; the
    nested (hierarchical) bootstrap covers under 92.5%."""
    tables = _simulate(n_seeds, n_images, np.random.default_rng(20260 + n_images))
    est, se, df = stats.two_way_moments(tables)
    q = sps.t.ppf(0.975, df)
    t_low, t_high = est - q * se, est + q * se
    t_cover = _covers(t_low, t_high)
    assert 0.925 <= t_cover <= 0.975, t_cover
    # the vectorised moments agree with the one-table function
    one = stats.two_way_t(tables[0])
    assert (one.low, one.high) == pytest.approx((t_low[0], t_high[0]), rel=1e-12)

    b_low, b_high = _percentile(stats.crossed_bootstrap_replicates(tables, N_BOOT_TEST, 3))
    boot_wider = (b_high - b_low) > (t_high - t_low)
    reported = _covers(np.where(boot_wider, b_low, t_low), np.where(boot_wider, b_high, t_high))
    assert 0.925 <= reported <= 0.975, reported

    nested = _covers(*_percentile(stats.hierarchical_bootstrap_replicates(tables, N_BOOT_TEST, 3)))
    assert nested < 0.925, nested
