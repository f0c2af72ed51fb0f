"""The annotate_regions stage's per-report and per-image work on the Dask cluster (regionmed/cluster.py).

Two parts of the annotation grow with the corpus: reading the reports' mentions (spaCy and NegEx per
report, the CPU-heavy part at 100k reports) and the ``self`` localizer's heatmap pass over the images.
:class:`ClusterMentions` and :class:`ClusterSelfLocalizer` stand in for a
:class:`~regionmed.annotation.mentions.MentionExtractor` and a
:class:`~regionmed.annotation.self_localizer.SelfLocalizer` in
:func:`regionmed.annotation.annotate.annotate_frame`: the same calls, the same answers, the work mapped
over the cluster in chunks and gathered in order. A worker builds its spaCy pipeline, and loads the
annotator model from its folder, once (on its first task: a module-level cache), not once per task.

The answers do not depend on the cluster: a report's mentions depend on its text alone, and each
localizer task is a run of whole batches of ``annotate.batch_size`` queries, cut where the in-process
loop cuts its batches, so every batch holds the same images and phrases as in process (torch's sums
depend on what a batch holds). The prior localizer and the detector stay in the stage's process: the
prior's placement is arithmetic on the query's frame (200,000 queries in 3.4 s on one core, against
minutes of reading the reports they came from); the detector loads its models per call.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from regionmed.annotation.localizers import Localizer, Placed, Query
from regionmed.annotation.mentions import Mention, MentionExtractor
from regionmed.annotation.vocabulary import DEFAULT_VOCABULARY, load_vocabulary
from regionmed.cluster import run_tasks

if TYPE_CHECKING:  # torch: imported where a model is loaded, not by a worker that only reads reports
    from regionmed.annotation.self_localizer import SelfLocalizer

REPORTS_PER_TASK = 1000
QUERIES_PER_TASK = 512  # rounded down to whole batches of annotate.batch_size (at least one)

T = TypeVar("T")
_held: dict[str, tuple[str, Any]] = {}  # per kind: (token, object), the one this worker last built
_building = threading.Lock()
_reading = threading.Lock()  # one spaCy pipeline is not read from two task threads at once


def _worker_cached(kind: str, token: str, build: Callable[[], T]) -> T:
    """The ``kind`` object this worker built for ``token``, built now if it holds another one (or none):
    a worker that outlives a stage (a shared scheduler's) rebuilds when the vocabulary or model changed."""
    with _building:
        held = _held.get(kind)
        if held is None or held[0] != token:
            _held.pop(kind, None)  # the old one goes before the new one is built
            held = (token, build())
            _held[kind] = held
        return held[1]


def _file_token(*parts: object, files: Sequence[Path] = ()) -> str:
    """A digest of ``parts`` and of the path, size and modification time of each of ``files``."""
    digest = hashlib.sha256(repr(parts).encode())
    for f in sorted(files):
        stat = f.stat()
        digest.update(repr((str(f), stat.st_size, stat.st_mtime_ns)).encode())
    return digest.hexdigest()


def read_reports(vocabulary: str, token: str, reports: list[str]) -> list[list[Mention]]:
    """One mention task (on a cluster worker): the mentions of each report, in order."""
    extractor = _worker_cached("mentions", token, lambda: MentionExtractor(vocabulary))
    with _reading:
        return extractor.extract_many(reports)


class ClusterMentions:
    """``extract_many`` on the cluster, in tasks of :data:`REPORTS_PER_TASK` reports."""

    def __init__(self, client, vocabulary: Path | str | None = None, reports_per_task: int | None = None):
        self.client, self.reports_per_task = client, reports_per_task or REPORTS_PER_TASK
        # absolute paths: a worker of a remote cluster runs in its own working directory
        self.path = (Path(vocabulary) if vocabulary is not None else DEFAULT_VOCABULARY).resolve()
        self.vocabulary = load_vocabulary(self.path)  # the stage reads its size words
        self.token = _file_token(str(self.path), files=[self.path])

    def extract_many(self, reports: Sequence[str]) -> list[list[Mention]]:
        step = self.reports_per_task
        chunks = [(list(reports[i : i + step]),) for i in range(0, len(reports), step)]
        per_chunk = run_tasks(
            self.client, read_reports, chunks, name="read reports", shared=(str(self.path), self.token)
        )
        return [found for chunk in per_chunk for found in chunk]


@dataclass(frozen=True)
class LocalizerSpec:
    settings: dict  # the SelfLocalizer's arguments (its model folder among them)
    token: str  # the settings and the folder's files: a worker's cached localizer is the one it names


def place_queries(spec: LocalizerSpec, queries: list[Query]) -> list[Placed | None]:
    """One placement task (on a cluster worker): the boxes of whole batches of placeable queries."""
    from regionmed.annotation.self_localizer import SelfLocalizer

    localizer = _worker_cached("self", spec.token, lambda: SelfLocalizer(**spec.settings))
    return localizer.place(queries)


class ClusterSelfLocalizer:
    """A :class:`SelfLocalizer`'s ``locate`` on the cluster, in tasks of whole batches."""

    name = "self"
    places_organs = True  # as the SelfLocalizer: annotate_frame asks it for the organs that frame the words

    def __init__(self, localizer: SelfLocalizer, client, queries_per_task: int | None = None):
        self.localizer, self.client = localizer, client
        per_task = queries_per_task or QUERIES_PER_TASK
        self.step = max(1, per_task // localizer.batch_size) * localizer.batch_size
        folder = Path(localizer.settings["model_dir"]).resolve()  # absolute, as the images' paths
        settings = {**localizer.settings, "model_dir": str(folder)}
        files = [f for f in folder.rglob("*") if f.is_file()]
        self.spec = LocalizerSpec(settings, _file_token(settings, files=files))

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        keep = [i for i, q in enumerate(queries) if self.localizer.placeable(q)]
        kept = [replace(queries[i], image_path=queries[i].image_path.absolute()) for i in keep]
        chunks = [(kept[i : i + self.step],) for i in range(0, len(kept), self.step)]
        per_chunk = run_tasks(
            self.client, place_queries, chunks, name="place phrases", shared=(self.spec,), unit="chunk"
        )
        out: list[Placed | None] = [None] * len(queries)
        for i, placed in zip(keep, (p for chunk in per_chunk for p in chunk), strict=True):
            out[i] = placed
        return out


def on_cluster(localizer: Localizer, client) -> Localizer:
    """``localizer`` with its per-image work on the cluster where it has any (the ``self`` localizer)."""
    from regionmed.annotation.self_localizer import SelfLocalizer

    return ClusterSelfLocalizer(localizer, client) if isinstance(localizer, SelfLocalizer) else localizer
