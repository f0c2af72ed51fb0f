"""Drift of the served embeddings against the packaged model's reference, with Evidently 0.7.

Reference: the held-out split as the packaged model embeds it (:mod:`regionmed.monitoring.reference`).
Current: a time window of the service's embedding log (:mod:`regionmed.monitoring.embedding_log`),
only rows of the reference's model (``monitor.match_model_version``: another model's embeddings live
in another space, so comparing them would be a false alarm).

Checks, per embedding kind (``image``: encode_image, zero_shot, retrieve by image; ``text``:
encode_text, retrieve by text, ground's phrase) with at least ``monitor.min_rows`` current rows:

- ``<kind>/embeddings/<method>``: Evidently's ``EmbeddingsDrift`` with each method of
  ``monitor.embedding_methods`` (``model``: ROC AUC of a domain classifier telling reference from
  current rows; ``mmd``: squared maximum mean discrepancy; ``distance``, ``ratio``), drift when the
  score is above the method's threshold;
- ``<kind>/descriptor/<name>``: Evidently's ``ValueDrift`` of a log descriptor (image width, height,
  mean and std intensity of the model input; text token count), ``monitor.descriptor_method``;
- ``image/zero_shot/finding`` and ``image/zero_shot/modality``: ``ValueDrift`` of the predicted
  zero-shot label (argmax of the image embedding against the reference's class prompts), i.e. the
  shares of predicted labels.

Scale: at most ``monitor.sample_rows`` rows per side (a seeded uniform sample), projected onto
``monitor.pca_components`` principal components fitted on *both* samples together (a shift into a
direction the reference does not vary in still shows; a PCA of the reference alone would hide it).
Evidently draws each embedding check's 2-D density with t-SNE on up to 2,500 rows per side (~6 s per
1,000 rows here, once per check); ``monitor.plot: pca`` swaps that projection for a 2-D PCA and
``monitor.plot_rows`` sets the rows (docs/monitoring.md). Only the drawing changes, not a score.

Too few current rows of every kind gives ``status: not_enough_data`` (``drift: false``): no alarm.
The ``monitor`` stage (regionmed/monitoring/stage.py) runs the checks on a window and writes the
outputs: ``monitor.report_dir/index.html`` (the summary a person opens, written by
:mod:`regionmed.monitoring.drift_report`), ``image.html`` and ``text.html`` (Evidently's reports),
and ``monitor.summary_file`` (JSON: drift yes/no per check, scores, thresholds, the window, row
counts). Nothing in them is a pixel or a text: embeddings
(aggregated into plots), descriptors and label names only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from regionmed.monitoring.checks import STATUS_DRIFT, STATUS_NOT_ENOUGH, STATUS_OK, Check, KindResult
from regionmed.monitoring.drift_report import write_reports
from regionmed.monitoring.embedding_log import embedding_matrix
from regionmed.monitoring.reference import Reference, predicted_labels
from regionmed.monitoring.window import Current, Window, latest_timestamp, load_current, resolve_window

SUMMARY_VERSION = 1
# p-value tests: drift when the score is *below* the threshold; every other method is a distance
P_VALUE_METHODS = {
    "ks",
    "chisquare",
    "z",
    "fisher_exact",
    "g_test",
    "t_test",
    "mannw",
    "anderson",
    "cramer_von_mises",
    "epps_singleton",
    "es",
    "empirical_mmd",
}


# ---- the checks ------------------------------------------------------------------------------------
def planned_checks(settings, reference: Reference, kind: str) -> list[Check]:
    checks = [
        Check(f"{kind}/embeddings/{m}", kind, "embeddings", m, float(t))
        for m, t in settings.embedding_methods.items()
    ]
    wanted = getattr(settings.descriptors, kind, [])
    for name in wanted:
        if name in reference.descriptors.get(kind, pd.DataFrame()).columns:
            checks.append(
                Check(
                    f"{kind}/descriptor/{name}",
                    kind,
                    "descriptor",
                    settings.descriptor_method,
                    float(settings.descriptor_threshold),
                    column=name,
                )
            )
    if kind == "image" and settings.zero_shot:
        for group in reference.classes:
            checks.append(
                Check(
                    f"image/zero_shot/{group}",
                    kind,
                    "zero_shot",
                    settings.zero_shot_method,
                    float(settings.zero_shot_threshold),
                    column=f"zs_{group}",
                )
            )
    return checks


def _drift_method(name: str, threshold: float):
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    cls = {
        "model": ModelDriftMethod,
        "mmd": MMDDriftMethod,
        "distance": DistanceDriftMethod,
        "ratio": RatioDriftMethod,
    }[name]
    return cls(threshold=threshold)


class _PCA2:
    """Stands in for t-SNE in Evidently's embedding plot: a seeded 2-D PCA (milliseconds)."""

    def __init__(self, n_components: int = 2, **_: Any):
        self.n_components = n_components

    def fit_transform(self, x):
        from sklearn.decomposition import PCA

        x = np.asarray(x, dtype=np.float64)
        k = min(self.n_components, x.shape[1], max(1, x.shape[0] - 1))
        out = PCA(n_components=k, random_state=0).fit_transform(x)
        if k < self.n_components:
            out = np.pad(out, ((0, 0), (0, self.n_components - k)))
        return out


@contextlib.contextmanager
def embedding_plot(mode: str, rows: int) -> Iterator[None]:
    """Evidently 0.7 draws each embedding check with t-SNE on ``SAMPLE_CONSTANT`` rows per side (module
    globals of ``evidently.legacy.metrics.data_drift.embeddings_drift``): set both for the run, then restore.
    Scores do not depend on them. When the module lacks them (another Evidently), nothing is changed."""
    try:
        from evidently.legacy.metrics.data_drift import embeddings_drift as ed
    except ImportError:  # pragma: no cover  (guarded by a test)
        yield
        return
    if not (hasattr(ed, "SAMPLE_CONSTANT") and hasattr(ed, "TSNE")):  # pragma: no cover
        yield
        return
    saved = ed.SAMPLE_CONSTANT, ed.TSNE
    ed.SAMPLE_CONSTANT = int(rows)
    if mode == "pca":
        ed.TSNE = _PCA2
    try:
        yield
    finally:
        ed.SAMPLE_CONSTANT, ed.TSNE = saved


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def _project(ref: np.ndarray, cur: np.ndarray, components: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    if not components or components >= ref.shape[1]:
        return ref.astype(np.float64), cur.astype(np.float64), ref.shape[1]
    from sklearn.decomposition import PCA

    both = np.vstack([ref, cur]).astype(np.float64)
    k = min(components, both.shape[0] - 1)
    pca = PCA(n_components=k, random_state=0).fit(both)
    return pca.transform(ref), pca.transform(cur), k


def check_kind(kind: str, reference: Reference, current: pd.DataFrame, settings, seed: int = 0) -> KindResult:
    """Every check of one kind; ``not_enough_data`` when the window has fewer than ``min_rows`` rows."""
    start = time.perf_counter()
    checks = planned_checks(settings, reference, kind)
    ref_emb = reference.embeddings.get(kind)
    n_ref, n_cur = (0 if ref_emb is None else len(ref_emb)), len(current)
    result = KindResult(kind, checks, n_ref, n_cur)
    if n_cur < settings.min_rows or n_ref < 2:
        return result
    cur_emb = embedding_matrix(current)
    if cur_emb.shape[1] != ref_emb.shape[1]:
        raise ValueError(
            f"{kind}: the log's embeddings have dim {cur_emb.shape[1]}, the reference {ref_emb.shape[1]}"
        )

    rng = np.random.default_rng(seed)
    ri, ci = _sample(n_ref, settings.sample_rows, rng), _sample(n_cur, settings.sample_rows, rng)
    r_full, c_full = ref_emb[ri], cur_emb[ci]
    r_z, c_z, k = _project(r_full, c_full, settings.pca_components)
    result.rows_used, result.components = {"reference": len(ri), "current": len(ci)}, k
    cols = [f"{kind}_e{i:03d}" for i in range(k)]
    ref_df, cur_df = pd.DataFrame(r_z, columns=cols), pd.DataFrame(c_z, columns=cols)

    numerical, categorical = [], []
    for check in checks:
        if check.group == "descriptor":
            ref_values = pd.to_numeric(reference.descriptors[kind][check.column].iloc[ri], errors="coerce")
            cur_values = (
                pd.to_numeric(current[check.column].iloc[ci], errors="coerce")
                if check.column in current.columns
                else pd.Series(np.nan, index=range(len(ci)))
            )
            if cur_values.notna().sum() == 0 or ref_values.notna().sum() == 0:
                check.status = "no_data"  # the log has no such descriptor for these rows
                continue
            ref_df[check.column] = ref_values.to_numpy(dtype=np.float64)
            cur_df[check.column] = cur_values.to_numpy(dtype=np.float64)
            numerical.append(check.column)
        elif check.group == "zero_shot":
            group = check.name.rsplit("/", 1)[1]
            names, class_emb = reference.classes[group], reference.class_embeddings[group]
            ref_df[check.column] = predicted_labels(r_full, class_emb, names)
            cur_df[check.column] = predicted_labels(c_full, class_emb, names)
            categorical.append(check.column)

    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    definition = DataDefinition(
        embeddings={kind: cols}, numerical_columns=numerical, categorical_columns=categorical
    )
    metrics = []
    for check in checks:
        if check.group == "embeddings":
            metrics.append(
                EmbeddingsDrift(
                    embeddings_name=kind, drift_method=_drift_method(check.method, check.threshold)
                )
            )
        elif check.status != "no_data":
            metrics.append(ValueDrift(column=check.column, method=check.method, threshold=check.threshold))
    report = Report(metrics, include_tests=True)
    with embedding_plot(settings.plot, settings.plot_rows):
        snapshot = report.run(
            current_data=Dataset.from_pandas(cur_df, data_definition=definition),
            reference_data=Dataset.from_pandas(ref_df, data_definition=definition),
        )
    doc = snapshot.dict()
    failed = {
        t["metric_config"]["metric_id"]: t["status"]
        for t in doc.get("tests", [])
        if isinstance(t.get("metric_config"), dict)
    }
    active = [c for c in checks if c.status != "no_data"]
    for check, metric in zip(active, doc["metrics"], strict=False):
        value = metric.get("value")
        check.score = float(value) if isinstance(value, (int, float)) else float("nan")
        if check.group == "embeddings" or metric["id"] not in failed:
            below = check.method in P_VALUE_METHODS
            check.drift = bool(check.score < check.threshold if below else check.score > check.threshold)
        else:
            check.drift = failed[metric["id"]] == "FAIL"
        if not np.isfinite(check.score):
            check.drift = None
        check.status = STATUS_DRIFT if check.drift else STATUS_OK
    result.snapshot, result.seconds = snapshot, time.perf_counter() - start
    return result


# ---- the whole run -----------------------------------------------------------------------------------
def summarise(
    results: list[KindResult],
    current: Current,
    reference: Reference,
    settings,
    *,
    reference_dir: str = "",
    log_dir: str = "",
) -> dict[str, Any]:
    checks = [c for r in results for c in r.checks]
    checked = [r.kind for r in results if r.snapshot is not None]
    drifted = [c.name for c in checks if c.drift]
    if not checked:
        status = STATUS_NOT_ENOUGH
        have = ", ".join(f"{r.kind} {r.rows_current}" for r in results) or "none"
        message = (
            f"not enough data: every kind has fewer than {settings.min_rows} current rows of the reference's "
            f"model in the window ({have}); no drift is reported"
        )
        other = sum(current.rows_other_model.values())
        if other:
            in_window = {m for d in current.models.values() for m in d}
            message += (
                f"; {other} rows in the window are from another model ("
                f"{', '.join(sorted(in_window - set(reference.model_versions)))}"
                "): rebuild the reference for the model being served"
            )
    elif drifted:
        status = STATUS_DRIFT
        n_scored = sum(c.status in (STATUS_DRIFT, STATUS_OK) for c in checks)
        message = f"drift in {len(drifted)} of {n_scored} checks: " + ", ".join(drifted)
    else:
        status = STATUS_OK
        message = f"no drift in {sum(c.status == STATUS_OK for c in checks)} checks ({', '.join(checked)})"
    skipped = [r.kind for r in results if r.snapshot is None]
    if checked and skipped:
        message += "; not enough data for " + ", ".join(
            f"{k} ({current.frames[k].shape[0]} rows)" for k in skipped
        )
    return {
        "version": SUMMARY_VERSION,
        "status": status,
        "drift": status == STATUS_DRIFT,
        "message": message,
        "window": current.window.to_dict(),
        "reference": {
            "dir": reference_dir,
            "split": reference.split,
            "model_versions": reference.model_versions,
            "rows": {r.kind: r.rows_reference for r in results},
        },
        "current": {
            "log_dir": log_dir,
            "rows": {r.kind: r.rows_current for r in results},
            "rows_in_window": current.rows_in_window,
            "rows_other_model": current.rows_other_model,
            "models_in_window": current.models,
            "endpoints": current.endpoints,
            "skipped_lines": current.skipped_lines,
        },
        "rows_used": {r.kind: r.rows_used for r in results if r.rows_used},
        "pca_components": {r.kind: r.components for r in results if r.components},
        "min_rows": settings.min_rows,
        "sample_rows": settings.sample_rows,
        "checks": [c.to_dict() for c in checks],
        "drifted_checks": drifted,
    }


__all__ = [
    "Check",
    "Current",
    "KindResult",
    "Window",
    "check_kind",
    "embedding_plot",
    "latest_timestamp",
    "load_current",
    "resolve_window",
    "summarise",
    "write_reports",
]
