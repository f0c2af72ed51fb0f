"""The gate's relative floors: the candidate against references measured on the same test images.

``above_chance`` (the candidate's 95% interval above the chance level of that grounding view),
``above_prior`` (the paired interval of candidate - text-only prior above 0), ``not_below_baseline``
(the paired interval of candidate - global-only baseline reaches 0). They read the evaluation's
summary (metrics/eval.json) and mean the same on any corpus; :func:`unmeasured_metrics` says which
metrics a test split could not measure, which every check then skips with a note
(:func:`regionmed.evaluation.gate.decide`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from regionmed.evaluation.gate import UNMEASURED_NOTE, Comparison, default_direction, value_of

RELATIVE_KINDS = ("above_chance", "above_prior", "not_below_baseline")


# metric families the evaluation writes only when the test split has what they need: finding boxes
# (grounding, hard negatives), given anatomy boxes (grounding/anatomy), question-answer pairs (VQA)
CORPUS_DEPENDENT = ("grounding", "grounding/anatomy", "hardneg", "vqa")


def metric_family(name: str) -> str:
    """``grounding/anatomy`` for anatomy grounding (its own boxes: a corpus may have them and no finding
    boxes, or the reverse), else the part before the first ``/``."""
    return "grounding/anatomy" if name.startswith("grounding/anatomy/") else name.split("/", 1)[0]


def unmeasured_metrics(
    summary: Mapping[str, Any], names: Collection[str], model: str = "regionmed"
) -> set[str]:
    """Those of ``names`` the test split could not measure for ``model``: listed by the evaluation with no
    value (n = 0), or of a :data:`CORPUS_DEPENDENT` family the evaluation wrote nothing of (no
    ``grounding/...`` at all: a test split without finding boxes; ``grounding/anatomy/...`` is a family of
    its own, :func:`metric_family`). A name missing from a family that is there, or of another family (a
    typo), is not among them.
    ``vs_prior/<metric>_low`` stands for ``<metric>``."""
    mine = summary.get(model, {})
    families = {metric_family(m) for m in mine}
    out = set()
    for name in names:
        m = name.removeprefix("vs_prior/").removesuffix("_low") if name.startswith("vs_prior/") else name
        v = mine.get(m)
        family = metric_family(m)
        empty = isinstance(v, Mapping) and v.get("value") is None
        if empty or (v is None and family in CORPUS_DEPENDENT and family not in families):
            out.add(name)
    return out


def relative_checks(
    summary: Mapping[str, Any],
    relative: Mapping[str, Sequence[str]],
    model: str = "regionmed",
    directions: Mapping[str, str] | None = None,
) -> list[Comparison]:
    """The relative floors (module doc) on an evaluation summary (metrics/eval.json): per kind in
    :data:`RELATIVE_KINDS`, per metric, one :class:`Comparison` whose value is the interval bound compared
    and whose threshold is the reference."""
    directions = directions or {}
    mine = summary.get(model, {})
    unmeasured = unmeasured_metrics(summary, [m for ms in relative.values() for m in ms], model)
    out: list[Comparison] = []
    for kind, metrics in relative.items():
        if kind not in RELATIVE_KINDS:
            raise ValueError(f"relative floor kind {kind!r}: one of {', '.join(RELATIVE_KINDS)}")
        for m in metrics:
            d = directions.get(m, default_direction(m))
            if m in unmeasured:
                out.append(Comparison(m, kind, None, None, True, d, UNMEASURED_NOTE))
                continue
            if m not in mine:
                out.append(Comparison(m, kind, None, None, False, d, "missing in candidate"))
                continue
            out.append(_relative(summary, mine, kind, m, d, model))
    return out


def _relative(summary, mine, kind: str, m: str, d: str, model: str) -> Comparison:
    higher = d == "higher"
    if kind == "above_chance":
        chance = value_of(summary.get(model, {}).get(m.replace("grounding/", "chance/", 1), {}), "value")
        low = value_of(mine[m], "low" if higher else "high")
        if chance is None or low is None or not m.startswith("grounding/"):
            return Comparison(m, kind, low, chance, False, d, "no chance level for this metric")
        ok = low > chance if higher else low < chance
        return Comparison(m, kind, low, chance, ok, d, "95% interval bound vs chance")
    if kind == "above_prior":
        diff = summary.get("vs_prior", {}).get(f"{model}/{m}", {})
        low = value_of(diff, "low" if higher else "high")
        if low is None:
            return Comparison(m, kind, None, 0.0, False, d, "no text-prior difference for this metric")
        ok = low > 0 if higher else low < 0
        return Comparison(m, kind, low, 0.0, ok, d, "paired 95% interval of candidate - text prior")
    diff = summary.get("difference", {}).get(m, {})
    high = value_of(diff, "high" if higher else "low")
    if high is None:
        return Comparison(m, kind, None, 0.0, False, d, "no baseline difference for this metric")
    ok = high >= 0 if higher else high <= 0
    return Comparison(m, kind, high, 0.0, ok, d, "paired 95% interval of candidate - baseline")
