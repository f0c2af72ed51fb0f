"""The two-level (seeds x images) bootstrap against a loop oracle and the one-level bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.evaluation.bootstrap import bootstrap_ci
from regionmed.evaluation.seed_bootstrap import paired_seed_bootstrap, seed_bootstrap
from regionmed.evaluation.zeroshot import macro_auroc_of


def oracle(values_by_seed, groups, n_boot, seed, alpha, statistic):
    """The definition, written as loops: draw images and seeds, average the drawn seeds' statistics."""
    ids = sorted(set(groups))
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in ids}
    rng = np.random.default_rng(seed)
    image_draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    seed_draws = rng.integers(0, len(values_by_seed), size=(n_boot, len(values_by_seed)))
    stats = []
    for b in range(n_boot):
        rows = [i for g in image_draws[b] for i in members[ids[g]]]
        stats.append(np.mean([statistic(np.asarray(values_by_seed[s])[rows]) for s in seed_draws[b]]))
    return np.quantile(stats, [alpha / 2, 1 - alpha / 2])


def nanmean(v):
    return float(np.nanmean(v))


def test_matches_the_loop_oracle_for_means_with_unscored_items():
    rng = np.random.default_rng(1)
    groups = list(rng.integers(0, 30, 90))
    runs = [rng.random(90) for _ in range(3)]
    for r in runs:
        r[rng.random(90) < 0.2] = np.nan
    ci = seed_bootstrap(runs, groups, n_boot=200, seed=5)
    assert [ci.low, ci.high] == pytest.approx(oracle(runs, groups, 200, 5, 0.05, nanmean), abs=1e-12)
    assert ci.estimate == pytest.approx(np.mean([np.nanmean(r) for r in runs]))
    assert ci.sd == pytest.approx(np.std([np.nanmean(r) for r in runs], ddof=1))
    assert ci.n_seeds == 3 and ci.n_groups == len(set(groups))


def test_matches_the_loop_oracle_for_a_macro_auroc():
    rng = np.random.default_rng(2)
    n, c = 60, 3
    targets = rng.random((n, c)) < 0.4
    runs = [np.c_[targets + rng.normal(0, s, (n, c)), targets] for s in (0.5, 1.0, 2.0)]
    groups = list(range(n))
    ci = seed_bootstrap(runs, groups, n_boot=50, seed=0, statistic=macro_auroc_of)
    assert [ci.low, ci.high] == pytest.approx(oracle(runs, groups, 50, 0, 0.05, macro_auroc_of), abs=1e-12)
    assert ci.per_seed[0] > ci.per_seed[2]  # less noise, better AUROC


def test_one_seed_is_the_image_bootstrap():
    rng = np.random.default_rng(3)
    values, groups = rng.random(200), list(rng.integers(0, 50, 200))
    two_level = seed_bootstrap([values], groups, n_boot=300, seed=7)
    one_level = bootstrap_ci(values, groups, n_boot=300, seed=7)
    assert (two_level.low, two_level.high) == pytest.approx((one_level.low, one_level.high))
    assert two_level.sd == 0.0


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(4)
    groups = list(range(300))
    base = rng.random(300)
    steady = [base + 0.0 for _ in range(4)]
    shaky = [base + shift for shift in (-0.1, 0.1, -0.05, 0.05)]
    narrow = seed_bootstrap(steady, groups, n_boot=400)
    wide = seed_bootstrap(shaky, groups, n_boot=400)
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


def test_paired_difference_pairs_seeds_and_items():
    rng = np.random.default_rng(6)
    groups = list(range(100))
    b = [rng.random(100) for _ in range(3)]
    a = [x + 0.05 for x in b]
    ci = paired_seed_bootstrap(a, b, groups, n_boot=200)
    assert ci.estimate == pytest.approx(0.05)
    assert ci.low == pytest.approx(0.05) and ci.high == pytest.approx(0.05)
    targets = rng.random((100, 2)) < 0.5
    good = [np.c_[targets + rng.normal(0, 0.3, (100, 2)), targets] for _ in range(3)]
    bad = [np.c_[rng.random((100, 2)), targets] for _ in range(3)]
    auc = paired_seed_bootstrap(good, bad, groups, n_boot=100, statistic=macro_auroc_of)
    assert auc.low > 0.2
    with pytest.raises(ValueError, match="seeds"):
        paired_seed_bootstrap(a, b[:2], groups)
