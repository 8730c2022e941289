"""Per-group statistics of the timing rows: robust (medians, IQR) and honest about noise.

The bootstrap is seeded so the same rows always give the same intervals. A group is
flagged `wide` when its spread makes comparisons at the median meaningless (IQR or the
CI width above half the median); tables and reports print that warning next to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .results import GROUP_KEYS

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 8
WIDE_SPREAD = 0.5  # IQR or CI width as a fraction of the median

STAT_COLUMNS = ["n", "median", "q1", "q3", "iqr", "min", "max", "ci_low", "ci_high", "wide", "note"]


def bootstrap_median_ci(values: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ratio_ci(base: np.ndarray, new: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% bootstrap interval of median(new) / median(base), resampling both independently."""
    if len(base) == 0 or len(new) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mb = np.median(base[rng.integers(0, len(base), size=(BOOTSTRAP_SAMPLES, len(base)))], axis=1)
    mn = np.median(new[rng.integers(0, len(new), size=(BOOTSTRAP_SAMPLES, len(new)))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mn / mb
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def describe(values: np.ndarray) -> dict[str, object]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {k: (0 if k == "n" else False if k == "wide" else float("nan")) for k in STAT_COLUMNS if k != "note"}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    low, high = bootstrap_median_ci(values)
    wide = bool(median > 0 and ((q3 - q1) / median > WIDE_SPREAD or (high - low) / median > WIDE_SPREAD))
    return {
        "n": len(values),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "min": float(values.min()),
        "max": float(values.max()),
        "ci_low": low,
        "ci_high": high,
        "wide": wide,
    }


def summarize(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """One row per group with n, median, IQR, min, max, bootstrap CI, `wide` and any note."""
    keys = keys or GROUP_KEYS
    out = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        stats = describe(group["seconds"].to_numpy(dtype=float, na_value=np.nan))
        notes = [n for n in group["note"].dropna().unique() if n]
        stats["note"] = "; ".join(notes)
        out.append({**dict(zip(keys, key, strict=True)), **stats})
    return pd.DataFrame(out, columns=[*keys, *STAT_COLUMNS])
