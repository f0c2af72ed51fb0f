"""The evaluation's summary: per model each metric with its bootstrap interval, the paired difference
candidate − baseline, grounding minus the text-only prior; and the flat view the gate reads.

Pure functions of the per-image results (:class:`~regionmed.evaluation.suite.ModelEvaluation`) and
of the summary dict: no model, no file.
"""

from __future__ import annotations

import numpy as np

from regionmed.evaluation.bootstrap import bootstrap_ci, paired_difference_ci

# Grounding counts only where it beats the no-image text prior on the same phrases.
# Anatomy phrases ("the right lung") are compared with the mean train box of the same organ.
VERSUS_PRIOR = {
    f"grounding/{v}/{r}": f"prior/{v}/{r}"
    for v in ("full", "locfree", "anatomy")
    for r in ("lenient", "strict")
}


def _ci(values, groups, n_boot, alpha, seed, statistic=None) -> dict:
    if np.all(np.isnan(values)):
        return {"value": None, "low": None, "high": None, "n": 0}
    ci = bootstrap_ci(values, groups, n_boot=n_boot, seed=seed, alpha=alpha, statistic=statistic or "mean")
    return {"value": _r(ci.estimate), "low": _r(ci.low), "high": _r(ci.high), "n": ci.n_items}


def _diff(a, b, groups, n_boot, alpha, seed, statistic=None) -> dict:
    keep = ~(np.isnan(a) | np.isnan(b))
    if not keep.any():
        return {"value": None, "low": None, "high": None, "p": None}
    ci = paired_difference_ci(
        a, b, groups, n_boot=n_boot, seed=seed, alpha=alpha, statistic=statistic or "mean"
    )
    return {"value": _r(ci.estimate), "low": _r(ci.low), "high": _r(ci.high), "p": _r(ci.p_value)}


def _r(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 5)


def summarise(results: dict, n_boot: int, alpha: float, seed: int) -> dict:
    """``results``: model name → its ``ModelEvaluation`` (``regionmed`` and ``baseline``)."""
    out: dict = {name: {} for name in results}
    cand, base = results["regionmed"], results["baseline"]
    for name, ev in results.items():
        for metric, iv in ev.items.items():
            if metric.startswith(("prior/", "chance/")) and name != "regionmed":
                continue  # no-image baselines are the same for both models
            out[name][metric] = _ci(iv.values, iv.groups, n_boot, alpha, seed, iv.statistic)
        for metric, value in ev.point.items():
            out[name][metric] = {"value": _r(value)}
    out["difference"] = {
        m: _diff(
            cand.items[m].values,
            base.items[m].values,
            cand.items[m].groups,
            n_boot,
            alpha,
            seed,
            cand.items[m].statistic,
        )
        for m in cand.items
        if m in base.items and not m.startswith(("prior/", "chance/"))
    }
    out["vs_prior"] = {}
    for name, ev in results.items():
        for metric, prior in VERSUS_PRIOR.items():
            if metric in ev.items:
                out["vs_prior"][f"{name}/{metric}"] = _diff(
                    ev.items[metric].values,
                    cand.items[prior].values,
                    ev.items[metric].groups,
                    n_boot,
                    alpha,
                    seed,
                )
    return out


def gate_view(summary: dict, model: str = "regionmed") -> dict[str, float]:
    """Flat ``metric → value`` of one model, plus ``vs_prior/<metric>_low`` (for floors on the prior)."""
    flat = {m: v["value"] for m, v in summary.get(model, {}).items() if v.get("value") is not None}
    for key, d in summary.get("vs_prior", {}).items():
        owner, metric = key.split("/", 1)
        if owner == model and d["low"] is not None:
            flat[f"vs_prior/{metric}_low"] = d["low"]
    return flat
