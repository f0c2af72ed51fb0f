"""One mention extractor for the annotation tests (building the spaCy pipeline takes seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def extractor():
    from regionmed.annotation.mentions import MentionExtractor

    return MentionExtractor()
