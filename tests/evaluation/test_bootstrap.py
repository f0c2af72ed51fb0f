"""Cluster bootstrap: a loop oracle, coverage in a seeded simulation, paired identities, speed."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.evaluation.bootstrap import bootstrap_ci, paired_difference_ci


def loop_oracle(values, groups, n_boot, seed, statistic):
    """Resample sorted unique groups with the same generator, gather items group by group."""
    uniq = np.unique(groups)
    draws = np.random.default_rng(seed).integers(0, len(uniq), size=(n_boot, len(uniq)))
    out = []
    for d in draws:
        idx = np.concatenate([np.flatnonzero(groups == uniq[k]) for k in d])
        out.append(statistic(values[idx]))
    return np.array(out)


def test_fast_mean_and_callable_paths_match_loop_oracle():
    rng = np.random.default_rng(0)
    groups = rng.choice([f"img{i}" for i in range(30)], size=100)
    values = rng.normal(size=100) + (np.char.str_len(groups.astype(str)) % 3)
    want = loop_oracle(values, groups, 200, 7, np.mean)
    lo, hi = np.quantile(want, [0.025, 0.975])
    fast = bootstrap_ci(values, groups, n_boot=200, seed=7)
    slow = bootstrap_ci(values, groups, n_boot=200, seed=7, statistic=lambda v: float(np.mean(v)))
    med = bootstrap_ci(values, groups, n_boot=200, seed=7, statistic=np.median)
    want_med = np.quantile(loop_oracle(values, groups, 200, 7, np.median), [0.025, 0.975])
    for ci in (fast, slow):
        assert ci.estimate == pytest.approx(values.mean())
        assert (ci.low, ci.high) == pytest.approx((lo, hi))
        assert ci.n_groups == len(np.unique(groups)) and ci.n_items == 100
    assert (med.low, med.high) == pytest.approx(tuple(want_med))


def test_coverage_in_seeded_simulation():
    """Clustered data (an image effect shared by its items): the group CI covers the true mean
    about 95% of the time; an item-level CI on the same data is too narrow."""
    rng = np.random.default_rng(1)
    hits_group, hits_item, sims = 0, 0, 200
    for s in range(sims):
        n_img = 40
        per_img = rng.integers(1, 6, size=n_img)
        groups = np.repeat(np.arange(n_img), per_img)
        values = np.repeat(rng.normal(0, 1, n_img), per_img) + rng.normal(0, 0.3, len(groups))  # true mean 0
        g = bootstrap_ci(values, groups, n_boot=400, seed=s)
        i = bootstrap_ci(values, None, n_boot=400, seed=s)
        hits_group += g.low <= 0 <= g.high
        hits_item += i.low <= 0 <= i.high
    assert 0.88 <= hits_group / sims <= 0.99
    assert hits_item < hits_group


def test_paired_identical_inputs_give_zero_interval():
    rng = np.random.default_rng(2)
    v = rng.random(50)
    groups = np.repeat(np.arange(10), 5)
    ci = paired_difference_ci(v, v.copy(), groups)
    assert (ci.estimate, ci.low, ci.high) == (0.0, 0.0, 0.0) and ci.p_value == 1.0
    auc_like = paired_difference_ci(v, v.copy(), groups, statistic=np.median)
    assert (auc_like.low, auc_like.high) == (0.0, 0.0)


def test_paired_uses_the_same_resamples_and_detects_a_shift():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(200), 3)
    a = rng.normal(size=600) + np.repeat(rng.normal(0, 2, 200), 3)  # big shared image effect
    b = a - 0.1 + rng.normal(0, 0.05, 600)
    d = paired_difference_ci(a, b, groups, n_boot=500, seed=0)
    assert d.estimate == pytest.approx(np.mean(a - b)) and 0.05 < d.low < d.high < 0.15 and d.p_value < 0.01
    # separate CIs overlap widely: only pairing sees the difference
    ca, cb = bootstrap_ci(a, groups, seed=0), bootstrap_ci(b, groups, seed=0)
    assert ca.low < cb.high
    # the callable path (a statistic of each model's items) agrees with the mean path
    d2 = paired_difference_ci(a, b, groups, n_boot=500, seed=0, statistic=lambda v: float(np.mean(v)))
    assert (d2.low, d2.high) == pytest.approx((d.low, d.high))


def test_nan_items_dropped_and_to_dict():
    ci = bootstrap_ci([1.0, np.nan, 1.0, 1.0], ["a", "a", "b", "c"], n_boot=50)
    assert ci.n_items == 3 and ci.n_groups == 3 and (ci.low, ci.high) == (1.0, 1.0)
    assert set(ci.to_dict()) >= {"estimate", "low", "high", "alpha", "n_boot", "n_groups"}
    assert ci.format(2) == "1.00 [1.00, 1.00]"
    p = paired_difference_ci([1.0, np.nan, 0.0], [0.0, 0.0, np.nan], n_boot=20)
    assert p.n_items == 1 and p.estimate == 1.0
