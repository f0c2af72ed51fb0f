"""The ``train_annotator`` stage: the self-training round's first pass, inside ``dvc repro``.

With ``annotate.localizer: auto`` and a corpus that needs and allows an annotator
(:func:`regionmed.annotation.annotator.plan_annotator`), it

1. annotates the built corpus the image-free way (``prior``: the location words inside each image's
   anatomy, docs/annotation.md) into a scratch folder, as the pipeline's first pass would;
2. trains a tokenizer and the global, region and joint phases on it, with the pipeline's own
   ``model``, ``train`` and ``phases`` settings;
3. exports the joint model to ``annotate.annotator_dir``, where annotate_regions finds it and places
   the reports' findings with it (``self``): the second pass.

Otherwise ``annotate.annotator_dir`` holds only :data:`~regionmed.annotation.annotator.ANNOTATOR_RECORD`
saying why not, which takes seconds (reading the reports' mentions): on the synthetic default, whose
reports' findings are all boxed, the pipeline trains nothing more. A model in this folder comes from
the same corpus and settings as the pipeline's, and lives inside DVC's outs (no cycle: it is trained
before annotate_regions, on the corpus annotate_regions reads).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from regionmed.annotation.annotate import annotate_corpus
from regionmed.annotation.annotator import ANNOTATOR_RECORD, AnnotatorPlan, plan_annotator
from regionmed.annotation.localizers import PriorLocalizer
from regionmed.cluster import dask_client
from regionmed.corpus.schema import MANIFEST_FILE
from regionmed.errors import require
from regionmed.params_pipeline import PipelineParams

# the scratch corpus, tokenizer and phase models (removed when the annotator is exported) and the
# resumable checkpoints: outside DVC's outs, apart from the pipeline's own (.state/checkpoints)
SCRATCH_DIR = Path(".state/annotator_training")
PHASES = (("global", None), ("region", "global"), ("joint", "region"))


@dataclass(frozen=True)
class AnnotatorResult:
    plan: AnnotatorPlan
    out: Path
    seconds: float

    def summary_line(self) -> str:
        done = "trained" if self.plan.train else "not trained"
        return f"train_annotator: {done} ({self.plan.reason}) -> {self.out} in {self.seconds} s"


def run(params: PipelineParams, scratch: Path = SCRATCH_DIR, log=print) -> AnnotatorResult:
    """Decide, train when warranted, and write ``annotate.annotator_dir`` (module docstring)."""
    from regionmed.annotation.on_cluster import ClusterMentions

    a = params.annotate
    corpus_dir = Path(params.corpus.out_dir)
    require(corpus_dir / MANIFEST_FILE, "the corpus manifest", "build_corpus")
    out = Path(params.annotate.annotator_dir)
    start = time.perf_counter()
    round_one = Path(scratch) / "corpus"
    # the reports' mentions are read on the cluster (annotation/on_cluster.py), closed before training
    with dask_client(params.cluster) as client:
        extractor = ClusterMentions(client)
        plan = plan_annotator(params, corpus_dir, extractor)
        if plan.train:  # round one: the words inside each image's anatomy
            prior = PriorLocalizer(a.prior_confidence.model_dump())
            annotate_corpus(corpus_dir, round_one, a, params.seed, prior, extractor)
    log(f"train_annotator: {plan.reason}")
    record = plan.to_dict()
    if plan.train:
        record["phases"] = _train(params, round_one, out, Path(scratch), log)
    elif out.exists():  # an annotator of an earlier corpus must not stay in use
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ANNOTATOR_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return AnnotatorResult(plan, out, round(time.perf_counter() - start, 1))


def _train(params: PipelineParams, round_one: Path, out: Path, scratch: Path, log) -> dict:
    """The three phases on round one (the corpus annotated by the words inside each image's anatomy)."""
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts
    from regionmed.training.train import train

    tokenizer = scratch / "tokenizer"
    backbone = params.model.text.backbone
    if backbone is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(backbone).save_pretrained(str(tokenizer))
    else:
        train_wordpiece_tokenizer(corpus_texts(round_one), params.model.text.vocab_size, tokenizer)
    summaries = {}
    for phase, previous in PHASES:
        target = out if phase == "joint" else scratch / phase
        log(f"train_annotator: phase {phase}")
        summaries[phase] = train(
            params,
            phase,
            round_one,
            tokenizer,
            target,
            scratch / previous if previous else None,
            scratch / "checkpoints",
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return {k: {"steps": v.get("steps"), "seconds": v.get("seconds")} for k, v in summaries.items()}
