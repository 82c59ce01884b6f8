"""Paired differences of two models and their 95% interval for a crossed seeds x images design.

Conventions:

* A measurement is keyed ``(seed, image, scale)``; ``seed`` is the training seed (models without
  training have one, any key). Model A's seed k is paired with model B's seed k, image with
  image, scale with scale: :func:`paired_differences`.
* Pooling over a claim's scales: the mean over scales per ``(seed, image)`` first
  (:func:`pool_scales`), so every image counts once per seed whatever the number of scales.
* The design is crossed: every seed is scored on the same images, so an image's effect is shared
  by all seeds. The values form a table ``d[seed, image]`` (:func:`complete_block`: only the
  complete seed x image block; cells outside it are dropped and counted).
* The statistic is the grand mean of that table (= the mean over seeds of the mean over images).
* :func:`two_way_t`: the two-way random-effects model ``d = mu + a_seed + b_image + e``; with
  ANOVA mean squares ``MS_seed``, ``MS_image``, ``MS_resid`` of an S x I table,
  ``Var(mean) = (MS_seed + MS_image - MS_resid) / (S I)`` with Satterthwaite degrees of freedom.
  Fallback when that combination is not positive (``MS_resid > MS_seed + MS_image``, i.e. both
  effects' variance estimates are negative and are truncated at zero): ``MS_resid / (S I)`` on
  ``(S - 1)(I - 1)`` degrees of freedom. One seed: the t interval over images (``I - 1`` df); one
  image: over seeds (``S - 1``); one cell: no interval (NaN bounds, verdict inconclusive).
* :func:`crossed_bootstrap`: each replicate draws S seeds with replacement and ONE draw of I
  images with replacement shared by every drawn seed; percentile interval of ``B`` replicates,
  fixed generator seed (``rng_seed``), so a report is reproducible bit for bit.
* :func:`crossed_interval`: both; the reported interval is the wider of the two
  (:attr:`CrossedInterval.chosen`), its ``estimator`` names which.
* :func:`hierarchical_bootstrap_replicates` is the nested design (seeds, then images drawn anew
  within each seed); it ignores that images are shared and covers well under 95% on crossed
  data. It is kept as the reference the tests compare against; no report uses it.
* :func:`holm`: Holm's step-down over a family of two-sided p-values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_B",
    "T_ESTIMATOR",
    "BOOT_ESTIMATOR",
    "CrossedInterval",
    "Interval",
    "complete_block",
    "crossed_bootstrap",
    "crossed_bootstrap_replicates",
    "crossed_interval",
    "hierarchical_bootstrap_replicates",
    "holm",
    "paired_differences",
    "pool_scales",
    "two_way_moments",
    "two_way_t",
]

DEFAULT_B = 10000  # bootstrap replicates; 5 seeds x 10 images: a few ms
T_ESTIMATOR = "two-way t (Satterthwaite)"
BOOT_ESTIMATOR = "crossed bootstrap"
Key = tuple  # (seed, image, scale)


@dataclass(frozen=True)
class Interval:
    """``estimate`` (grand mean of the seed x image table) and its ``level`` interval.

    ``p_value``: two-sided, from the two-way t statistic (NaN where there is none)."""

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_images: int  # images per seed (the complete block's)
    level: float = 0.95
    estimator: str = ""
    p_value: float = math.nan
    df: float = math.nan

    @property
    def width(self) -> float:
        """``high - low``; infinite when the bounds are unknown (NaN)."""
        w = self.high - self.low
        return math.inf if math.isnan(w) else w

    @property
    def verdict(self) -> str:
        """``holds`` (interval above 0), ``fails`` (below 0) or ``inconclusive``."""
        if self.low > 0:
            return "holds"
        if self.high < 0:
            return "fails"
        return "inconclusive"


@dataclass(frozen=True)
class CrossedInterval:
    """The two-way t interval and the crossed bootstrap interval of one table; ``dropped``:
    cells outside the complete seed x image block."""

    t: Interval
    boot: Interval
    dropped: int = 0

    @property
    def chosen(self) -> Interval:
        """The wider interval (ties: the t interval), carrying the t interval's p-value."""
        if self.boot.width > self.t.width:
            return Interval(
                self.boot.estimate,
                self.boot.low,
                self.boot.high,
                self.boot.n_seeds,
                self.boot.n_images,
                self.boot.level,
                BOOT_ESTIMATOR,
                self.t.p_value,
                self.t.df,
            )
        return self.t


def paired_differences(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[Key, float]:
    """``a[k] - b[k]`` for every key both hold (``(seed, image, scale)``: same seed index, same
    image, same scale)."""
    return {k: float(a[k]) - float(b[k]) for k in a if k in b}


def pool_scales(diffs: Mapping[Key, float]) -> dict[tuple, float]:
    """Mean over scales per ``(seed, image)``."""
    sums: dict[tuple, list[float]] = {}
    for (seed, image, _scale), d in diffs.items():
        sums.setdefault((seed, image), []).append(d)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def complete_block(values: Mapping[tuple, float]) -> tuple[np.ndarray, list, list, int]:
    """``{(seed, image): value}`` -> ``(table[seed, image], seeds, images, dropped)``.

    Only a complete block is kept: while a cell is missing, the seed or image with the largest
    fraction of missing cells is dropped (ties: an image, then the last in sorted order).
    ``dropped``: the cells measured but left out. Seeds and images in sorted order (as text)."""
    seeds = sorted({k[0] for k in values}, key=str)
    images = sorted({k[1] for k in values}, key=str)
    present = np.array([[(s, i) in values for i in images] for s in seeds], dtype=bool)
    rows, cols = np.ones(len(seeds), bool), np.ones(len(images), bool)
    while rows.any() and cols.any() and not present[np.ix_(rows, cols)].all():
        block = present[np.ix_(rows, cols)]
        miss_seed = 1.0 - block.mean(axis=1)
        miss_image = 1.0 - block.mean(axis=0)
        if miss_image.max() >= miss_seed.max():
            at = np.flatnonzero(cols)[np.flatnonzero(miss_image == miss_image.max())[-1]]
            cols[at] = False
        else:
            at = np.flatnonzero(rows)[np.flatnonzero(miss_seed == miss_seed.max())[-1]]
            rows[at] = False
    kept_seeds = [s for s, keep in zip(seeds, rows, strict=True) if keep]
    kept_images = [i for i, keep in zip(images, cols, strict=True) if keep]
    table = np.array(
        [[float(values[s, i]) for i in kept_images] for s in kept_seeds], dtype=np.float64
    ).reshape(len(kept_seeds), len(kept_images))
    return table, kept_seeds, kept_images, len(values) - table.size


def two_way_moments(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grand mean, its standard error and degrees of freedom of ``tables[..., seed, image]``
    under the two-way random-effects model (module docstring); vectorised over leading axes.
    One seed or one image: the one-way t (``I - 1`` or ``S - 1`` df); one cell: NaN se and df."""
    x = np.asarray(tables, dtype=np.float64)
    n_seeds, n_images = x.shape[-2:]
    grand = x.mean(axis=(-2, -1))
    if n_seeds * n_images == 1:
        nan = np.full_like(grand, np.nan)
        return grand, nan, nan
    if n_seeds == 1 or n_images == 1:
        flat = x.reshape(*x.shape[:-2], n_seeds * n_images)
        n = flat.shape[-1]
        se = flat.std(axis=-1, ddof=1) / math.sqrt(n)
        return grand, se, np.full_like(grand, n - 1.0)
    seed_means, image_means = x.mean(axis=-1), x.mean(axis=-2)
    df_s, df_i = n_seeds - 1.0, n_images - 1.0
    df_r = df_s * df_i
    ms_seed = n_images * ((seed_means - grand[..., None]) ** 2).sum(-1) / df_s
    ms_image = n_seeds * ((image_means - grand[..., None]) ** 2).sum(-1) / df_i
    resid = x - seed_means[..., :, None] - image_means[..., None, :] + grand[..., None, None]
    ms_resid = (resid**2).sum(axis=(-2, -1)) / df_r
    combo = ms_seed + ms_image - ms_resid
    ok = combo > 0
    var_sum = np.where(ok, combo, ms_resid)
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = combo**2 / (ms_seed**2 / df_s + ms_image**2 / df_i + ms_resid**2 / df_r)
    df = np.where(ok, satterthwaite, df_r)
    return grand, np.sqrt(var_sum / (n_seeds * n_images)), df


def _t_bounds(
    estimate: np.ndarray, se: np.ndarray, df: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, p)``: the t interval and the two-sided p-value of ``estimate / se``; a zero
    standard error gives a zero-width interval and p = 0 (estimate != 0) or 1."""
    from scipy import stats as sps

    with np.errstate(divide="ignore", invalid="ignore"):
        safe_df = np.where(np.isnan(df) | (df <= 0), np.nan, df)
        q = sps.t.ppf(0.5 + level / 2.0, np.where(se > 0, safe_df, 1.0))
        half = np.where(se > 0, q * se, np.where(np.isnan(se), np.nan, 0.0))
        t = np.where(se > 0, np.abs(estimate) / se, np.where(estimate != 0, np.inf, 0.0))
        p = np.where(se > 0, 2.0 * sps.t.sf(t, safe_df), np.where(estimate != 0, 0.0, 1.0))
    p = np.where(np.isnan(se), np.nan, p)
    return estimate - half, estimate + half, p


def two_way_t(table: np.ndarray, level: float = 0.95) -> Interval:
    """The two-way random-effects t interval of the grand mean of ``table[seed, image]``."""
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError("two_way_t needs a non-empty seed x image table")
    est, se, df = two_way_moments(x)
    low, high, p = _t_bounds(est, se, df, level)
    return Interval(
        float(est), float(low), float(high), x.shape[0], x.shape[1], level, T_ESTIMATOR,
        float(p), float(df),
    )  # fmt: skip


def _counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of ``n`` draws with replacement from ``n`` items."""
    picks = rng.integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + picks).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def crossed_bootstrap_replicates(
    tables: np.ndarray, n_boot: int = DEFAULT_B, rng_seed: int = 0
) -> np.ndarray:
    """``(..., n_boot)`` grand means of ``tables[..., seed, image]`` with seeds drawn with
    replacement and one image draw shared by all seeds (the same draws for every table)."""
    x = np.asarray(tables, dtype=np.float64)
    n_seeds, n_images = x.shape[-2:]
    rng = np.random.default_rng(rng_seed)
    seed_counts = _counts(rng, n_boot, n_seeds)  # (B, S)
    image_counts = _counts(rng, n_boot, n_images)  # (B, I)
    per_seed = x @ image_counts.T  # (..., S, B): each seed's sum over the drawn images
    return np.einsum("bs,...sb->...b", seed_counts, per_seed) / (n_seeds * n_images)


def hierarchical_bootstrap_replicates(
    tables: np.ndarray, n_boot: int = DEFAULT_B, rng_seed: int = 0
) -> np.ndarray:
    """``(..., n_boot)`` grand means with seeds drawn with replacement and, for each drawn seed,
    its own independent image draw (the nested design; wrong for crossed data, see the module
    docstring)."""
    x = np.asarray(tables, dtype=np.float64)
    lead, (n_seeds, n_images) = x.shape[:-2], x.shape[-2:]
    rng = np.random.default_rng(rng_seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # (B, slot)
    image_counts = _counts(rng, n_boot * n_seeds, n_images)  # (B * slot, I)
    sums = x.reshape(-1, n_seeds, n_images) @ image_counts.T  # (N, S, B * slot)
    sums = sums.reshape(-1, n_seeds, n_boot, n_seeds)  # [n, seed, b, slot]
    slot = np.arange(n_seeds)[None, :]
    picked = sums[:, seeds, np.arange(n_boot)[:, None], slot]  # (N, B, slot)
    return (picked.sum(-1) / (n_seeds * n_images)).reshape(*lead, n_boot)


def crossed_bootstrap(
    table: np.ndarray, n_boot: int = DEFAULT_B, level: float = 0.95, rng_seed: int = 0
) -> Interval:
    """Percentile interval of :func:`crossed_bootstrap_replicates` for one table."""
    x = np.asarray(table, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError("crossed_bootstrap needs a non-empty seed x image table")
    reps = crossed_bootstrap_replicates(x, n_boot, rng_seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return Interval(
        float(x.mean()), float(low), float(high), x.shape[0], x.shape[1], level, BOOT_ESTIMATOR
    )


def crossed_interval(
    values: Mapping[tuple, float],
    n_boot: int = DEFAULT_B,
    level: float = 0.95,
    rng_seed: int = 0,
) -> CrossedInterval:
    """Both intervals of ``{(seed, image): value}`` on its complete block."""
    table, _, _, dropped = complete_block(values)
    if table.size == 0:
        raise ValueError("no paired values")
    return CrossedInterval(
        two_way_t(table, level), crossed_bootstrap(table, n_boot, level, rng_seed), dropped
    )


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level ``alpha``. The
    k-th smallest p (k = 0, 1, ...) is compared with ``alpha / (m - k)``; the first that
    exceeds it stops the procedure. NaN counts as 1 (in the family, never rejected)."""
    p = [1.0 if (x is None or math.isnan(x)) else float(x) for x in p_values]
    m = len(p)
    rejected = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        if p[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected
