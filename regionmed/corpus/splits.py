"""Patient-level splits: deterministic by seed, and stable when records are added.

A patient's split is a function of ``(seed, patient_id)`` alone (a hash mapped onto the split
fractions), so adding records never moves an existing patient. A source that brings its own
split (MedPix's case-level train/dev/test) keeps it, resolved per patient.

Patient ids are compared after :func:`normalise_patient_id` (whitespace trimmed and collapsed, case
folded to upper case), so ``"P001"`` and ``"p001 "`` are one patient. Records of one patient that
ask for different splits are counted (:func:`split_conflicts`), never resolved silently.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from regionmed.corpus.schema import SPLITS
from regionmed.params_pipeline import SplitFractions

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def normalise_split(value: str | None) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    key = str(value).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {value!r}; expected one of {sorted(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


def normalise_patient_id(value: object) -> str | None:
    """A patient id as the splits compare it: surrounding whitespace removed, inner runs of
    whitespace one space, upper case (``" p001 "`` → ``"P001"``); ``None`` when nothing is left.

    Upper case, not lower: ids that are upper case already (the synthetic ``SYN-P...``, MedPix case
    ids) keep their value, and with it their hashed split."""
    if value is None:
        return None
    text = " ".join(str(value).split()).upper()
    return text or None


def split_conflicts(patients: dict[str, str], given: dict[str, str | None]) -> list[dict]:
    """Patients whose records ask for more than one split: per patient the record ids (sorted),
    the splits asked for with their record counts, and the split they all get (the first record's,
    by id, as :func:`assign_splits` decides). Patient ids are left out (they identify people)."""
    by_patient: dict[str, list[str]] = defaultdict(list)
    for record_id in sorted(patients):
        by_patient[patients[record_id]].append(record_id)
    out = []
    for records in by_patient.values():
        asked = [given[r] for r in records if given.get(r)]
        if len(set(asked)) > 1:
            counts = {s: asked.count(s) for s in dict.fromkeys(asked)}
            out.append({"records": records, "asked": counts, "split": asked[0]})
    return out


def hashed_split(patient_id: str, seed: int, fractions: SplitFractions) -> str:
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).hexdigest()
    u = int(digest[:13], 16) / 16**13
    cumulative = 0.0
    for name in SPLITS:
        cumulative += getattr(fractions, name)
        if u < cumulative:
            return name
    return SPLITS[-1]


def assign_splits(
    patients: dict[str, str], given: dict[str, str | None], seed: int, fractions: SplitFractions
) -> dict[str, str]:
    """Split per record id. ``patients``: record → patient; ``given``: record → source split or None.

    A patient whose records carry a given split takes the first one (by record id), so no patient
    ever spans two splits even when a source's own split is inconsistent.
    """
    by_patient: dict[str, list[str]] = defaultdict(list)
    for record_id in sorted(patients):
        by_patient[patients[record_id]].append(record_id)
    out = {}
    for patient, records in by_patient.items():
        given_splits = [given[r] for r in records if given.get(r)]
        split = given_splits[0] if given_splits else hashed_split(patient, seed, fractions)
        for r in records:
            out[r] = split
    return out
