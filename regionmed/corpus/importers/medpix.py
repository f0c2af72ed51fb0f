"""MedPix 2.0 in its native layout (``corpus.importer.path`` = the folder holding it).

Files read::

    Descriptions.json             one entry per image: image, U_id (case), Type (CT/MR),
                                  Description {Caption, Modality, Plane, Age, Sex, ...},
                                  Location, Location Category
    Case_topic.json               one entry per case: U_id, Case {Title, History, Exam, Findings,
                                  Differential Diagnosis, Case Diagnosis, ...}, Topic, TAC, MRI
    splitted_dataset/uid_list.json  {"train": [case ids], "dev": [...], "test": [...]}
                                  (train_1 / train_2 are halves of train and are not used)
    images/<image>.png            the image named by Descriptions' ``image`` plus an extension

Mapping to the corpus (one row per image):

- ``patient_id`` = the case id (``U_id``), so every image of a case lands in one split;
  ``split`` from ``uid_list.json`` (``dev`` → ``val``); a case listed nowhere gets the build's
  hashed patient split, and a case listed twice takes the first of test, dev, train.
- ``report`` = the case's History, Findings and Case Diagnosis (shared by the case's images);
  ``finding_text`` = the image's own Caption; ``modality_text`` = the Description's Modality and
  Plane (e.g. "CT w/contrast (IV), axial plane"); ``anatomy_text`` = Location Category and Location.
- ``modality`` from ``Type``: CT → ``ct``, MR → ``mri``; ``body_part`` from ``Location Category``
  (:data:`BODY_PARTS`).
- ``labels``: one class per axis, for zero-shot classification (:data:`LABELS`; the prompts file gives a
  prompt text for each): ``modality:ct|mri``, ``plane:axial|coronal|sagittal`` (only for those
  three planes: montages, 3D reconstructions, photographs etc. get no plane label), and
  ``body_part:head|chest|abdomen|spine_muscles|genitourinary``.
- ``qa``: "What imaging modality is this?" (type ``modality``) and, when the plane is one of the
  three, "In which plane is this image?" (type ``other``).
- No region boxes (MedPix has none).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from regionmed.corpus.importers._common import (
    ImporterConfigError,
    RecordSource,
    clean_text,
    describe_validation_error,
    load_json_file,
    resolve_setting,
    truncated,
)
from regionmed.corpus.records import Rejected, SourceRecord
from regionmed.params_pipeline import ImportParams

DESCRIPTIONS_FILE = "Descriptions.json"
CASES_FILE = "Case_topic.json"
SPLITS_FILE = "splitted_dataset/uid_list.json"
IMAGES_DIR = "images"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm")
# uid_list.json keys in the order a case listed twice is resolved (held-out sets first).
SPLIT_KEYS = ("test", "dev", "train")

# MedPix ``Type`` → corpus modality, the label's class and the QA answer.
MODALITIES = {"CT": ("ct", "CT"), "MR": ("mri", "MRI"), "MRI": ("mri", "MRI")}
# ``Description.Plane`` → plane class; planes not listed get no plane label or question.
PLANES = {"axial": "axial", "transverse": "axial", "coronal": "coronal", "sagittal": "sagittal"}
# ``Location Category`` → corpus body_part (``chest`` as in the synthetic corpus's vocabulary).
BODY_PARTS = {
    "head": "head",
    "thorax": "chest",
    "abdomen": "abdomen",
    "spine and muscles": "spine_muscles",
    "reproductive and urinary system": "genitourinary",
}
# Every class label this importer can write (their prompt texts: label_texts in
# regionmed/prompts/zeroshot.yaml).
LABELS = tuple(
    sorted(
        {f"modality:{m}" for m, _ in MODALITIES.values()}
        | {f"plane:{p}" for p in PLANES.values()}
        | {f"body_part:{b}" for b in BODY_PARTS.values()}
    )
)
REPORT_SECTIONS = (("History", "HISTORY"), ("Findings", "FINDINGS"), ("Case Diagnosis", "DIAGNOSIS"))


def vocabulary() -> dict[str, list[str]]:
    """The values this importer writes, for the validation's vocabulary checks."""
    return {"modalities": sorted({m for m, _ in MODALITIES.values()}), "labels": list(LABELS)}


def _slug(text: str) -> str:
    return "_".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "unknown"


class _Entry(BaseModel):
    # MedPix entries carry more fields than are imported (Age, Sex, ACR Codes, Topic, ...).
    model_config = ConfigDict(extra="ignore", strict=True)


class ImageDescription(_Entry):
    Caption: str | None = None
    Modality: str | None = None
    Plane: str | None = None


class DescriptionEntry(_Entry):
    image: Annotated[str, Field(min_length=1)]
    U_id: Annotated[str, Field(min_length=1)]
    Type: Annotated[str, Field(min_length=1)]
    Description: ImageDescription | None = None
    Location: str | None = None
    Location_Category: str | None = Field(None, alias="Location Category")


class CaseEntry(_Entry):
    U_id: Annotated[str, Field(min_length=1)]
    Case: dict[str, Any]


class MedPixImporter(RecordSource):
    """``corpus.source: medpix``; ``corpus.importer.path``: the MedPix 2.0 folder."""

    name = "medpix"

    def __init__(self, params: ImportParams):
        folder = resolve_setting(
            params.path,
            "corpus.importer.path",
            f"the MedPix 2.0 folder (holding {DESCRIPTIONS_FILE} and {CASES_FILE})",
            is_dir=True,
        )
        for required in (DESCRIPTIONS_FILE, CASES_FILE):
            if not (folder / required).is_file():
                raise ImporterConfigError(
                    f"corpus.importer.path = {params.path!r}: no {required} in {str(folder)!r}; "
                    "it should be the MedPix 2.0 folder"
                )
        super().__init__(params, folder)

    def _splits(self) -> dict[str, str]:
        path = self.root / SPLITS_FILE
        if not path.is_file():
            return {}  # no official split: the build's hashed per-case split
        data = load_json_file(path, "corpus.importer.path")
        if not isinstance(data, dict):
            raise ImporterConfigError(f"{SPLITS_FILE}: expected an object of split name → case ids")
        out: dict[str, str] = {}
        for key in SPLIT_KEYS:
            ids = data.get(key, [])
            if not isinstance(ids, list):
                raise ImporterConfigError(f"{SPLITS_FILE}: {key!r} must be a list of case ids")
            for case_id in ids:
                out.setdefault(str(case_id), key)
        return out

    def _cases(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Case id → its ``Case`` fields; and case id → why its entry could not be read."""
        data = load_json_file(self.root / CASES_FILE, "corpus.importer.path")
        if not isinstance(data, list):
            raise ImporterConfigError(f"{CASES_FILE}: expected a list of cases")
        cases, problems = {}, {}
        for i, raw in enumerate(data):
            try:
                case = CaseEntry.model_validate(raw)
            except ValidationError as exc:
                if isinstance(raw, dict) and isinstance(raw.get("U_id"), str):
                    problems.setdefault(raw["U_id"], describe_validation_error(exc, f"{CASES_FILE}[{i}]"))
                continue
            cases.setdefault(case.U_id, case.Case)
        return cases, problems

    def _image_files(self) -> dict[str, str]:
        """Image stem → path relative to the root, from one listing of ``images/``."""
        folder = self.root / IMAGES_DIR
        out: dict[str, str] = {}
        if folder.is_dir():
            for name in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(name)
                if ext.lower() in IMAGE_EXTENSIONS:
                    out.setdefault(stem, f"{IMAGES_DIR}/{name}")
        return out

    def tasks(self) -> Iterator[tuple[str, SourceRecord] | Rejected]:
        descriptions = load_json_file(self.root / DESCRIPTIONS_FILE, "corpus.importer.path")
        if not isinstance(descriptions, list):
            raise ImporterConfigError(f"{DESCRIPTIONS_FILE}: expected a list of image descriptions")
        cases, broken_cases = self._cases()
        splits = self._splits()
        files = self._image_files()
        for i, raw in enumerate(descriptions):
            yield self._record(i, raw, cases, broken_cases, splits, files)

    def _record(
        self, i: int, raw: Any, cases: dict, broken_cases: dict, splits: dict, files: dict
    ) -> tuple[str, SourceRecord] | Rejected:
        where = f"{DESCRIPTIONS_FILE}[{i}]"
        fallback_id = raw["image"] if isinstance(raw, dict) and isinstance(raw.get("image"), str) else where
        try:
            entry = DescriptionEntry.model_validate(raw)
        except ValidationError as exc:
            return Rejected(fallback_id, "bad_record", describe_validation_error(exc, where), truncated(raw))
        case = cases.get(entry.U_id)
        if case is None:
            why = broken_cases.get(entry.U_id, f"case {entry.U_id!r} is not in {CASES_FILE}")
            return Rejected(entry.image, "missing_text", f"{where}: {why}", truncated(raw))
        report = _report(case)
        if not report:
            return Rejected(
                entry.image,
                "missing_text",
                f"{where}: case {entry.U_id!r} has no History, Findings or Case Diagnosis",
                truncated(raw),
            )
        modality, modality_answer = MODALITIES.get(
            entry.Type.strip().upper(), (_slug(entry.Type), entry.Type.strip())
        )
        category = clean_text(entry.Location_Category)
        body_part = BODY_PARTS.get(category.lower(), _slug(category)) if category else "unknown"
        desc = entry.Description or ImageDescription()
        plane_text = clean_text(desc.Plane)
        plane = PLANES.get(plane_text.lower()) if plane_text else None
        labels = [f"modality:{modality}"] + ([f"plane:{plane}"] if plane else []) + [f"body_part:{body_part}"]
        qa = [{"question": "What imaging modality is this?", "answer": modality_answer, "type": "modality"}]
        if plane:
            qa.append({"question": "In which plane is this image?", "answer": plane, "type": "other"})
        split_key = splits.get(entry.U_id)
        record = SourceRecord(
            record_id=entry.image,
            source=self.name,
            image_file=files.get(entry.image, f"{IMAGES_DIR}/{entry.image}.png"),
            patient_id=entry.U_id,
            split=split_key,  # "dev" is normalised to "val" by the build
            modality=modality,
            body_part=body_part,
            report=report,
            modality_text=_modality_text(desc.Modality, plane_text, modality_answer),
            anatomy_text=_anatomy_text(category, clean_text(entry.Location)),
            finding_text=clean_text(desc.Caption),
            labels=labels,
            qa=qa,
        )
        return entry.image, record


def _report(case: dict[str, Any]) -> str:
    parts = []
    for key, heading in REPORT_SECTIONS:
        text = clean_text(case.get(key)) if isinstance(case.get(key), str) else None
        if text:
            parts.append(f"{heading}: {' '.join(text.split())}")
    return " ".join(parts)


def _modality_text(modality: str | None, plane: str | None, fallback: str) -> str:
    text = " ".join((clean_text(modality) or fallback).split())
    return f"{text}, {plane.lower()} plane" if plane and plane.lower() in PLANES else text


def _anatomy_text(category: str | None, location: str | None) -> str | None:
    if location and location.lower() in ("left blank",):
        location = None
    if category and location and location.lower() != category.lower():
        return f"{category}: {location}"
    return category or location
