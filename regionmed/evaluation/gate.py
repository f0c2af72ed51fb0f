"""The promotion gate: a pure decision on flat metric dicts (name → value).

Checks, each one a :class:`Comparison`:

* ``floor``: for every metric in ``floors``, the candidate is at least the floor (at most, for a
  lower-is-better metric: the floor is then a ceiling);
* ``champion`` (only with a champion): the candidate is not worse than the champion by more than
  the margin: ``value >= champion - margin`` (``<= champion + margin`` for lower-is-better). A
  positive margin tolerates a small regression; a negative margin demands an improvement of at
  least ``-margin``. With a float margin the champion check covers every metric in ``floors``
  and ``must_beat_baseline``; with a dict, exactly its keys. A metric the champion lacks (an older
  champion) is recorded as passed with a note;
* ``baseline``: for every metric in ``must_beat_baseline``, the candidate is strictly better than
  the baseline (e.g. a global-only CLIP, or the text-only prior);
* relative floors (:mod:`regionmed.evaluation.gate_relative`): the candidate against references
  measured on the same test images, so they mean the same on any corpus (chance, the text-only
  prior, the global-only baseline); made there and handed to :func:`decide` as ``relative``.

Absolute floors are a corpus's own targets: with ``floors_note`` (the stage: a corpus of another
source than the floors were set for) each is recorded as passed with that note, not enforced.

A metric the candidate lacks, or whose value is NaN, fails every check it appears in with a note
saying so; a missing baseline value fails the baseline check (it cannot be verified). A metric the
test split cannot measure (``unmeasured``: the evaluation has it with no value, n = 0, e.g. grounding
on a corpus without finding boxes) passes every check with a note saying it was skipped, except an
enforced absolute floor: a floor set for this corpus presumes the corpus can measure it. Direction:
``directions[name]`` ("higher"/"lower"), else :func:`default_direction`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

LOWER_IS_BETTER_SUFFIXES = ("rank", "loss", "error", "ece")


def default_direction(metric: str) -> str:
    """``"lower"`` for names ending in rank/loss/error/ece (e.g. ``i2t/median_rank``), else ``"higher"``."""
    return "lower" if metric.lower().endswith(LOWER_IS_BETTER_SUFFIXES) else "higher"


@dataclass(frozen=True)
class Comparison:
    metric: str
    kind: str  # floor | champion | baseline | above_chance | above_prior | not_below_baseline
    value: float | None
    threshold: float | None
    passed: bool
    direction: str = "higher"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateDecision:
    passed: bool
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "n_failed": len(self.failures),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def table(self, only_failed: bool = True) -> str:
        """A plain-text table of the failed checks (or of all of them)."""
        rows = self.failures if only_failed else self.comparisons
        head = (
            f"gate: {'PASSED' if self.passed else 'FAILED'} "
            f"({len(self.failures)} of {len(self.comparisons)} checks failed)"
        )
        if not rows:
            return head

        def fmt(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

        cells = [("metric", "check", "value", "need", "ok", "note")]
        for c in rows:
            op = ">=" if c.direction == "higher" else "<="
            if c.kind in ("baseline", "above_chance", "above_prior"):  # strictly better
                op = op[0]
            need = "-" if c.threshold is None else f"{op} {fmt(c.threshold)}"
            cells.append((c.metric, c.kind, fmt(c.value), need, "yes" if c.passed else "NO", c.note))
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([head, *lines])


def value_of(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    """``metrics[name]`` as a float; None when absent, None or NaN."""
    if metrics is None or name not in metrics or metrics[name] is None:
        return None
    v = float(metrics[name])
    return None if math.isnan(v) else v


def _better_or_equal(value: float, threshold: float, direction: str) -> bool:
    return value >= threshold if direction == "higher" else value <= threshold


UNMEASURED_NOTE = "not measured on this test split (n = 0: nothing to measure it on); skipped"
FLOOR_UNMEASURED_NOTE = "not measured on this test split, but gate.floors holds it for this corpus"


def decide(
    candidate: Mapping[str, Any],
    floors: Mapping[str, float],
    champion: Mapping[str, Any] | None = None,
    champion_margin: float | Mapping[str, float] = 0.0,
    baseline: Mapping[str, Any] | None = None,
    must_beat_baseline: Sequence[str] = (),
    directions: Mapping[str, str] | None = None,
    unmeasured: Collection[str] = (),
    floors_note: str | None = None,
    relative: Sequence[Comparison] = (),
) -> GateDecision:
    """Check ``candidate`` against floors, the champion and the baseline, plus the ``relative`` checks
    already made (:func:`relative_checks`); never raises on a missing metric. ``passed`` is True only
    when every comparison passed."""
    directions = directions or {}
    out: list[Comparison] = []

    def direction(m: str) -> str:
        d = directions.get(m, default_direction(m))
        if d not in ("higher", "lower"):
            raise ValueError(f"direction of {m!r} must be 'higher' or 'lower', got {d!r}")
        return d

    def missing(m: str, kind: str, threshold: float | None) -> Comparison:
        if m in unmeasured:
            return Comparison(m, kind, None, threshold, True, direction(m), UNMEASURED_NOTE)
        note = "missing in candidate" if m not in candidate else "candidate value is NaN/None"
        return Comparison(m, kind, None, threshold, False, direction(m), note)

    for m, floor in floors.items():
        v = value_of(candidate, m)
        if floors_note is not None:
            out.append(Comparison(m, "floor", v, float(floor), True, direction(m), floors_note))
        elif v is None and m in unmeasured:  # a floor set for this corpus presumes it can measure it
            out.append(Comparison(m, "floor", None, float(floor), False, direction(m), FLOOR_UNMEASURED_NOTE))
        elif v is None:
            out.append(missing(m, "floor", float(floor)))
        else:
            ok = _better_or_equal(v, float(floor), direction(m))
            out.append(Comparison(m, "floor", v, float(floor), ok, direction(m)))

    if champion is not None:
        names = (
            list(champion_margin)
            if isinstance(champion_margin, Mapping)
            else list(dict.fromkeys([*floors, *must_beat_baseline]))
        )
        for m in names:
            margin = float(champion_margin[m] if isinstance(champion_margin, Mapping) else champion_margin)
            c = value_of(champion, m)
            if m in unmeasured:
                out.append(missing(m, "champion", c))
                continue
            if c is None:
                out.append(
                    Comparison(
                        m,
                        "champion",
                        value_of(candidate, m),
                        None,
                        True,
                        direction(m),
                        "champion has no value; not compared",
                    )
                )
                continue
            thr = c - margin if direction(m) == "higher" else c + margin
            v = value_of(candidate, m)
            out.append(
                missing(m, "champion", thr)
                if v is None
                else Comparison(
                    m,
                    "champion",
                    v,
                    thr,
                    _better_or_equal(v, thr, direction(m)),
                    direction(m),
                    f"champion {c:.4g}, margin {margin:g}",
                )
            )

    for m in must_beat_baseline:
        b = value_of(baseline, m)
        v = value_of(candidate, m)
        if v is None:
            out.append(missing(m, "baseline", b))
        elif b is None:
            out.append(Comparison(m, "baseline", v, None, False, direction(m), "baseline value missing"))
        else:
            ok = v > b if direction(m) == "higher" else v < b
            out.append(Comparison(m, "baseline", v, b, ok, direction(m)))
    out.extend(relative)
    return GateDecision(all(c.passed for c in out), out)


def flatten_metrics(nested: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, float]:
    """``{"zeroshot": {"auroc": {"nodule": 0.9}}}`` → ``{"zeroshot/auroc/nodule": 0.9}``; keeps
    numbers only (lists, strings and arrays are dropped), so results can go to the gate and DVC."""
    out: dict[str, float] = {}
    for k, v in nested.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key, sep))
        elif isinstance(v, (bool, int, float)) or (hasattr(v, "ndim") and v.ndim == 0):
            out[key] = float(v)
    return out
