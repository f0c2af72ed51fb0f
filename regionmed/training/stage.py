"""The ``pretrain_*`` stages: one progressive phase trained and exported, its summary written.

The work is :func:`regionmed.training.train.train` (resumable; its docstring describes the phases);
this module checks the phase is one of ``phases``, runs it on the annotated corpus and writes the
phase's summary (DVC metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from regionmed.atomic import atomic_write_text
from regionmed.corpus.schema import MANIFEST_FILE
from regionmed.errors import BadInput, require
from regionmed.model.io import CONFIG_FILE
from regionmed.params_pipeline import PipelineParams
from regionmed.training.train import train

DEFAULT_STATE_DIR = Path(".state/checkpoints")  # resumable checkpoints, outside the stage's DVC outs


class UnknownPhase(BadInput):
    """A phase that ``phases`` in params does not define."""


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    summary: dict  # what the metrics file holds

    def summary_line(self) -> str:
        return f"phase {self.phase}: {self.summary}"


def run(
    params: PipelineParams,
    phase: str,
    tokenizer: str | Path,
    out: str | Path,
    metrics: str | Path,
    init_from: str | Path | None = None,
    state_dir: str | Path = DEFAULT_STATE_DIR,
    log_dir: str | Path | None = None,
) -> PhaseResult:
    """Train ``phase`` (warm-started from ``init_from``), export the model to ``out``, write ``metrics``."""
    if phase not in params.phases:
        raise UnknownPhase(f"params has no phases.{phase} (it defines {', '.join(params.phases)})")
    require(Path(params.stage_corpus) / MANIFEST_FILE, "the annotated corpus manifest", "annotate_regions")
    require(tokenizer, "the tokenizer folder", "tokenizer")
    if init_from:
        require(Path(init_from) / CONFIG_FILE, "the model to warm-start from", "previous phase's")
    params.check_model_fits_corpus()
    summary = train(
        params,
        phase,
        Path(params.stage_corpus),
        Path(tokenizer),
        Path(out),
        Path(init_from) if init_from else None,
        Path(state_dir),
        Path(log_dir) if log_dir else None,
    )
    atomic_write_text(metrics, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return PhaseResult(phase, summary)
