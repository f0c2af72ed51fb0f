"""The RegionMed embedding service (BentoML 1.4, new-style service class).

Serve from the repo (``models/regionmed`` after ``dvc repro``, or ``$REGIONMED_MODEL_DIR``)::

    bentoml serve regionmed.serving.service:RegionMedService

or a built Bento (``bentoml serve regionmed_service:latest``); docs/serving.md has the calls.

APIs (all POST, JSON or multipart): ``encode_image`` and ``encode_text`` (adaptive batching),
``zero_shot``, ``ground``, ``encode_regions``, ``retrieve``, ``metadata``; health: GET ``/livez``,
``/readyz``. Every input is checked before any work: a bad request is a 4xx whose body says what
was wrong (pydantic's ``detail`` for a malformed field, ``error`` otherwise), never a 500.

How the checks sit in BentoML's request path: uploads and texts are validated by pydantic
validators while the request is parsed, i.e. per request and *before* adaptive batching, so one
bad request in a batch cannot fail the others. The body-size limit and the API key are an ASGI
middleware (``middleware.py``). ``zero_shot`` and ``retrieve`` batch their image encodes through
an in-process batcher with its own model thread (:class:`ImageBatcher`; a public batchable API
takes one argument, these take an image and texts).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePath, PurePosixPath
from typing import Annotated, Any, Literal

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import BadInput, InvalidArgument, ServiceUnavailable
from bentoml.validators import ContentType
from pydantic import AfterValidator, Field
from pydantic_core import core_schema
from starlette.datastructures import UploadFile

from regionmed.corpus.images import ImageError
from regionmed.env import configure_environment
from regionmed.monitoring.embedding_log import EmbeddingLogWriter, hash_request_id
from regionmed.serving.batcher import ImageBatcher
from regionmed.serving.engine import DecodedImage, Engine, decode_upload
from regionmed.serving.index import ITEM_KINDS, RetrievalIndex
from regionmed.serving.middleware import RequestGuardMiddleware, current_request_id
from regionmed.serving.settings import ENV_LOG_DIR, ENV_LOG_SALT, load_serving_params, resolve_model

configure_environment()
logger = logging.getLogger("regionmed.serving")

SETTINGS = load_serving_params()
SERVICE_NAME = "regionmed_service"
BATCH = SETTINGS.batching


# ---- input validation (runs while BentoML parses a request) -----------------------------------------
def _upload_bytes(obj: Any) -> bytes:
    """The bytes of an uploaded file (or, in-process, of a path or bytes); a ``ValueError`` is a 400."""
    limit = SETTINGS.max_upload_bytes
    try:
        if isinstance(obj, UploadFile):
            if obj.size is not None and obj.size > limit:
                raise ValueError(f"image file of {obj.size} bytes is over the limit of {limit}")
            obj.file.seek(0)
            data = obj.file.read(limit + 1)
        elif isinstance(obj, PurePath):
            size = Path(obj).stat().st_size
            if size > limit:
                raise ValueError(f"image file of {size} bytes is over the limit of {limit}")
            data = Path(obj).read_bytes()
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            data = bytes(obj)
        else:
            raise ValueError(f"an image must be an uploaded file (a multipart/form-data part), not "  # noqa: TRY004  (pydantic makes a ValueError a 400; a TypeError would be a 500)
                             f"{type(obj).__name__}")
    except OSError as exc:
        raise ValueError(f"the upload could not be read ({type(exc).__name__})") from None
    if len(data) > limit:
        raise ValueError(f"image file of {len(data)} bytes is over the limit of {limit}")
    return data


def _upload(obj: Any) -> DecodedImage:
    """An uploaded file → decoded pixels; a ``ValueError`` here is a 400 naming the problem."""
    if isinstance(obj, DecodedImage):
        return obj  # already decoded (an in-process ``.local`` call)
    data = _upload_bytes(obj)
    try:
        decoded = decode_upload(data, SETTINGS.max_image_pixels)
    except ImageError as exc:
        raise ValueError(f"{exc} [{exc.category}]") from None
    decoded.request = current_request_id()
    return decoded


class RequestText(str):
    """A validated text that remembers its request (for the monitoring log of a batched call)."""

    request: str = ""


def _texts(texts: list[str], what: str = "texts") -> list[RequestText]:
    if not texts:
        raise ValueError(f"no {what}: send at least one")
    if len(texts) > SETTINGS.max_texts_per_call:
        raise ValueError(f"{len(texts)} {what} is over the limit of {SETTINGS.max_texts_per_call} per call")
    request, out = current_request_id(), []
    for i, text in enumerate(texts):
        _text(text, f"{what}[{i}]")
        t = RequestText(text)
        t.request = request
        out.append(t)
    return out


def _text(text: str, what: str = "text") -> str:
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if len(text) > SETTINGS.max_text_chars:
        raise ValueError(f"{what} has {len(text)} characters, over the limit of {SETTINGS.max_text_chars}")
    return text


def _labels(labels: list[str]) -> list[RequestText]:
    out = _texts(labels, "labels")
    if len(set(out)) != len(out):
        raise ValueError("labels must be distinct")
    return out


def _images(images: list) -> list:
    if not images:
        raise ValueError("no images: send at least one")
    if len(images) > SETTINGS.max_images_per_call:
        raise ValueError(f"{len(images)} images is over the limit of {SETTINGS.max_images_per_call} per call")
    return images


def _boxes(boxes: list[list[float]]) -> list[list[float]]:
    if not boxes:
        raise ValueError("no boxes: send at least one [x0, y0, x1, y1]")
    if len(boxes) > SETTINGS.max_boxes_per_call:
        raise ValueError(f"{len(boxes)} boxes is over the limit of {SETTINGS.max_boxes_per_call} per call")
    for i, b in enumerate(boxes):
        if len(b) != 4:
            raise ValueError(f"boxes[{i}] has {len(b)} numbers, expected 4: [x0, y0, x1, y1]")
        if not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in b):
            raise ValueError(f"boxes[{i}] = {b}: coordinates must be normalised to 0..1 of the image")
        if not (b[0] < b[2] and b[1] < b[3]):
            raise ValueError(f"boxes[{i}] = {b}: need x0 < x1 and y0 < y1")
    return boxes


class UploadedImage(PurePosixPath):
    """The type of an image field: a file part of a multipart request (PNG, JPEG or DICOM; any
    content type, the format is sniffed), validated into a :class:`DecodedImage`.

    BentoML treats any ``PurePath`` subclass as a file field (multipart, ``"type": "file"`` in the
    schema its clients read) but gives only the stdlib path classes its own schema, which writes
    every upload to a temp file on disk (and deletes it after the response) on the event loop.
    This one decodes the upload's bytes straight from the parsed form: no temp file, no second read.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_upload, core_schema.any_schema())

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: Any) -> dict[str, Any]:
        value = handler(schema)
        if handler.mode == "validation":  # as BentoML's FileSchema
            value.update({"type": "file", "format": "binary"})
        else:
            value.update({"type": "string", "format": "binary"})
        return value


ImageFile = UploadedImage
ImageList = Annotated[list[ImageFile], AfterValidator(_images)]
TextList = Annotated[list[str], AfterValidator(_texts)]
LabelList = Annotated[list[str], AfterValidator(_labels)]
Text = Annotated[str, AfterValidator(_text)]
BoxList = Annotated[list[list[float]], AfterValidator(_boxes)]
# Every API answers JSON. Said here, BentoML does not derive the media type again from the output's
# JSON schema for every response (it builds a pydantic TypeAdapter each time).
JSON = ContentType("application/json")


# ---- BentoML's multipart parser, minus URL fetching ---------------------------------------------------
def _harden_multipart() -> None:
    """BentoML downloads a URL given as text in a file field (a server-side request on the client's
    behalf), and a malformed multipart body there is a 500. Register a parser that accepts only
    uploaded files and turns a malformed body into a 400."""
    from _bentoml_impl import serde as bento_serde
    from pydantic import ValidationError
    from starlette.datastructures import UploadFile

    base = bento_serde.ALL_SERDE["multipart/form-data"]
    if getattr(base, "_regionmed_hardened", False):
        return

    class UploadOnlyMultipartSerde(base):  # type: ignore[misc, valid-type]
        _regionmed_hardened = True

        @staticmethod
        async def ensure_file(obj):
            if isinstance(obj, UploadFile):
                return obj
            raise BadInput("a file field must be an uploaded file (a multipart part with a filename); "
                           "URLs and text are not accepted")

        async def parse_request(self, request, cls):
            try:
                return await super().parse_request(request, cls)
            except (ValidationError, bentoml.exceptions.BentoMLException):
                raise
            except Exception as exc:  # noqa: BLE001  (anything else the parser raises is the body's fault)
                raise BadInput(f"malformed multipart/form-data body ({type(exc).__name__})") from None

    bento_serde.ALL_SERDE["multipart/form-data"] = UploadOnlyMultipartSerde  # type: ignore[index]
    bento_serde.ALL_SERDE["application/x-www-form-urlencoded"] = UploadOnlyMultipartSerde  # type: ignore[index]


_harden_multipart()


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
            index = RetrievalIndex.load(source.index_dir)
        self.source = source
        self.engine = Engine.from_dir(source.path, version=source.version, info=source.info, index=index,
                                      device=SETTINGS.device)
        if index is not None and index.dim != self.engine.embed_dim:
            logger.warning("retrieval index at %s has dim %d, the model %d: retrieval disabled",
                           source.index_dir, index.dim, self.engine.embed_dim)
            self.engine.index = None
        log = SETTINGS.embedding_log
        self.log_salt = os.environ.get(ENV_LOG_SALT, "")
        self.embedding_log = EmbeddingLogWriter(
            os.environ.get(ENV_LOG_DIR) or log.dir, log.rotate_bytes, log.rotate_seconds, log.keep_files,
        ) if log.enabled else None
        self.image_batcher = ImageBatcher(self.engine, BATCH.max_batch_size, BATCH.max_latency_ms)
        logger.info("serving %s (%s from %s); index: %s", self.engine.version, source.origin, source.path,
                    f"{index.count()} items" if self.engine.index is not None else "none")

    def __is_ready__(self) -> bool:
        return self.engine is not None

    @bentoml.on_shutdown
    def _close_log(self) -> None:
        self.image_batcher.close()
        if self.embedding_log is not None:
            self.embedding_log.close()

    # ---- logging ---------------------------------------------------------------------------------
    def _log(self, endpoint: str, kind: str, embeddings: np.ndarray, descriptors: list[dict],
             requests: list[str]) -> None:
        """One record per row; rows of one request go in one write."""
        if self.embedding_log is None or len(embeddings) == 0:
            return
        order: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            order.setdefault(r, []).append(i)
        for request, rows in order.items():
            self.embedding_log.log(endpoint=endpoint, model_version=self.engine.version,
                                   request=hash_request_id(request, self.log_salt), kind=kind,
                                   embeddings=embeddings[rows], descriptors=[descriptors[i] for i in rows])

    # ---- APIs ------------------------------------------------------------------------------------
    @bentoml.api(batchable=True, max_batch_size=BATCH.max_batch_size, max_latency_ms=BATCH.max_latency_ms)
    def encode_image(self, images: ImageList) -> Annotated[list[list[float]], JSON]:
        """Images (PNG, JPEG or DICOM) → L2-normalised image embeddings, one per image, in order."""
        prepared = [self.engine.prepare(d) for d in images]
        emb = self.engine.encode_images(prepared)
        self._log("encode_image", "image", emb, [p.descriptors for p in prepared],
                  [d.request or current_request_id() for d in images])
        return emb.tolist()

    @bentoml.api(batchable=True, max_batch_size=BATCH.max_batch_size, max_latency_ms=BATCH.max_latency_ms)
    def encode_text(self, texts: TextList) -> Annotated[list[list[float]], JSON]:
        """Texts → L2-normalised text embeddings, one per text, in order."""
        emb = self.engine.encode_texts(texts)
        self._log("encode_text", "text", emb, self.engine.text_descriptors(texts),
                  [getattr(t, "request", "") or current_request_id() for t in texts])
        return emb.tolist()

    @bentoml.api
    async def zero_shot(self, image: ImageFile, labels: LabelList | None = None,
                        prompts: LabelList | None = None) -> Annotated[dict[str, Any], JSON]:
        """An image and either candidate ``labels`` (each expanded with the evaluation's prompt
        templates and ensembled) or ready-made ``prompts`` (one class each) → probabilities."""
        if (labels is None) == (prompts is None):
            raise InvalidArgument("send exactly one of 'labels' (class names) or 'prompts' (sentences)")
        classes = [str(c) for c in (labels if labels is not None else prompts)]
        class_emb = self.engine.cached_class_embeddings(classes, labels is not None)
        if class_emb is None:  # not seen lately: encode the label set off the event loop
            class_emb = await anyio.to_thread.run_sync(self.engine.class_embeddings, classes, labels is not None)
        emb, prepared = await self.image_batcher(image)
        probs = self.engine.probabilities(emb[None], class_emb)[0]
        self._log("zero_shot", "image", emb[None], [prepared.descriptors], [image.request or current_request_id()])
        best = int(np.argmax(probs))
        return {"classes": classes, "probabilities": [float(p) for p in probs], "top": classes[best],
                "top_probability": float(probs[best]), "mode": "labels" if labels is not None else "prompts",
                "model_version": self.engine.version}

    @bentoml.api
    def ground(self, image: ImageFile, phrase: Text) -> Annotated[dict[str, Any], JSON]:
        """Where in the image is ``phrase``? → box ``[x0, y0, x1, y1]`` normalised to the upload,
        its score (cosine of the box's region embedding with the phrase; higher is better), and the
        heatmap (cosine per patch cell of the model's letterboxed square input, rows top to bottom)."""
        prepared = self.engine.prepare(image)
        out = self.engine.ground(prepared, phrase)
        self._log("ground", "text", out["text_embedding"][None], self.engine.text_descriptors([phrase]),
                  [image.request or current_request_id()])
        heat = out["heatmap"]
        return {"box": out["box"], "score": out["score"], "heatmap": heat.round(6).tolist(),
                "grid": list(heat.shape), "box_model_input": out["box_model"], "model_version": self.engine.version}

    @bentoml.api
    def encode_regions(self, image: ImageFile, boxes: BoxList) -> Annotated[dict[str, Any], JSON]:
        """An image and boxes ``[x0, y0, x1, y1]`` normalised to it → one region embedding per box."""
        prepared = self.engine.prepare(image)
        try:
            emb = self.engine.encode_regions(prepared, boxes)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self._log("encode_regions", "region", emb, [{"box": b} for b in boxes],
                  [image.request or current_request_id()] * len(boxes))
        return {"embeddings": emb.tolist(), "boxes": boxes, "model_version": self.engine.version}

    @bentoml.api
    async def retrieve(self, text: Text | None = None, image: ImageFile = None,  # type: ignore[assignment]
                       top_k: Annotated[int, Field(ge=1, le=SETTINGS.max_top_k)] = 5,
                       target: Literal["image", "report"] = "image") -> Annotated[dict[str, Any], JSON]:
        """A ``text`` or an ``image`` → the ``top_k`` most similar ``target`` items of the index
        (``image``: the split's images; ``report``: their reports). Items carry ids, modality and
        labels only."""
        if (text is None) == (image is None):
            raise InvalidArgument("send exactly one of 'text' or 'image'")
        index = self.engine.index
        if index is None:
            raise ServiceUnavailable("no retrieval index is loaded (package the model, or set REGIONMED_INDEX_DIR)")
        if text is not None:
            query = (await anyio.to_thread.run_sync(self.engine.encode_texts, [text]))[0]
            self._log("retrieve", "text", query[None], self.engine.text_descriptors([text]), [current_request_id()])
        else:
            query, prepared = await self.image_batcher(image)
            self._log("retrieve", "image", query[None], [prepared.descriptors], [image.request or current_request_id()])
        results = index.search(query, top_k, target)
        return {"query": "text" if text is not None else "image", "target": target, "results": results,
                "index": {"split": index.split, "n_items": index.count(target), "model_version": index.model_version},
                "model_version": self.engine.version}

    @bentoml.api
    def metadata(self) -> Annotated[dict[str, Any], JSON]:
        """The served model: version, origin, metrics, gate decision, provenance; limits; the index."""
        info, e = self.engine.info, self.engine
        index = e.index
        return {
            "service": SERVICE_NAME,
            "model": {"version": e.version, "origin": self.source.origin, "device": str(e.device),
                      "global_only": e.global_only,
                      "embed_dim": e.embed_dim, "image_size": e.image_size, "channels": e.channels,
                      "max_text_tokens": e.max_length},
            "metrics": info.get("metrics", {}),
            "gate": info.get("gate", {}),
            "provenance": {k: info[k] for k in ("git_rev", "git_dirty", "dvc", "packaged_at") if k in info},
            "index": None if index is None else {"split": index.split, "n_images": index.count("image"),
                                                 "n_reports": index.count("report"), "kinds": list(ITEM_KINDS)},
            "limits": {k: getattr(SETTINGS, k) for k in ("max_upload_bytes", "max_image_pixels", "max_images_per_call",
                                                         "max_texts_per_call", "max_text_chars", "max_boxes_per_call",
                                                         "max_top_k")},
            "batching": BATCH.model_dump(),
            "api_key_required": _api_key() is not None,
        }


RegionMedService.add_asgi_middleware(RequestGuardMiddleware, max_body_bytes=SETTINGS.max_upload_bytes,
                                     api_key_env=SETTINGS.api_key_env)
