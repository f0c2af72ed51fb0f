"""Cluster bootstrap confidence intervals over test images.

Items (phrases, questions, regions...) of one image are not independent, so the unit of
resampling is the group (image id): each resample draws ``G`` groups with replacement and
aggregates ALL items of the drawn groups (a group drawn twice counts twice). Without ``groups``
each item is its own group. Intervals are percentile intervals of the resampled statistic.

``statistic="mean"`` (the default) is fully vectorised: per-group sums and counts, then one
``[n_boot, G]`` index array, so 1000 resamples of 1000 groups take milliseconds; the mean of a
resample is the item-weighted mean ``sum / count``. A callable ``statistic(values_subset)`` is
evaluated once per resample on the rows of ``values`` (first axis) of the drawn items, e.g. an
AUROC over ``values = np.c_[scores, targets]``. Items with a NaN value (1-D values) are dropped
before resampling (e.g. phrases a metric does not apply to).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy


@dataclass(frozen=True)
class CI:
    """A point estimate with its ``1 - alpha`` percentile interval."""

    estimate: float
    low: float
    high: float
    alpha: float
    n_boot: int
    n_groups: int
    n_items: int
    p_value: float | None = None  # paired differences only: two-sided bootstrap p for "no difference"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _group_codes(groups: Sequence | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    if isinstance(groups, np.ndarray) or hasattr(groups, "detach"):
        g = as_numpy(groups)
    else:
        g = np.asarray(list(groups), dtype=object)
        g = (
            g.astype(str)
            if g.size and not all(isinstance(x, (int, np.integer)) for x in g)
            else g.astype(np.int64)
        )
    if len(g) != n:
        raise ValueError(f"{len(g)} group ids for {n} items")
    return np.unique(g, return_inverse=True)[1].reshape(-1)


def _draws(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))


def _mean_stats(values: np.ndarray, codes: np.ndarray, draws: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    return sums[draws].sum(axis=1) / counts[draws].sum(axis=1)


def _callable_stats(
    values: np.ndarray, codes: np.ndarray, draws: np.ndarray, statistic: Callable[[np.ndarray], float]
) -> np.ndarray:
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty(len(draws))
    for b, drawn in enumerate(draws):
        lens = counts[drawn]
        # item positions of every drawn group, concatenated: start of its run + 0..len-1
        offs = np.repeat(starts[drawn] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        out[b] = statistic(values[order[offs + np.arange(lens.sum())]])
    return out


def _prepare(values: Any, groups: Sequence | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = as_numpy(values, np.float64)
    codes = _group_codes(groups, len(v))
    keep = ~np.isnan(v) if v.ndim == 1 else np.ones(len(v), bool)
    return v, codes, keep


def _interval(est: float, stats: np.ndarray, alpha: float) -> tuple[float, float]:
    if np.isnan(stats).all():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _resampled(
    v: np.ndarray, codes: np.ndarray, n_boot: int, seed: int, statistic: Any
) -> tuple[float, np.ndarray, int]:
    codes = np.unique(codes, return_inverse=True)[1].reshape(-1)  # dense again after dropping items
    n_groups = int(codes.max()) + 1 if codes.size else 0
    if n_groups == 0:
        return float("nan"), np.full(n_boot, np.nan), 0
    draws = _draws(n_groups, n_boot, seed)
    if statistic == "mean":
        return float(v.mean()), _mean_stats(v, codes, draws, n_groups), n_groups
    if not callable(statistic):
        raise TypeError("statistic must be 'mean' or a callable")
    return float(statistic(v)), _callable_stats(v, codes, draws, statistic), n_groups


def bootstrap_ci(
    per_item_values: Any,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: str | Callable[[np.ndarray], float] = "mean",
) -> CI:
    """Percentile CI of ``statistic`` over items, resampling groups (images) with replacement."""
    v, codes, keep = _prepare(per_item_values, groups)
    est, stats, n_groups = _resampled(v[keep], codes[keep], n_boot, seed, statistic)
    lo, hi = _interval(est, stats, alpha)
    return CI(est, lo, hi, alpha, n_boot, n_groups, int(keep.sum()))


def paired_difference_ci(
    values_a: Any,
    values_b: Any,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: str | Callable[[np.ndarray], float] = "mean",
) -> CI:
    """CI of ``statistic(a) - statistic(b)`` with the SAME resampled groups for both models.

    ``values_a``/``values_b`` are per-item values of two models on the same items (same order).
    Items where either is NaN are dropped from both. ``p_value`` is the two-sided bootstrap
    p-value: ``2 * min(P(diff <= 0), P(diff >= 0))`` over resamples, capped at 1.
    """
    a, codes, keep_a = _prepare(values_a, groups)
    b, _, keep_b = _prepare(values_b, groups)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    keep = keep_a & keep_b
    if statistic == "mean":
        d = a[keep] - b[keep]  # mean(a) - mean(b) = mean(a - b) over the same items
        est, stats, n_groups = _resampled(d, codes[keep], n_boot, seed, "mean")
    else:
        both = np.stack([a[keep], b[keep]], axis=1)

        def diff(x):
            return statistic(x[:, 0]) - statistic(x[:, 1])

        est, stats, n_groups = _resampled(both, codes[keep], n_boot, seed, diff)
    lo, hi = _interval(est, stats, alpha)
    valid = stats[~np.isnan(stats)]
    p = float(min(1.0, 2 * min((valid <= 0).mean(), (valid >= 0).mean()))) if valid.size else None
    return CI(est, lo, hi, alpha, n_boot, n_groups, int(keep.sum()), p)
