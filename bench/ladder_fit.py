"""The budget ladder's estimator (:mod:`bench.scaling` states the conventions): per gap, the
least-squares slope of the rung means on ``log2(steps)``, its forecast at a target budget and the
straight-line check, each a grand mean of per-(seed, image) cell fits with the interval of the
crossed seed x image design (:func:`crossed`: two-way random-effects t with Satterthwaite degrees
of freedom, beside a crossed bootstrap; the wider is reported)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = ["DEFAULT_BOOT", "TARGET_STEPS", "Crossed", "LadderFit", "crossed", "fit_ladder"]

DEFAULT_BOOT = 4000


TARGET_STEPS = 600_000


@dataclass(frozen=True)
class Crossed:
    """Grand mean of a seed x image table with its two-way t and crossed bootstrap intervals;
    ``low``/``high`` are the wider of the two (``method`` says which)."""

    estimate: float
    low: float
    high: float
    se: float
    df: float
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    method: str

    @property
    def p_value(self) -> float:
        """Two-sided p-value of ``estimate == 0`` from the two-way t (NaN without one)."""
        if not (self.se > 0 and math.isfinite(self.df)):
            return math.nan
        return float(2 * sps.t.sf(abs(self.estimate) / self.se, self.df))


def _two_way_var(table: np.ndarray) -> tuple[float, float]:
    """``(Var(grand mean), Satterthwaite df)`` of an S x I table (see the module docstring).

    One seed or one image: the one-way variance of the mean over the other; one cell: NaN."""
    n_s, n_i = table.shape
    if n_s * n_i < 2:
        return math.nan, math.nan
    if n_s == 1 or n_i == 1:
        flat = table.ravel()
        return float(flat.var(ddof=1) / flat.size), float(flat.size - 1)
    grand = table.mean()
    row, col = table.mean(axis=1), table.mean(axis=0)
    df_s, df_i, df_e = n_s - 1, n_i - 1, (n_s - 1) * (n_i - 1)
    ms_s = n_i * float(((row - grand) ** 2).sum()) / df_s
    ms_i = n_s * float(((col - grand) ** 2).sum()) / df_i
    resid = table - row[:, None] - col[None, :] + grand
    ms_e = float((resid**2).sum()) / df_e
    # S I Var = [MS_s - MS_e]_+ + [MS_i - MS_e]_+ + MS_e, as a combination of mean squares
    coef = {"s": 0.0, "i": 0.0, "e": 1.0}
    if ms_s > ms_e:
        coef["s"], coef["e"] = 1.0, coef["e"] - 1.0
    if ms_i > ms_e:
        coef["i"], coef["e"] = 1.0, coef["e"] - 1.0
    ms = {"s": ms_s, "i": ms_i, "e": ms_e}
    dfs = {"s": df_s, "i": df_i, "e": df_e}
    total = sum(coef[k] * ms[k] for k in ms)
    if not total > 0:
        return 0.0, math.nan
    denom = sum((coef[k] * ms[k]) ** 2 / dfs[k] for k in ms if coef[k])
    return total / (n_s * n_i), total**2 / denom


def _boot_weights(n_s: int, n_i: int, n_boot: int, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Crossed bootstrap draws as counts: ``(n_boot, S)`` seed counts and ``(n_boot, I)`` image
    counts (one image draw per replicate, shared by all its seeds)."""
    rng = np.random.default_rng(rng_seed)
    seeds = rng.multinomial(n_s, np.full(n_s, 1.0 / n_s), size=n_boot)
    images = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=n_boot)
    return seeds.astype(float), images.astype(float)


def crossed(
    table: np.ndarray,
    level: float = 0.95,
    n_boot: int = DEFAULT_BOOT,
    rng_seed: int = 0,
) -> Crossed:
    """The grand mean of ``table`` (seeds x images) with the wider of its two-way t and crossed
    bootstrap ``level`` intervals."""
    table = np.asarray(table, dtype=float)
    est = float(table.mean())
    var, df = _two_way_var(table)
    if var == 0.0:
        t_low = t_high = est
    elif math.isfinite(var) and math.isfinite(df):
        half = float(sps.t.ppf(0.5 + level / 2, df)) * math.sqrt(var)
        t_low, t_high = est - half, est + half
    else:
        t_low = t_high = math.nan
    n_s, n_i = table.shape
    if n_s * n_i >= 2 and n_boot > 0:
        ws, wi = _boot_weights(n_s, n_i, n_boot, rng_seed)
        reps = np.einsum("bs,si,bi->b", ws, table, wi) / (n_s * n_i)
        tail = (1 - level) / 2
        boot_low, boot_high = (float(q) for q in np.quantile(reps, [tail, 1 - tail]))
    else:
        boot_low = boot_high = math.nan
    t_width = t_high - t_low if math.isfinite(t_high - t_low) else -1.0
    boot_width = boot_high - boot_low if math.isfinite(boot_high - boot_low) else -1.0
    if boot_width > t_width:
        low, high, method = boot_low, boot_high, "crossed bootstrap"
    else:
        low, high, method = t_low, t_high, "two-way t" if t_width >= 0 else "none"
    return Crossed(
        est, low, high, math.sqrt(var) if var >= 0 else math.nan, df, t_low, t_high,
        boot_low, boot_high, method,
    )  # fmt: skip


@dataclass(frozen=True)
class LadderFit:
    """The straight-line fit of one gap on ``log2(steps)`` (see the module docstring)."""

    steps: tuple[int, ...]  # a's steps at each rung
    seeds: tuple[str, ...]
    images: tuple[str, ...]
    table: np.ndarray  # d[seed, image, rung]
    slope: Crossed  # dB per doubling
    forecast: Crossed  # at target_steps
    target_steps: int
    curvature: Crossed | None  # None with fewer than 3 rungs

    @property
    def x(self) -> np.ndarray:
        return np.log2(np.asarray(self.steps, dtype=float))

    def line(self, xs: np.ndarray, level: float = 0.95, n_boot: int = 1000) -> np.ndarray:
        """``(len(xs), 3)``: the fitted gap at each ``log2(steps)`` in ``xs`` with its
        interval (the forecast construction at every point: a pointwise band)."""
        means, slopes = _cell_fits(self.table, self.x)[:2]
        xbar = float(self.x.mean())
        out = np.empty((len(xs), 3))
        for k, x in enumerate(xs):
            c = crossed(means + slopes * (x - xbar), level, n_boot)
            out[k] = (c.estimate, c.low, c.high)
        return out


def _cell_fits(d: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per cell of ``d[seed, image, rung]``: the mean over rungs, the least-squares slope on
    ``x`` and the coefficient on the orthogonal quadratic (None with fewer than 3 rungs)."""
    xc = x - x.mean()
    means = d.mean(axis=2)
    slopes = d @ xc / float(xc @ xc)
    if len(x) < 3:
        return means, slopes, None
    quad = xc**2
    basis = np.stack([np.ones_like(xc), xc])
    quad = quad - basis.T @ np.linalg.lstsq(basis.T, quad, rcond=None)[0]
    return means, slopes, d @ quad / float(quad @ quad)


def fit_ladder(
    d: np.ndarray,
    steps: list[int] | tuple[int, ...],
    target_steps: int = TARGET_STEPS,
    level: float = 0.95,
    n_boot: int = DEFAULT_BOOT,
    seeds: tuple[str, ...] = (),
    images: tuple[str, ...] = (),
) -> LadderFit:
    """Fit ``d[seed, image, rung]`` (rungs at ``steps``, at least 2) on ``log2(steps)``."""
    d = np.asarray(d, dtype=float)
    if d.ndim != 3 or d.shape[2] != len(steps) or len(steps) < 2:
        raise ValueError(f"need d[seed, image, rung] with >= 2 rungs, got shape {d.shape}")
    x = np.log2(np.asarray(steps, dtype=float))
    means, slopes, quad = _cell_fits(d, x)
    forecast = means + slopes * (math.log2(target_steps) - float(x.mean()))
    return LadderFit(
        tuple(int(n) for n in steps),
        tuple(seeds) or tuple(str(k) for k in range(d.shape[0])),
        tuple(images) or tuple(str(k) for k in range(d.shape[1])),
        d,
        crossed(slopes, level, n_boot),
        crossed(forecast, level, n_boot),
        int(target_steps),
        None if quad is None else crossed(quad, level, n_boot),
    )
