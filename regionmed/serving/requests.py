"""What a request may hold, checked while BentoML parses it: uploads, texts, labels, boxes.

Every check is a pydantic validator on an API's argument type, so it runs per request and
*before* adaptive batching (one bad request in a batch cannot fail the others), and a
``ValueError`` becomes a 400 whose ``detail`` names the field. Limits come from the ``serving:``
section of the params file (``SETTINGS``, read once here for the service). Also BentoML's
multipart parser, hardened: uploaded files only, a malformed body is a 400.
"""

from __future__ import annotations

import contextvars
from http import HTTPStatus
from pathlib import Path, PurePath, PurePosixPath
from typing import Annotated, Any

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import BadInput, BentoMLException
from bentoml.validators import ContentType
from pydantic import AfterValidator
from pydantic_core import core_schema
from starlette.datastructures import UploadFile

from regionmed.corpus.images import ImageError, header_size
from regionmed.inference.uploads import DecodedImage, decode_upload
from regionmed.serving.middleware import current_request_id
from regionmed.serving.settings import load_serving_params

SETTINGS = load_serving_params()
# The longer side uploads are reduced to while decoding (the model's input size; set by the service
# once its model is loaded). None: decoded at full size.
DECODE_SIDE: list[int | None] = [None]
# Decoded pixels of the request being parsed so far (its image headers), against max_request_pixels.
_request_pixels: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "regionmed_request_pixels", default=None
)
_decode_limiter: list[anyio.CapacityLimiter] = []


def set_decode_side(side: int | None) -> None:
    DECODE_SIDE[0] = side


class UploadFailure:
    """An upload that could not be decoded: the validator turns it into a 400 naming its field."""

    def __init__(self, message: str):
        self.message = message


def _decode(data: bytes) -> DecodedImage | UploadFailure:
    try:
        return decode_upload(data, SETTINGS.max_image_pixels, reduce_to=DECODE_SIDE[0])
    except ImageError as exc:
        return UploadFailure(f"{exc} [{exc.category}]")


async def decode_off_loop(upload: UploadFile) -> DecodedImage | UploadFailure:
    """An uploaded file part → decoded pixels, in a worker thread (at most ``decode_threads`` at once
    per worker), after its header's pixel count has been added to the request's budget
    (``max_request_pixels``; over it: 413 before anything is decoded)."""
    try:
        data = _upload_bytes(upload)
    except ValueError as exc:
        return UploadFailure(str(exc))
    size = header_size(data) if data else None
    used = _request_pixels.get()
    # an image over max_image_pixels is refused by the decoder from its header, with that limit's name
    if size is not None and used is not None and size[0] * size[1] <= SETTINGS.max_image_pixels:
        used[0] += size[0] * size[1]
        if used[0] > SETTINGS.max_request_pixels:
            raise BentoMLException(
                f"the images of this request hold more than {SETTINGS.max_request_pixels} pixels together "
                f"(serving.max_request_pixels); send fewer or smaller images per request [request_too_large]",
                error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
    if not _decode_limiter:
        _decode_limiter.append(anyio.CapacityLimiter(SETTINGS.decode_threads))
    decoded = await anyio.to_thread.run_sync(_decode, data, limiter=_decode_limiter[0])
    if isinstance(decoded, DecodedImage):
        decoded.request = current_request_id()
    return decoded


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
            # a ValueError, not a TypeError: pydantic makes a ValueError a 400; a TypeError would be a 500
            raise ValueError(
                f"an image must be an uploaded file (a multipart/form-data part), not {type(obj).__name__}"
            )
    except OSError as exc:
        raise ValueError(f"the upload could not be read ({type(exc).__name__})") from None
    if len(data) > limit:
        raise ValueError(f"image file of {len(data)} bytes is over the limit of {limit}")
    return data


def _upload(obj: Any) -> DecodedImage:
    """An uploaded file → decoded pixels; a ``ValueError`` here is a 400 naming the problem.

    Over HTTP the multipart parser has decoded it already, off the event loop (``decode_off_loop``);
    here only what it found wrong becomes the field's error."""
    if isinstance(obj, UploadFailure):
        raise ValueError(obj.message)  # pydantic makes a ValueError a 400 naming the field
    if isinstance(obj, DecodedImage):
        return obj  # decoded by the parser, or an in-process ``.local`` call
    decoded = _decode(_upload_bytes(obj))
    if isinstance(decoded, UploadFailure):
        raise ValueError(decoded.message)  # (as above)
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

    base = bento_serde.ALL_SERDE["multipart/form-data"]
    if getattr(base, "_regionmed_hardened", False):
        return

    class UploadOnlyMultipartSerde(base):  # type: ignore[misc, valid-type]
        _regionmed_hardened = True

        @staticmethod
        async def ensure_file(obj):
            if isinstance(obj, UploadFile):
                return await decode_off_loop(obj)
            raise BadInput(
                "a file field must be an uploaded file (a multipart part with a filename); "
                "URLs and text are not accepted"
            )

        async def parse_request(self, request, cls):
            budget = _request_pixels.set([0])  # per request (a connection's requests share one task)
            try:
                return await super().parse_request(request, cls)
            except (ValidationError, bentoml.exceptions.BentoMLException):
                raise
            except Exception as exc:  # anything else the parser raises is the body's fault
                raise BadInput(f"malformed multipart/form-data body ({type(exc).__name__})") from None
            finally:
                _request_pixels.reset(budget)

    bento_serde.ALL_SERDE["multipart/form-data"] = UploadOnlyMultipartSerde  # type: ignore[index]
    bento_serde.ALL_SERDE["application/x-www-form-urlencoded"] = UploadOnlyMultipartSerde  # type: ignore[index]


_harden_multipart()
