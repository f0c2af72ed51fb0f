"""Intervals that cover both training seeds and test images (a two-level bootstrap).

One training run tells little on a small test split: the same settings trained with another seed
can move a metric by more than a bootstrap interval over test images says (the baseline's zero-shot
AUROC moved from 0.782 to 0.683 to 0.827 across runs with unchanged settings). So a method's effect is
judged over ``S`` training seeds, each seed training both models of a pair, and evaluated on the same
test images.

Each resample draws ``S`` seeds with replacement and ``G`` images (groups) with replacement, the same
images for every drawn seed (the test split is fixed, so an image that is hard for one run tends to be
hard for another), computes the statistic of each drawn seed's items of the drawn images, and averages
over the drawn seeds. The estimate is the mean of the per-seed statistics; the interval is the
percentile interval of the resampled means. With a handful of seeds the seed level is coarse, so the
per-seed values and their standard deviation are reported beside it.

Items are as in :mod:`regionmed.evaluation.bootstrap`: per-item values (NaN = not scored) whose mean is
the metric, or per-item rows and a ``statistic`` of the rows (e.g. a macro AUROC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from regionmed.evaluation.bootstrap import _group_codes

Statistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class SeedCI:
    """Mean over seeds of a per-seed statistic, its spread over seeds, and the two-level interval."""

    estimate: float
    sd: float  # sample standard deviation of the per-seed values (0 with one seed)
    per_seed: tuple[float, ...]
    low: float
    high: float
    alpha: float
    n_boot: int
    n_seeds: int
    n_groups: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_seed": list(self.per_seed)}


def _stat(values: np.ndarray, statistic: Statistic | None) -> float:
    if statistic is None:
        kept = values[~np.isnan(values)]
        return float(kept.mean()) if kept.size else float("nan")
    return float(statistic(values))


def _runs(by_seed: Sequence[Any], n_items: int) -> np.ndarray:
    runs = np.stack([np.asarray(v, dtype=np.float64) for v in by_seed])
    if runs.shape[1] != n_items:
        raise ValueError(f"per-seed values have {runs.shape[1]} items, groups {n_items}")
    return runs


def _mean_resamples(runs: np.ndarray, codes: np.ndarray, draws: np.ndarray, n_groups: int) -> np.ndarray:
    """``[S, B]``: the mean of each seed's non-NaN items over each resample's drawn groups."""
    out = np.empty((len(runs), len(draws)))
    for s, v in enumerate(runs):
        keep = ~np.isnan(v)
        sums = np.bincount(codes[keep], weights=v[keep], minlength=n_groups)
        counts = np.bincount(codes[keep], minlength=n_groups).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s] = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return out


def _callable_resamples(
    runs: np.ndarray, codes: np.ndarray, draws: np.ndarray, statistic: Statistic
) -> np.ndarray:
    members = [np.flatnonzero(codes == g) for g in range(int(codes.max()) + 1)]
    out = np.empty((len(runs), len(draws)))
    for b, drawn in enumerate(draws):
        rows = np.concatenate([members[g] for g in drawn])
        for s, v in enumerate(runs):
            out[s, b] = statistic(v[rows])
    return out


def seed_bootstrap(
    values_by_seed: Sequence[Any],
    groups: Sequence,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: Statistic | None = None,
) -> SeedCI:
    """Two-level interval of a metric (module doc). ``values_by_seed[s]``: the per-item values (or rows,
    with ``statistic``) of the run trained with seed ``s``, all on the same items in the same order;
    ``groups``: the image id of each item."""
    codes = _group_codes(groups, len(groups))
    runs = _runs(values_by_seed, len(codes))
    n_seeds, n_groups = len(runs), int(codes.max()) + 1
    per_seed = tuple(_stat(v, statistic) for v in runs)
    rng = np.random.default_rng(seed)
    image_draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    if statistic is None:
        by_seed = _mean_resamples(runs, codes, image_draws, n_groups)
    else:
        by_seed = _callable_resamples(runs, codes, image_draws, statistic)
    stats = by_seed[seed_draws, np.arange(n_boot)[:, None]].mean(axis=1)
    valid = stats[~np.isnan(stats)]
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2]) if valid.size else (np.nan, np.nan)
    values = np.asarray(per_seed)
    return SeedCI(
        estimate=float(np.nanmean(values)) if not np.isnan(values).all() else float("nan"),
        sd=float(np.nanstd(values, ddof=1)) if n_seeds > 1 else 0.0,
        per_seed=per_seed,
        low=float(low),
        high=float(high),
        alpha=alpha,
        n_boot=n_boot,
        n_seeds=n_seeds,
        n_groups=n_groups,
    )


def paired_seed_bootstrap(
    a_by_seed: Sequence[Any],
    b_by_seed: Sequence[Any],
    groups: Sequence,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: Statistic | None = None,
) -> SeedCI:
    """Two-level interval of ``metric(a) - metric(b)``: seed ``s`` of ``a`` is paired with seed ``s`` of
    ``b`` (both trained with that seed), and both see the same resampled images and seeds."""
    if len(a_by_seed) != len(b_by_seed):
        raise ValueError(f"{len(a_by_seed)} seeds of a, {len(b_by_seed)} of b")
    if statistic is None:
        # mean(a) - mean(b) over the items both scored = mean(a - b) there
        diffs = [
            np.asarray(a, np.float64) - np.asarray(b, np.float64)
            for a, b in zip(a_by_seed, b_by_seed, strict=True)
        ]
        return seed_bootstrap(diffs, groups, n_boot, seed, alpha)
    width = np.asarray(a_by_seed[0]).shape[1]

    def difference(rows: np.ndarray) -> float:
        return statistic(rows[:, :width]) - statistic(rows[:, width:])

    stacked = [np.hstack([np.asarray(a), np.asarray(b)]) for a, b in zip(a_by_seed, b_by_seed, strict=True)]
    return seed_bootstrap(stacked, groups, n_boot, seed, alpha, difference)
