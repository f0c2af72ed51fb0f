"""The reviewed suite files in ``expectations/`` → GX suites fitted to one corpus and one params file.

A suite file is GX Core 1.x suite JSON. Its ``meta`` says which derived frame it runs on
(``frame``), which columns name a failing row (``index_columns``) and whether an empty frame means
"nothing to check" (``skip_if_empty``). Every expectation's ``meta.check`` is the stable name a
failure is reported under and the key of its severity in ``params.yaml``; an expectation with
``meta.requires: regions|qa`` runs only on corpora that must have regions / QA. Thresholds and
vocabularies are ``{"$PARAMETER": name}`` placeholders filled from ``params.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regionmed.corpus.schema import NO_FINDING
from regionmed.params_pipeline import PipelineParams

# Sources whose corpora must carry regions / QA when validation.regions / validation.qa is "auto".
REGIONS_BY_SOURCE = {"synthetic": True, "coco": True}
QA_BY_SOURCE = {"synthetic": True, "medpix": True}  # MedPix: the importer asks the modality
VOCABULARY_KEYS = ("modalities", "labels", "finding_labels", "anatomy_labels")


@dataclass
class Profile:
    """What this corpus must have, and the values its expectations are run with."""

    source: str
    regions_required: bool
    qa_required: bool
    vocabulary: dict[str, list[str] | None]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedSuite:
    name: str
    frame: str
    index_columns: list[str]
    skip_if_empty: bool
    expectations: list[dict]  # GX expectation JSON with severity set from params
    skipped: list[dict]


def source_vocabulary(params: PipelineParams, source: str) -> dict[str, list[str] | None]:
    """The known vocabulary of a source: the phantom atlas (synthetic), the importer's fixed classes
    (MedPix); none for JSONL and COCO, whose values are the user's (set them in validation.vocabulary)."""
    if source != "synthetic":
        from regionmed.corpus.importers import importer_vocabulary

        return {**dict.fromkeys(VOCABULARY_KEYS), **importer_vocabulary(source)}
    from regionmed.corpus.atlas import MODALITIES

    mods = [MODALITIES[m] for m in params.corpus.synthetic.modalities]
    findings = sorted({f.label for m in mods for f in m.findings})
    return {
        "modalities": [m.name for m in mods],
        "labels": [*findings, NO_FINDING],
        "finding_labels": findings,
        "anatomy_labels": sorted({o.name for m in mods for o in m.body if o.annotate}),
    }


def resolve_profile(params: PipelineParams, source: str) -> Profile:
    v = params.validation
    vocabulary = source_vocabulary(params, source)
    for key in VOCABULARY_KEYS:
        configured = getattr(v.vocabulary, key)
        if configured is not None:
            vocabulary[key] = list(configured)

    def required(setting: str, by_source: dict[str, bool]) -> bool:
        return setting == "required" or (setting == "auto" and by_source.get(source, False))

    parameters = {"image_size": params.corpus.image_size, **v.thresholds.model_dump(), **vocabulary}
    return Profile(
        source, required(v.regions, REGIONS_BY_SOURCE), required(v.qa, QA_BY_SOURCE), vocabulary, parameters
    )


def suite_files(suites_dir: str | Path) -> list[Path]:
    files = sorted(Path(suites_dir).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no expectation suites (*.json) in {suites_dir}")
    return files


def known_checks(suites_dir: str | Path) -> set[str]:
    return {
        e["meta"]["check"]
        for path in suite_files(suites_dir)
        for e in json.loads(path.read_text())["expectations"]
    }


def _parameters_of(kwargs: dict) -> list[str]:
    return [v["$PARAMETER"] for v in kwargs.values() if isinstance(v, dict) and "$PARAMETER" in v]


def describe(expectation: dict) -> dict:
    """Suite, check, type and columns of an expectation: how results and skips name it."""
    kw = expectation["kwargs"]
    columns = kw.get("column_list") or [kw[k] for k in ("column", "column_A", "column_B") if k in kw]
    return {
        "check": expectation["meta"]["check"],
        "expectation": expectation["type"],
        "columns": [str(c) for c in columns],
        "description": expectation.get("description") or "",
    }


def load_suites(suites_dir: str | Path, params: PipelineParams, profile: Profile) -> list[LoadedSuite]:
    """Read every suite file, set each expectation's severity and drop what does not apply (listed)."""
    v = params.validation
    unknown = set(v.severity) - known_checks(suites_dir)
    if unknown:
        raise ValueError(
            f"validation.severity names unknown checks {sorted(unknown)}; "
            f"known: {sorted(known_checks(suites_dir))}"
        )
    suites = []
    for path in suite_files(suites_dir):
        raw = json.loads(path.read_text())
        meta = raw.get("meta") or {}
        kept, skipped = [], []
        for exp in raw["expectations"]:
            exp = {**exp, "severity": v.severity.get(exp["meta"]["check"], v.default_severity)}
            reason = _skip_reason(exp, profile)
            if reason:
                skipped.append(
                    {"suite": raw["name"], **describe(exp), "severity": exp["severity"], "reason": reason}
                )
            else:
                kept.append(exp)
        suites.append(
            LoadedSuite(
                raw["name"],
                meta["frame"],
                list(meta.get("index_columns") or []),
                bool(meta.get("skip_if_empty")),
                kept,
                skipped,
            )
        )
    return suites


def _skip_reason(exp: dict, profile: Profile) -> str | None:
    requires = exp["meta"].get("requires")
    if requires == "regions" and not profile.regions_required:
        return f"regions are optional for source {profile.source!r} (validation.regions)"
    if requires == "qa" and not profile.qa_required:
        return f"QA is optional for source {profile.source!r} (validation.qa)"
    for name in _parameters_of(exp["kwargs"]):
        if name not in profile.parameters:
            raise KeyError(f"suite parameter {name!r} has no value in params (expectation {describe(exp)})")
        if profile.parameters[name] is None:
            return (
                f"no known {name} vocabulary for source {profile.source!r} (set validation.vocabulary.{name})"
            )
    return None
