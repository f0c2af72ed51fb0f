"""Does this corpus need an annotator, and can it have one? (``annotate.localizer: auto``)

An annotator is a RegionMed model trained on the corpus's own given boxes; ``auto`` places the
reports' findings with it (the ``self`` localizer). It is

* needed when some image of ``annotate.splits`` has a finding to place: a non-negated finding mention
  of its report on an image without a given finding region (on the synthetic default every finding
  the reports name is boxed: none is needed, and nothing is trained);
* possible when at least ``annotate.annotator_min_boxed`` train images have given regions (a model
  cannot learn where things are without any box).

The train_annotator stage (:mod:`regionmed.annotation.annotator_stage`) trains it when both hold and
always writes :data:`ANNOTATOR_RECORD` into ``annotate.annotator_dir`` saying what it decided and why;
the annotate_regions stage reads that folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from regionmed.annotation.annotate import annotate_frame, hide_regions
from regionmed.annotation.localizers import NoLocalizer
from regionmed.annotation.summary import AnnotationCounts
from regionmed.corpus.schema import read_manifest
from regionmed.params_pipeline import PipelineParams

ANNOTATOR_RECORD = "annotator.json"


@dataclass(frozen=True)
class AnnotatorPlan:
    train: bool
    reason: str
    images_to_place: int  # images of annotate.splits with a finding (or organ) mention to place
    boxed_train_images: int  # train images with given regions (after annotate.hide_given_fraction)

    def to_dict(self) -> dict:
        return {"trained": self.train, **{k: v for k, v in asdict(self).items() if k != "train"}}


def plan_annotator(params: PipelineParams, corpus_dir: Path, extractor) -> AnnotatorPlan:
    """Whether the train_annotator stage trains an annotator for ``corpus_dir``, and why (module doc)."""
    a = params.annotate
    df = read_manifest(corpus_dir)
    hide_regions(df, a.hide_given_fraction, params.seed)  # an experiment's annotator sees what it would
    boxed = int(((df["split"] == "train") & (df["regions"].map(len) > 0)).sum())
    if a.localizer != "auto":
        return AnnotatorPlan(False, f"annotate.localizer is {a.localizer}, not auto", 0, boxed)
    counts = AnnotationCounts("auto")
    annotate_frame(df, corpus_dir, a, NoLocalizer(), extractor, counts)
    to_place = counts.images_to_place
    if to_place == 0:
        return AnnotatorPlan(False, "nothing to place: every finding the reports name is boxed", 0, boxed)
    if boxed < a.annotator_min_boxed:
        return AnnotatorPlan(
            False,
            f"{to_place} images have findings to place, but only {boxed} train images have given boxes "
            f"(annotate.annotator_min_boxed {a.annotator_min_boxed}): nothing is placed",
            to_place,
            boxed,
        )
    return AnnotatorPlan(
        True,
        f"{to_place} images have findings to place; an annotator learns from {boxed} boxed train images",
        to_place,
        boxed,
    )
