"""The RegionMed embedding service (BentoML 1.4, new-style service class).

Serve from the repo (``models/regionmed`` after ``dvc repro``, or ``$REGIONMED_MODEL_DIR``)::

    bentoml serve regionmed.serving.service:RegionMedService

or a built Bento (``bentoml serve regionmed_service:latest``); docs/serving.md has the calls.

APIs (all POST, JSON or multipart): ``encode_image`` and ``encode_text`` (adaptive batching),
``zero_shot``, ``ground``, ``encode_regions``, ``retrieve``, ``preview``, ``metadata``; health: GET
``/livez``, ``/readyz``; the demo page: GET ``/ui/`` (``demo.py``). Every input is checked before any work: a
bad request is a 4xx whose body says what was wrong (pydantic's ``detail`` for a malformed field, ``error``
otherwise), never a 500; the request types and their checks are in ``requests.py``.

How the checks sit in BentoML's request path: uploads and texts are validated by pydantic
validators while the request is parsed, i.e. per request and *before* adaptive batching, so one
bad request in a batch cannot fail the others. The body-size limit and the API key are an ASGI
middleware (``middleware.py``), wrapped by another that puts the security headers (CSP, no framing)
on every answer (``security_headers.py``). ``zero_shot`` and ``retrieve`` batch their image encodes through
an in-process batcher with its own model thread (:class:`ImageBatcher`; a public batchable API
takes one argument, these take an image and texts).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, Literal

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, ServiceUnavailable
from pydantic import Field

from regionmed.env import configure_environment
from regionmed.inference.engine import Engine
from regionmed.inference.index import ITEM_KINDS, RetrievalIndex
from regionmed.monitoring.embedding_log import EmbeddingLogWriter, hash_request_id
from regionmed.serving.batcher import ImageBatcher
from regionmed.serving.demo import DEMO_PATH, demo_app, drift_status, label_vocabulary, preview_payload
from regionmed.serving.location_check import check_location_words
from regionmed.serving.logs import guard_metric_labels, install_request_data_filter
from regionmed.serving.middleware import RequestGuardMiddleware, current_request_id, note_unavailable
from regionmed.serving.requests import (  # the request types and their checks; SETTINGS read once there
    JSON,
    SETTINGS,
    BoxList,
    ImageFile,
    ImageList,
    LabelList,
    Text,
    TextList,
    set_decode_side,
)
from regionmed.serving.security_headers import SecurityHeadersMiddleware
from regionmed.serving.settings import ENV_LOG_DIR, ENV_LOG_SALT, resolve_model

configure_environment()
install_request_data_filter()  # no part of a request in the worker's log (logs.py)
logger = logging.getLogger("regionmed.serving")

SERVICE_NAME = "regionmed_service"
BATCH = SETTINGS.batching
# Rows the embedding log dropped while its disk was full (the log pauses, the service keeps serving);
# on /metrics as regionmed_embedding_log_dropped_rows_total, beside BentoML's own request metrics.
EMBEDDING_LOG_DROPPED = bentoml.metrics.Counter(
    name="regionmed_embedding_log_dropped_rows",
    documentation="Embedding-log rows not written because the log's disk was full (logging paused)",
)


def _api_key() -> str | None:
    return os.environ.get(SETTINGS.api_key_env) or None


@bentoml.service(
    name=SERVICE_NAME,
    workers=1,
    traffic={"timeout": SETTINGS.timeout_s},
    http={"host": SETTINGS.host, "port": SETTINGS.port},
    # BentoML wraps every request in OpenTelemetry spans (the request, each body chunk read, each
    # response message) even when no exporter is configured and nothing is sampled; with
    # ``serving.tracing: false`` (the default) every URL is excluded from that middleware.
    **({} if SETTINGS.tracing else {"tracing": {"excluded_urls": [".*"]}}),
)
class RegionMedService:
    """Region-aware medical CLIP: embeddings, zero-shot, grounding, region embeddings, retrieval."""

    def __init__(self) -> None:
        if SETTINGS.torch_threads:
            import torch

            torch.set_num_threads(SETTINGS.torch_threads)
        source = resolve_model(SETTINGS)
        index = None
        if RetrievalIndex.exists(source.index_dir):
            # memory-mapped (a million vectors are not read per worker); HNSW graphs, when the index has
            # them, searched with this service's breadth; a graph failing its checks → exact, with a warning
            index = RetrievalIndex.load(
                source.index_dir, mmap=True, expansion_search=SETTINGS.ann.expansion_search
            )
        self.source = source
        self.engine = Engine.from_dir(
            source.path, version=source.version, info=source.info, index=index, device=SETTINGS.device
        )
        if index is not None and index.dim != self.engine.embed_dim:
            logger.warning(
                "retrieval index at %s has dim %d, the model %d: retrieval disabled",
                source.index_dir,
                index.dim,
                self.engine.embed_dim,
            )
            self.engine.index = None
        log = SETTINGS.embedding_log
        self.log_salt = os.environ.get(ENV_LOG_SALT, "")
        self.embedding_log = (
            EmbeddingLogWriter(
                os.environ.get(ENV_LOG_DIR) or log.dir,
                log.rotate_bytes,
                log.rotate_seconds,
                log.keep_files,
            )
            if log.enabled
            else None
        )
        set_decode_side(self.engine.image_size)  # uploads are decoded reduced to the model's input size
        self.image_batcher = ImageBatcher(self.engine, BATCH.max_batch_size, BATCH.max_latency_ms)
        logger.info(
            "serving %s (%s from %s); index: %s",
            self.engine.version,
            source.origin,
            source.path,
            f"{index.count()} items" if self.engine.index is not None else "none",
        )

    def __is_ready__(self) -> bool:
        return self.engine is not None

    @bentoml.on_shutdown
    def _close_log(self) -> None:
        self.image_batcher.close()
        if self.embedding_log is not None:
            self.embedding_log.close()

    # ---- logging ---------------------------------------------------------------------------------
    def _log(
        self, endpoint: str, kind: str, embeddings: np.ndarray, descriptors: list[dict], requests: list[str]
    ) -> None:
        """One record per row; rows of one request go in one write."""
        if self.embedding_log is None or len(embeddings) == 0:
            return
        order: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            order.setdefault(r, []).append(i)
        for request, rows in order.items():
            written = self.embedding_log.log(
                endpoint=endpoint,
                model_version=self.engine.version,
                request=hash_request_id(request, self.log_salt),
                kind=kind,
                embeddings=embeddings[rows],
                descriptors=[descriptors[i] for i in rows],
            )
            if written < len(rows):  # the log's disk is full: it paused (and warned); the answer goes out
                EMBEDDING_LOG_DROPPED.inc(len(rows) - written)

    # ---- APIs ------------------------------------------------------------------------------------
    @bentoml.api(batchable=True, max_batch_size=BATCH.max_batch_size, max_latency_ms=BATCH.max_latency_ms)
    def encode_image(self, images: ImageList) -> Annotated[list[list[float]], JSON]:
        """Images (PNG, JPEG or DICOM) → L2-normalised image embeddings, one per image, in order."""
        prepared = [self.engine.prepare(d) for d in images]
        emb = self.engine.encode_images(prepared)
        self._log(
            "encode_image",
            "image",
            emb,
            [p.descriptors for p in prepared],
            [d.request or current_request_id() for d in images],
        )
        return emb.tolist()

    @bentoml.api(batchable=True, max_batch_size=BATCH.max_batch_size, max_latency_ms=BATCH.max_latency_ms)
    def encode_text(self, texts: TextList) -> Annotated[list[list[float]], JSON]:
        """Texts → L2-normalised text embeddings, one per text, in order."""
        emb = self.engine.encode_texts(texts)
        self._log(
            "encode_text",
            "text",
            emb,
            self.engine.text_descriptors(texts),
            [getattr(t, "request", "") or current_request_id() for t in texts],
        )
        return emb.tolist()

    @bentoml.api
    async def zero_shot(
        self, image: ImageFile, labels: LabelList | None = None, prompts: LabelList | None = None
    ) -> Annotated[dict[str, Any], JSON]:
        """An image and either candidate ``labels`` (each expanded with the evaluation's prompt
        templates and ensembled) or ready-made ``prompts`` (one class each) → probabilities."""
        if (labels is None) == (prompts is None):
            raise InvalidArgument("send exactly one of 'labels' (class names) or 'prompts' (sentences)")
        classes = [str(c) for c in (labels if labels is not None else prompts)]
        class_emb = self.engine.cached_class_embeddings(classes, labels is not None)
        if class_emb is None:  # not seen lately: encode the label set off the event loop
            class_emb = await anyio.to_thread.run_sync(
                self.engine.class_embeddings, classes, labels is not None
            )
        emb, prepared = await self.image_batcher(image)
        probs = self.engine.probabilities(emb[None], class_emb)[0]
        self._log(
            "zero_shot", "image", emb[None], [prepared.descriptors], [image.request or current_request_id()]
        )
        best = int(np.argmax(probs))
        return {
            "classes": classes,
            "probabilities": [float(p) for p in probs],
            "top": classes[best],
            "top_probability": float(probs[best]),
            "mode": "labels" if labels is not None else "prompts",
            "model_version": self.engine.version,
        }

    @bentoml.api
    def ground(self, image: ImageFile, phrase: Text) -> Annotated[dict[str, Any], JSON]:
        """Where in the image is ``phrase``? → box ``[x0, y0, x1, y1]`` normalised to the upload,
        its score (cosine of the box's region embedding with the phrase; higher is better), and the
        heatmap (cosine per patch cell of the model's letterboxed square input, rows top to bottom)."""
        prepared = self.engine.prepare(image)
        out = self.engine.ground(prepared, phrase)
        self._log(
            "ground",
            "text",
            out["text_embedding"][None],
            self.engine.text_descriptors([phrase]),
            [image.request or current_request_id()],
        )
        heat = out["heatmap"]
        return {
            "box": out["box"],
            "score": out["score"],
            "heatmap": heat.round(6).tolist(),
            "grid": list(heat.shape),
            "box_model_input": out["box_model"],
            "warning": out["warning"],
            "location_check": check_location_words(phrase, out["box"]),
            "model_version": self.engine.version,
        }

    @bentoml.api
    def preview(self, image: ImageFile) -> Annotated[dict[str, Any], JSON]:
        """The image as the model sees it (letterboxed to its square input, DICOM windowed) as a PNG
        data URL, and how the upload was fitted (``fit``; null when it was already square at size).
        Nothing is encoded, logged or kept."""
        prepared = self.engine.prepare(image)
        return {
            **preview_payload(prepared.pixels, prepared.fit, self.engine.image_size),
            "width": prepared.descriptors["width"],
            "height": prepared.descriptors["height"],
            "format": prepared.descriptors["format"],
        }

    @bentoml.api
    def encode_regions(self, image: ImageFile, boxes: BoxList) -> Annotated[dict[str, Any], JSON]:
        """An image and boxes ``[x0, y0, x1, y1]`` normalised to it → one region embedding per box."""
        prepared = self.engine.prepare(image)
        try:
            emb = self.engine.encode_regions(prepared, boxes)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self._log(
            "encode_regions",
            "region",
            emb,
            [{"box": b} for b in boxes],
            [image.request or current_request_id()] * len(boxes),
        )
        return {"embeddings": emb.tolist(), "boxes": boxes, "model_version": self.engine.version}

    @bentoml.api
    async def retrieve(
        self,
        text: Text | None = None,
        image: ImageFile = None,  # type: ignore[assignment]
        top_k: Annotated[int, Field(ge=1, le=SETTINGS.max_top_k)] = 5,
        target: Literal["image", "report"] = "image",
    ) -> Annotated[dict[str, Any], JSON]:
        """A ``text`` or an ``image`` → the ``top_k`` most similar ``target`` items of the index
        (``image``: the split's images; ``report``: their reports). Items carry ids, modality and
        labels only."""
        if (text is None) == (image is None):
            raise InvalidArgument("send exactly one of 'text' or 'image'")
        index = self.engine.index
        if index is None:
            message = "no retrieval index is loaded (package the model, or set REGIONMED_INDEX_DIR)"
            note_unavailable(message, "no_index")
            raise ServiceUnavailable(message)
        if text is not None:
            query = (await anyio.to_thread.run_sync(self.engine.encode_texts, [text]))[0]
            self._log(
                "retrieve", "text", query[None], self.engine.text_descriptors([text]), [current_request_id()]
            )
        else:
            query, prepared = await self.image_batcher(image)
            self._log(
                "retrieve",
                "image",
                query[None],
                [prepared.descriptors],
                [image.request or current_request_id()],
            )
        results = index.search(query, top_k, target)
        return {
            "query": "text" if text is not None else "image",
            "target": target,
            "results": results,
            "index": {
                "split": index.split,
                "n_items": index.count(target),
                "search": index.search_mode(target),  # hnsw (approximate: docs/scaling.md) or exact
                "model_version": index.model_version,
            },
            "model_version": self.engine.version,
        }

    @bentoml.api
    def metadata(self) -> Annotated[dict[str, Any], JSON]:
        """The served model: version, origin, metrics, gate decision, provenance; limits; the index."""
        info, e = self.engine.info, self.engine
        index = e.index
        return {
            "service": SERVICE_NAME,
            "model": {
                "version": e.version,
                "origin": self.source.origin,
                "device": str(e.device),
                "global_only": e.global_only,
                "embed_dim": e.embed_dim,
                "image_size": e.image_size,
                "channels": e.channels,
                "max_text_tokens": e.max_length,
            },
            "metrics": info.get("metrics", {}),
            "gate": info.get("gate", {}),
            "provenance": {k: info[k] for k in ("git_rev", "git_dirty", "dvc", "packaged_at") if k in info},
            "index": None
            if index is None
            else {
                "split": index.split,
                "n_images": index.count("image"),
                "n_reports": index.count("report"),
                "kinds": list(ITEM_KINDS),
            },
            "limits": {
                k: getattr(SETTINGS, k)
                for k in (
                    "max_upload_bytes",
                    "max_image_pixels",
                    "max_request_pixels",
                    "max_images_per_call",
                    "max_texts_per_call",
                    "max_text_chars",
                    "max_boxes_per_call",
                    "max_top_k",
                )
            },
            "batching": BATCH.model_dump(),
            "embedding_log": None
            if self.embedding_log is None
            else {
                "paused": self.embedding_log.paused,  # its disk is full: rows are dropped and counted
                "rows_written": self.embedding_log.records_written,
                "rows_dropped": self.embedding_log.rows_dropped,
            },
            "api_key_required": _api_key() is not None,
            "labels": label_vocabulary(index),
            "drift": drift_status(SETTINGS.drift_summary_file),
            "demo_page": f"{DEMO_PATH}/" if SETTINGS.demo_page else None,
        }


ROUTES = [f"/{name}" for name in RegionMedService.apis] + ["/", "/docs.json", "/schema.json"]
guard_metric_labels([*ROUTES, "/livez", "/readyz", "/healthz"])
if SETTINGS.demo_page:
    RegionMedService.mount_asgi_app(demo_app(), path=DEMO_PATH, name="demo")
# Added first, so it wraps the request guard: the guard's own 401/413 answers get the headers too.
RegionMedService.add_asgi_middleware(
    SecurityHeadersMiddleware, page_prefixes=(DEMO_PATH,) if SETTINGS.demo_page else ()
)
RegionMedService.add_asgi_middleware(
    RequestGuardMiddleware,
    max_body_bytes=SETTINGS.max_upload_bytes,
    api_key_env=SETTINGS.api_key_env,
    open_prefixes=(DEMO_PATH,) if SETTINGS.demo_page else (),
    log_paths=ROUTES,
)
