"""The ``monitor_reference`` stage: :func:`build_reference` (the drift reference from the packaged
model, its index and the manifest; a function of those, no files) and the stage's :func:`run`.

Reads the packaged model (``serving.model_dir``), its retrieval index (``serving.index_dir``) and the
index split's manifest rows (``annotate.out_dir``, the annotated corpus); writes ``monitor.reference_dir`` and
creates the (empty) embedding log folder (``serving.embedding_log.dir``), which the ``monitor`` stage depends
on. The per-image descriptors are computed on the cluster (``cluster``), in chunks of images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from regionmed.errors import BadInput, require
from regionmed.model.io import CONFIG_FILE
from regionmed.monitoring.reference import Reference
from regionmed.params import Params
from regionmed.params_pipeline import ClusterParams


def build_reference(
    engine,
    index,
    manifest: pd.DataFrame,
    corpus_dir: str | Path,
    max_image_pixels: int,
    log=print,
    cluster: ClusterParams | None = None,
) -> Reference:
    """The reference of the packaged model (module docstring) from its ``engine``
    (:class:`~regionmed.inference.engine.Engine`), its retrieval ``index`` and the manifest rows of the
    index's split (indexed by ``image_id``); the caller saves it. The image descriptors are computed on
    ``cluster`` (None: here)."""
    from regionmed.prompts.templates import embed_prompt_sets, modality_prompts

    if index.dim != engine.embed_dim:
        raise BadInput(
            f"the index has dim {index.dim}, the model {engine.embed_dim}: "
            "they are not from the same packaging"
        )
    rows = {
        kind: [i for i, it in enumerate(index.items) if it["kind"] == kind] for kind in ("image", "report")
    }
    ids = [index.items[i]["id"] for i in rows["image"]]
    missing = [i for i in ids if i not in manifest.index]
    if missing:
        raise BadInput(
            f"{len(missing)} images of the index are not in split {index.split!r} of {corpus_dir} "
            "(the corpus changed after packaging?)"
        )

    paths = [str(manifest.at[image_id, "image_path"]) for image_id in ids]
    sizes = (max_image_pixels, engine.image_size, engine.channels)
    if cluster is None:
        image_desc = describe_images(str(corpus_dir), *sizes, paths)
    else:
        image_desc = _cluster_descriptors(cluster, Path(corpus_dir), sizes, paths)
    reports = [str(manifest.at[i, "report"]) for i in [index.items[r]["id"] for r in rows["report"]]]
    text_desc = engine.text_descriptors(reports)
    del reports

    findings = sorted({label for i in rows["image"] for label in index.items[i]["labels"]})
    modalities = sorted({index.items[i]["modality"] for i in rows["image"]})
    classes, class_emb = {}, {}
    if findings:
        classes["finding"] = findings
        class_emb["finding"] = engine.class_embeddings(findings)
    if modalities:
        classes["modality"] = modalities
        class_emb["modality"] = np.asarray(
            embed_prompt_sets(engine.encode_texts, modality_prompts(modalities)), dtype=np.float32
        )

    versions = list(dict.fromkeys(v for v in (index.model_version, engine.version) if v))
    ref = Reference(
        embeddings={"image": index.embeddings[rows["image"]], "text": index.embeddings[rows["report"]]},
        descriptors={"image": pd.DataFrame(image_desc), "text": pd.DataFrame(text_desc)},
        model_versions=versions,
        classes=classes,
        class_embeddings=class_emb,
        split=index.split,
    )
    log(
        f"reference: {ref.rows('image')} images + {ref.rows('text')} reports of split {index.split!r}, "
        f"dim {ref.dim}, model {', '.join(versions)}; zero-shot classes: {len(findings)} findings, "
        f"{len(modalities)} modalities"
    )
    return ref


def describe_images(
    corpus_dir: str, max_image_pixels: int, image_size: int, channels: int, paths: list[str]
) -> list[dict]:
    """One descriptor task (on a cluster worker, or here): the descriptors the service logs for each
    image of ``paths`` (:func:`~regionmed.inference.uploads.decode_upload` + ``Engine.prepare``)."""
    from regionmed.corpus.shards import image_bytes
    from regionmed.inference.uploads import decode_upload, prepare_image

    return [
        prepare_image(
            decode_upload(image_bytes(Path(corpus_dir) / p), max_image_pixels), image_size, channels
        ).descriptors
        for p in paths
    ]


def _cluster_descriptors(
    cluster: ClusterParams, corpus_dir: Path, sizes: tuple, paths: list[str]
) -> list[dict]:
    from regionmed.cluster import dask_client
    from regionmed.inference.image_tasks import run_chunked

    with dask_client(cluster) as client:
        (chunks,) = run_chunked(
            client,
            describe_images,
            [paths],
            1,  # no batches: chunks of image_tasks.IMAGES_PER_TASK images
            name="describe reference images",
            shared=(str(corpus_dir.resolve()), *sizes),
        )
    return [desc for chunk in chunks for desc in chunk]


@dataclass(frozen=True)
class ReferenceResult:
    reference: Reference
    out: Path

    def summary_line(self) -> str:
        r = self.reference
        return f"wrote the drift reference ({r.rows('image')} images, {r.rows('text')} reports) to {self.out}"


def run(params: Params, log=print) -> ReferenceResult:
    """Build the reference of the packaged model and save it to ``monitor.reference_dir``."""
    from regionmed.corpus.schema import read_manifest
    from regionmed.inference.engine import Engine
    from regionmed.inference.index import RetrievalIndex

    s = params.serving
    if not RetrievalIndex.exists(s.index_dir):
        raise BadInput(f"no retrieval index at {s.index_dir}: run the package stage first")
    require(Path(s.model_dir) / CONFIG_FILE, "the packaged model", "pretrain_joint")
    require(params.stage_corpus, "the annotated corpus", "annotate_regions")
    if s.torch_threads:
        import torch

        torch.set_num_threads(s.torch_threads)
    index = RetrievalIndex.load(s.index_dir)
    manifest = read_manifest(params.stage_corpus, index.split).set_index("image_id", drop=False)
    reference = build_reference(
        Engine.from_dir(s.model_dir),
        index,
        manifest,
        params.stage_corpus,
        s.max_image_pixels,
        log=log,
        cluster=params.cluster,
    )
    reference.save(params.monitor.reference_dir)
    Path(s.embedding_log.dir).mkdir(parents=True, exist_ok=True)  # must exist before the service first writes
    return ReferenceResult(reference, Path(params.monitor.reference_dir))
