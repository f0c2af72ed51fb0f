"""``validate_corpus(corpus_dir, params)``: every suite in ``expectations/`` run by Great Expectations.

The suites are loaded into an ephemeral GX context (one pandas data source, one dataframe asset per
derived frame, one ValidationDefinition per suite) and run with the thresholds and vocabularies of
``params.yaml`` as expectation parameters. Nothing is written here; see :mod:`.report`.
"""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Any

from regionmed.env import configure_environment
from regionmed.params_pipeline import PipelineParams
from regionmed.validation.frames import coverage_frame, read_frames
from regionmed.validation.result import CheckResult, ValidationResult, _plain
from regionmed.validation.suites import LoadedSuite, describe, load_suites, resolve_profile


def validate_corpus(
    corpus_dir: str | Path, params: PipelineParams, suites_dir: str | Path | None = None
) -> ValidationResult:
    """Validate a corpus folder against the suites; never raises for bad data, only for unusable input."""
    configure_environment()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    v = params.validation
    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / "manifest.parquet").is_file():
        raise FileNotFoundError(f"no manifest.parquet in {corpus_dir}: build the corpus first")

    # Importing GX takes ~2 s (most of a default run); let it overlap the frame building, which is mostly
    # pyarrow and hashlib work that releases the GIL.
    gx_import = threading.Thread(target=importlib.import_module, args=("great_expectations",), daemon=True)
    gx_import.start()
    t = time.perf_counter()
    data = read_frames(
        corpus_dir, params.corpus.split.model_dump(), v.file_check_fraction, params.seed, params.cluster
    )
    profile = resolve_profile(params, data.source)
    known = profile.vocabulary["labels"]
    data.frames["label_coverage"] = coverage_frame(data.frames["labels"], known, list(v.coverage_splits))
    timings["frames"] = time.perf_counter() - t

    t = time.perf_counter()
    gx_import.join()
    timings["gx_import_wait"] = time.perf_counter() - t
    suites = load_suites(suites_dir or v.suites_dir, params, profile)
    checks, skipped = _run_suites(suites, data.frames, profile.parameters, v.max_examples, timings)
    timings["gx_total"] = time.perf_counter() - t

    return ValidationResult(
        corpus_dir=str(corpus_dir),
        source=profile.source,
        regions_required=profile.regions_required,
        qa_required=profile.qa_required,
        checks=checks,
        skipped=skipped,
        stats=data.stats,
        elapsed_s=time.perf_counter() - start,
        timings=timings,
    )


def _context():
    t = time.perf_counter()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, context, time.perf_counter() - t


def _run_suites(
    suites: list[LoadedSuite], frames: dict, parameters: dict, max_examples: int, timings: dict[str, float]
) -> tuple[list[CheckResult], list[dict]]:
    gx, context, timings["gx_import"] = _context()
    source = context.data_sources.add_pandas("corpus")
    checks: list[CheckResult] = []
    skipped: list[dict] = []
    for loaded in suites:
        frame = frames[loaded.frame]
        skipped += loaded.skipped
        if loaded.skip_if_empty and frame.empty:
            skipped += [
                {
                    "suite": loaded.name,
                    **describe(e),
                    "severity": e["severity"],
                    "reason": f"nothing to check: the {loaded.frame} frame is empty",
                }
                for e in loaded.expectations
            ]
            continue
        if not loaded.expectations:
            continue
        t = time.perf_counter()
        suite = context.suites.add(gx.ExpectationSuite(name=loaded.name, expectations=loaded.expectations))
        batch = source.add_dataframe_asset(loaded.name).add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=loaded.name, data=batch, suite=suite)
        )
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": max_examples,
            "return_unexpected_index_query": False,
        }
        if loaded.index_columns:
            result_format["unexpected_index_column_names"] = loaded.index_columns
        run = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format=result_format,
        )
        checks += [_check(loaded.name, r, max_examples) for r in run.results]
        timings[f"suite:{loaded.name}"] = time.perf_counter() - t
    return checks, skipped


def _bounds(kwargs: dict[str, Any]) -> str:
    """The expectation's numeric bounds as a phrase ("need >= 100000"), or ""."""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return f"need {lo:g} to {hi:g}"
    if isinstance(lo, (int, float)):
        return f"need >= {lo:g}"
    return f"need <= {hi:g}" if isinstance(hi, (int, float)) else ""


def _unexpected(res: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """What a failing column-values expectation saw. A one-row frame (the corpus summary: counts and
    fractions, no record's data) shows its value against the bound, e.g. ``4000 vs need >= 100000``;
    otherwise the share of rows that failed, and the bound."""
    need = _bounds(kwargs)
    values = res.get("partial_unexpected_list") or []
    if res.get("element_count") == 1 and len(values) == 1 and isinstance(values[0], (int, float)):
        return f"{values[0]:g} vs {need}" if need else f"{values[0]:g}"
    seen = (
        f"{res['unexpected_count']} of {res.get('element_count')} unexpected "
        f"({res.get('unexpected_percent') or 0:.3g}%)"
    )
    return f"{seen}, {need}" if need else seen


def _check(suite: str, r, max_examples: int) -> CheckResult:
    cfg = r.expectation_config
    about = describe(
        {"type": cfg.type, "kwargs": dict(cfg.kwargs), "meta": cfg.meta or {}, "description": cfg.description}
    )
    res = _plain(r.result or {})
    error = None
    info = r.exception_info or {}
    if info.get("raised_exception"):
        error = f"error: {str(info.get('exception_message'))[:300]}"
    kwargs = {k: v for k, v in _plain(dict(cfg.kwargs)).items() if k not in ("batch_id", "result_format")}
    if "observed_value" in res:
        observed = res["observed_value"]
    elif "unexpected_count" in res:
        observed = _unexpected(res, kwargs)
    else:
        observed = error or "n/a"
    examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
    severity = getattr(cfg, "severity", None) or "critical"
    return CheckResult(
        suite=suite,
        check=about["check"],
        expectation=about["expectation"],
        columns=about["columns"],
        severity=str(getattr(severity, "value", severity)),
        success=bool(r.success),
        observed=observed,
        unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"),
        examples=[] if r.success else examples[:max_examples],
        description=about["description"],
        kwargs=kwargs,
        error=error,
    )
