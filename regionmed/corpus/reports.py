"""Text at four levels for a phantom: modality, anatomy, findings, and a full report; plus QA.

Several templates per sentence, chosen by the image's own random stream, so that the text is
not a fixed code for the labels. Templates are data at the top of the module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regionmed.corpus.phrases import hard_negatives, region_phrase
from regionmed.corpus.schema import NO_FINDING, QA, Region
from regionmed.corpus.synthetic import Phantom

MODALITY_TEXTS = {
    "chest_xray": ("frontal chest radiograph", "PA chest X-ray", "chest radiograph, frontal view"),
    "brain_mri": ("axial brain MRI", "axial T2-weighted MRI of the brain", "MRI of the head, axial plane"),
    "abdomen_ct": ("axial abdominal CT", "CT of the abdomen, axial slice", "axial CT image of the abdomen"),
}
ANATOMY_TEXTS = (
    "The image shows the {organs}.",
    "Visible structures: the {organs}.",
    "Anatomy in view includes the {organs}.",
)
FINDING_SENTENCES = ("There is {phrase}.", "{Phrase} is seen.", "{Phrase} is noted.")
NEGATIVE_SENTENCES = ("No {finding}.", "There is no {finding}.", "No evidence of {finding}.")
NORMAL_SENTENCES = ("No acute abnormality.", "Normal study.", "No focal abnormality is seen.")
REPORT_TEMPLATE = "EXAMINATION: {modality}. FINDINGS: {findings} IMPRESSION: {impression}"


@dataclass
class PhantomText:
    modality_text: str
    anatomy_text: str
    finding_text: str
    report: str
    labels: list[str]
    regions: list[Region]
    qa: list[QA]


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe(
    phantom: Phantom, rng: np.random.Generator, negatives_per_report: int, absent_questions: int
) -> PhantomText:
    modality = phantom.modality
    finding_types = [f.label for f in modality.findings]
    true_phrases = [region_phrase(f.finding.label, f.size, f.location) for f in phantom.findings]
    regions: list[Region] = []
    for placed, phrase in zip(phantom.findings, true_phrases, strict=True):
        # Rotate the candidate list so the swapped finding varies, deterministically per image.
        k = int(rng.integers(len(finding_types)))
        others = finding_types[k:] + finding_types[:k]
        negs = [
            n
            for n in hard_negatives(placed.finding.label, placed.size, placed.location, others)
            if n not in true_phrases
        ]
        regions.append(Region(placed.bbox, placed.finding.label, phrase, tuple(negs), "finding", placed.size))
    organ_names = [a.organ.name for a in phantom.anatomy]
    for placed in phantom.anatomy:
        name = placed.organ.name
        negs = []
        side = placed.organ.side
        if side and side in name:  # a paired organ: its hard negative is the other side's
            swapped = name.replace(side, "left" if side == "right" else "right")
            if swapped in organ_names:
                negs.append(f"the {swapped}")
        negs += [f"the {o}" for o in organ_names if o != name and f"the {o}" not in negs][:1]
        regions.append(Region(placed.bbox, name, f"the {name}", tuple(negs), "anatomy", None))

    present = sorted({f.finding.label for f in phantom.findings})
    absent = [f for f in finding_types if f not in present]
    modality_text = _pick(rng, MODALITY_TEXTS[modality.name])
    anatomy_text = _pick(rng, ANATOMY_TEXTS).format(organs=", ".join(organ_names))
    sentences = [_pick(rng, FINDING_SENTENCES).format(phrase=p, Phrase=_capitalise(p)) for p in true_phrases]
    positives = " ".join(sentences) if sentences else _pick(rng, NORMAL_SENTENCES)
    order = rng.permutation(len(absent))[:negatives_per_report]
    negatives = [_pick(rng, NEGATIVE_SENTENCES).format(finding=absent[i]) for i in order]
    # The finding level is the report's FINDINGS section, pertinent negatives included: short texts
    # where "no X" sits beside the image that lacks X, which is what teaches negation.
    finding_text = " ".join([positives, *negatives])
    impression = _impression(phantom) if phantom.findings else _pick(rng, NORMAL_SENTENCES)
    report = REPORT_TEMPLATE.format(
        modality=_capitalise(modality_text), findings=finding_text, impression=impression
    )
    qa = _questions(phantom, present, absent, rng, absent_questions)
    return PhantomText(
        modality_text, anatomy_text, finding_text, report, present or [NO_FINDING], regions, qa
    )


def _impression(phantom: Phantom) -> str:
    parts = []
    for f in phantom.findings:
        side = f.location.side if f.location is not None and f.location.side else None
        parts.append(f"{side} {f.finding.label}" if side else f.finding.label)
    return _capitalise("; ".join(dict.fromkeys(parts))) + "."


def _questions(phantom, present, absent, rng, absent_questions) -> list[QA]:
    qa = [QA("What imaging modality is this?", phantom.modality.short, "modality")]
    if present:
        qa.append(QA(f"Is there a {_pick(rng, present)}?", "yes", "presence"))
    for i in rng.permutation(len(absent))[:absent_questions]:
        qa.append(QA(f"Is there a {absent[i]}?", "no", "presence"))
    sided = [f for f in phantom.findings if f.location is not None and f.location.side]
    labels_once = [f for f in sided if sum(g.finding.label == f.finding.label for g in sided) == 1]
    if labels_once:
        f = labels_once[int(rng.integers(len(labels_once)))]
        qa.append(QA(f"On which side is the {f.finding.label}?", f.location.side, "location"))
    qa.append(QA("How many findings are there?", str(len(phantom.findings)), "count"))
    return qa
