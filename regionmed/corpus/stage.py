"""The ``build_corpus`` stage: the source named by ``corpus.source`` into a corpus folder.

The work is :func:`regionmed.corpus.build.build_corpus` (manifest, PNGs, rejected records, summary);
this module times it and says what it did. Too many rejected records is bad input: ``BuildError``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from regionmed.corpus.build import BuildSummary, build_corpus
from regionmed.params_pipeline import PipelineParams


@dataclass(frozen=True)
class CorpusResult:
    summary: BuildSummary
    seconds: float

    def summary_line(self) -> str:
        s = self.summary
        return (
            f"built {s.source} corpus: kept {s.n_kept}, rejected {s.n_rejected} "
            f"{s.rejected_by_category or ''} in {self.seconds:.1f} s "
            f"({s.n_input / max(self.seconds, 1e-9):.0f} images/s); splits {s.per_split}"
        )


def run(
    params: PipelineParams, out: str | Path | None = None, progress: bool | None = None, log=print
) -> CorpusResult:
    """Build ``corpus.out_dir`` (or ``out``); ``progress``: None = a bar on a terminal only."""
    start = time.perf_counter()
    summary = build_corpus(params, out, progress=progress)
    if summary.n_split_conflicts:
        log(
            f"warning: {summary.n_split_conflicts} patients have records that ask for different splits; "
            "each patient's records all went to the split of its first record (by id). build.json lists "
            "them under split_conflicts."
        )
    return CorpusResult(summary, time.perf_counter() - start)
