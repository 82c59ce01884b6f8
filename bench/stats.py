"""Paired differences of two models and their 95% hierarchical bootstrap interval (numpy only).

Conventions:

* A measurement is keyed ``(seed, image, scale)``; ``seed`` is the training seed (models without
  training have one, any key). Model A's seed k is paired with model B's seed k, image with
  image, scale with scale: :func:`paired_differences`.
* Pooling over a claim's scales: the mean over scales per ``(seed, image)`` first
  (:func:`pool_scales`), so every image counts once per seed whatever the number of scales.
* The statistic is the mean over seeds of the mean over images (:func:`mean_of_means`).
* :func:`hierarchical_bootstrap`: resample seeds with replacement, then images with replacement
  within each resampled seed (as many as that seed has), recompute the statistic; the interval is
  the percentile interval of ``B`` replicates. The generator's seed is fixed (``rng_seed``), so a
  report is reproducible bit for bit. One seed reduces it to the ordinary image bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_B",
    "Interval",
    "hierarchical_bootstrap",
    "mean_of_means",
    "paired_differences",
    "pool_scales",
    "by_seed",
]

DEFAULT_B = 10000  # replicates; 3 seeds x 10 images: ~10 ms
Key = tuple  # (seed, image, scale)


@dataclass(frozen=True)
class Interval:
    """``estimate`` (mean over seeds of the mean over images) and its ``level`` interval."""

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_images: int  # images per seed (the most any seed has)
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """``holds`` (interval above 0), ``fails`` (below 0) or ``inconclusive``."""
        if self.low > 0:
            return "holds"
        if self.high < 0:
            return "fails"
        return "inconclusive"


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


def by_seed(values: Mapping[tuple, float]) -> list[np.ndarray]:
    """``{(seed, image): value}`` -> one array of per-image values per seed (sorted keys)."""
    groups: dict = {}
    for (seed, _image), v in sorted(values.items(), key=lambda kv: tuple(map(str, kv[0]))):
        groups.setdefault(seed, []).append(float(v))
    return [np.asarray(v, dtype=np.float64) for v in groups.values()]


def mean_of_means(groups: list[np.ndarray]) -> float:
    """Mean over seeds of the mean over images."""
    return float(np.mean([g.mean() for g in groups]))


def hierarchical_bootstrap(
    groups: list[np.ndarray],
    n_boot: int = DEFAULT_B,
    level: float = 0.95,
    rng_seed: int = 0,
) -> Interval:
    """Percentile interval of :func:`mean_of_means` under resampling seeds, then images within
    each resampled seed (``groups``: per seed, the per-image values)."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not groups:
        raise ValueError("no paired values to bootstrap")
    n_seeds = len(groups)
    sizes = np.array([len(g) for g in groups])
    width = int(sizes.max())
    table = np.zeros((n_seeds, width))
    for i, g in enumerate(groups):
        table[i, : len(g)] = g
    rng = np.random.default_rng(rng_seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # resampled seeds per replicate
    n = sizes[seeds]  # (B, S) images of each chosen seed
    images = np.floor(rng.random((n_boot, n_seeds, width)) * n[..., None]).astype(np.int64)
    picked = table[seeds[..., None], images]  # (B, S, width)
    used = np.arange(width)[None, None, :] < n[..., None]
    seed_means = (picked * used).sum(-1) / n
    replicates = seed_means.mean(-1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return Interval(mean_of_means(groups), float(low), float(high), n_seeds, width, level)
