"""The champion record: the model in production, which the gate compares each candidate with.

One JSON file, ``gate.champion_file`` (``deploy/champion.json``), written by the ``package`` stage and
committed with the repository: every clone, CI job and Prefect worker that checks out the branch reads
the same champion, and a review shows when production changes (docs/champion.md). It names the model
and the Bento in production (BentoML tags), their metrics (the gate's view), when and from which git
revision they were packaged, and the BentoML store they went to (relative to the repository when it is
inside it).

``gate.require_champion: true`` makes the gate fail closed when the record is missing or unreadable (a
clone that did not pull it, a corrupt file) instead of passing any candidate over the floors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regionmed.atomic import atomic_write_text
from regionmed.errors import CheckFailed

RECORD_KEYS = ("tag", "bento", "metrics")


class ChampionUnavailable(CheckFailed):
    """The gate needs a champion (``gate.require_champion``) and cannot read one, or the record is
    damaged: the gate fails closed (a failed check, exit status 1: regionmed/errors.py)."""


def read_champion(path: str | Path, *, required: bool = False) -> dict[str, Any] | None:
    """The record at ``path``; None when there is none (an error when ``required``). A file that exists but is
    not a champion record is always an error: a damaged record must not silently drop the comparison."""
    p = Path(path)
    hint = (
        "pull the repository (the record is committed with it), or set gate.require_champion: false "
        "for the very first model"
    )
    if not p.is_file():
        if required:
            raise ChampionUnavailable(
                f"gate.require_champion is true, but there is no champion record at {p}: {hint}"
            )
        return None
    try:
        record = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ChampionUnavailable(
            f"the champion record {p} cannot be read ({exc}); fix or restore it from git"
        ) from None
    missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
    if missing or not isinstance(record.get("metrics"), dict):
        raise ChampionUnavailable(
            f"the champion record {p} lacks {missing or ['metrics (a mapping)']}; fix or restore it from git"
        )
    return record


def write_champion(
    path: str | Path,
    *,
    model_tag: str,
    bento_tag: str | None,
    metrics: dict[str, float],
    packaged_at: str,
    git_rev: str,
    bentoml_home: str,
    corpus: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the record of a newly packaged model (the ``package`` stage); returns it. ``corpus``: the
    corpus its metrics were measured on (the gate's ``corpus``), which the next gate compares only with
    a candidate of the same corpus."""
    record = {
        "tag": model_tag,
        "bento": bento_tag,
        "metrics": metrics,
        "packaged_at": packaged_at,
        "git_rev": git_rev,
        "bentoml_home": bentoml_home,
        **({"corpus": corpus} if corpus is not None else {}),
    }
    # whole or not at all: the next gate reads it, and a torn record would refuse every candidate
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
