"""Per-group statistics of the timing rows: robust (medians, IQR), honest about noise.

Every table, figure, comparison and the notebook take their numbers from here, so there
is one rule for what a CI is and what "too wide to compare" means. The bootstrap is
seeded so the same rows always give the same intervals. The median's CI is the exact
distribution-free one: the interval between two order statistics whose ranks come from the
binomial distribution (any continuous distribution, no resampling). It reaches 95% only from
n = 6; below that the widest such interval, [min, max], covers the median with probability
1 - 2 * 0.5**n (75% at n = 3, 94% at n = 5), and `ci_level` says so instead of claiming 95%;
a single value has no interval at all. A group is flagged `wide` when
its median is too uncertain to compare: the CI is wider than half the median. The
IQR is not part of that rule: a broad distribution (a loaded machine, a bimodal step)
still has a well-known median once n is large enough, and its spread is shown where it
belongs, in the IQR, p90/p99 and the CDF figures. Tail percentiles are only reported when
n can support them: p90 needs at least 10 values and p99 at least 100 (a percentile p
needs n >= 1 / (1 - p), so at least one value lies beyond it); below that they are left
empty rather than guessed.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from .results import GROUP_KEYS

log = logging.getLogger(__name__)

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 8
CONFIDENCE = 0.95
WIDE_SPREAD = 0.5  # CI width as a fraction of the median
# percentile -> the fewest values that put at least one observation beyond it
TAIL_PERCENTILES = {"p90": (90, 10), "p99": (99, 100)}

STAT_COLUMNS = [
    "n",
    "median",
    "q1",
    "q3",
    "iqr",
    "min",
    "max",
    "p90",
    "p99",
    "ci_low",
    "ci_high",
    "ci_level",
    "precision",
    "wide",
    "note",
]


def finite(values: object) -> np.ndarray:
    """The measured values of a column or array: floats, NaN (not measured) dropped."""
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _bootstrap(samples: tuple[np.ndarray, ...], statistic, seed: int) -> tuple[float, float]:
    """scipy's percentile bootstrap, seeded; a sample with no spread has a point interval."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        result = sps.bootstrap(
            samples,
            statistic,
            n_resamples=BOOTSTRAP_SAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # degenerate: every resample alike
        point = float(statistic(*samples, axis=-1))
        return point, point
    return float(low), float(high)


def median_ranks(n: int) -> tuple[int, float]:
    """The 1-based rank j of the order statistics x(j) <= median <= x(n+1-j) for the narrowest
    symmetric interval that covers the median with at least 95%, and the confidence it
    reaches: 1 - 2 * P(B <= j-1) with B ~ Binomial(n, 1/2). Below n = 6 no interval reaches
    95%: j is 1 ([min, max]) and the level is what it really is; n < 2 has no interval (0)."""
    if n < 2:
        return 1, 0.0
    tail = (1 - CONFIDENCE) / 2
    # ppf: the smallest k with P(B <= k) >= tail, so P(B <= k - 1) < tail: j = k is the
    # largest rank that keeps 95%; 0 (so 1: [min, max]) when even that falls short
    j = max(int(sps.binom.ppf(tail, n, 0.5)), 1)
    return j, float(1 - 2 * sps.binom.cdf(j - 1, n, 0.5))


def median_ci(values: np.ndarray) -> tuple[float, float]:
    """The exact order-statistic interval of the median (95% from n = 6; below that
    [min, max] at the level `median_ranks` gives); no interval (NaN) for fewer than 2 values."""
    values = np.sort(finite(values))
    if len(values) < 2:
        return float("nan"), float("nan")
    j, _ = median_ranks(len(values))
    return float(values[j - 1]), float(values[len(values) - j])


def _median_ratio(base: np.ndarray, new: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(new, axis=axis) / np.median(base, axis=axis)


def ratio_ci(base: np.ndarray, new: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% bootstrap interval of median(new) / median(base), resampling both independently;
    none (NaN) when a side has a single value: resampling it cannot show its uncertainty."""
    base, new = finite(base), finite(new)
    if len(base) < 2 or len(new) < 2:
        return float("nan"), float("nan")
    return _bootstrap((base, new), _median_ratio, seed)


def precision(median: float, ci_low: float, ci_high: float) -> float:
    """Width of the median's CI as a fraction of the median (0.10 = +-5%); a median with
    no interval (one value) is infinitely imprecise, never perfectly precise."""
    if not median > 0:
        return float("nan")
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return math.inf
    return (ci_high - ci_low) / median


def describe(values: np.ndarray) -> dict[str, object]:
    values = finite(values)
    n = len(values)
    if n == 0:
        return {k: (0 if k == "n" else False if k == "wide" else float("nan")) for k in STAT_COLUMNS if k != "note"}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    low, high = median_ci(values)
    _, level = median_ranks(n)
    tails = {
        name: float(np.percentile(values, p)) if n >= need else float("nan")
        for name, (p, need) in TAIL_PERCENTILES.items()
    }
    width = precision(median, low, high)
    wide = bool(median > 0 and width > WIDE_SPREAD)
    return {
        "n": n,
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(values.min()),
        "max": float(values.max()),
        **tails,
        "ci_low": low,
        "ci_high": high,
        "ci_level": level,
        "precision": width,
        "wide": wide,
    }


def summarize(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """One row per group with n, median, IQR, min, max, p90/p99, the median's CI and its level,
    precision, `wide`, notes."""
    keys = keys or GROUP_KEYS
    out = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        stats = describe(group["seconds"].to_numpy(dtype=float, na_value=np.nan))
        notes = [n for n in group["note"].dropna().unique() if n]
        stats["note"] = "; ".join(notes)
        out.append({**dict(zip(keys, key, strict=True)), **stats})
    return pd.DataFrame(out, columns=[*keys, *STAT_COLUMNS])
