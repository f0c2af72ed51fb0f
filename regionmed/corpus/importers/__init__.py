"""Importers: real data sets as build sources (``corpus.source`` in ``params.yaml``).

- ``jsonl``: the generic import format (one JSON object per line), :mod:`.jsonl`
- ``coco``: COCO detection annotations plus a captions CSV, :mod:`.coco`
- ``medpix``: MedPix 2.0 in its native layout, :mod:`.medpix`

``docs/import-format.md`` describes each for users. Every importer reads
``corpus.importer.path`` (and ``captions_csv`` for COCO) relative to the working directory.
"""

from __future__ import annotations

from regionmed.corpus.importers._common import ImporterConfigError
from regionmed.params_pipeline import IMPORTERS, ImportParams

__all__ = ["IMPORTERS", "ImporterConfigError", "importer_vocabulary", "make_importer"]


def importer_vocabulary(name: str) -> dict[str, list[str]]:
    """The values an importer always writes (``{}`` when they are the user's, as for JSONL and COCO)."""
    if name == "medpix":
        from regionmed.corpus.importers.medpix import vocabulary

        return vocabulary()
    return {}


def make_importer(name: str, params: ImportParams):
    """The build source for ``corpus.source: <name>``; raises :class:`ImporterConfigError` naming the
    setting."""
    if name == "jsonl":
        from regionmed.corpus.importers.jsonl import JsonlImporter

        return JsonlImporter(params)
    if name == "coco":
        from regionmed.corpus.importers.coco import CocoImporter

        return CocoImporter(params)
    if name == "medpix":
        from regionmed.corpus.importers.medpix import MedPixImporter

        return MedPixImporter(params)
    raise ImporterConfigError(f"corpus.source = {name!r}: no such importer; known: {', '.join(IMPORTERS)}")
