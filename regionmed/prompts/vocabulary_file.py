"""Where the report vocabulary lives (data beside the prompts): the finding and anatomy words, their
synonyms, location words, negation and uncertainty cues that :mod:`regionmed.annotation.mentions` reads."""

from __future__ import annotations

from pathlib import Path

REPORT_VOCABULARY_FILE = Path(__file__).with_name("report_vocabulary.yaml")
