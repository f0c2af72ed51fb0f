"""ASGI middlewares of the service: request ids, the API key, the body-size limit, the access log.

BentoML 1.4 has no working request-size setting, so the limit is enforced here: a declared
``Content-Length`` over the limit is answered 413 at once; a chunked body is buffered up to the
limit and answered 413 as soon as it passes it (never by raising inside ``receive``, which would
be a 500).

The access log is one line per request written here (BentoML's own is dropped, ``logs.py``): the
endpoint (a known route, else ``<other>``), status, an error code, the request id and byte counts;
never a header, a query string or any of the body. A client that goes away before the answer is
logged as ``disconnected``, not as the 500 BentoML then answers to nobody.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import os
import re
import time
import uuid

from regionmed.serving.logs import ACCESS_LOGGER

REQUEST_ID_HEADER = "x-request-id"
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})  # health: no key needed
OPEN_METHODS = frozenset({"GET", "HEAD"})  # the only methods an open prefix (static files) is open to
MAX_REQUEST_ID_CHARS = 128
QUIET_PATHS = OPEN_PATHS | {"/metrics"}  # polled: not in the access log
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "server_error",
    503: "unavailable",
}
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_CATEGORY = re.compile(r"\[([a-z][a-z0-9_]{0,40})\]$")  # the image checks end their message with [category]
_REQUEST_ID = re.compile(r"[^A-Za-z0-9._:-]")
access_log = logging.getLogger(ACCESS_LOGGER)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("regionmed_request_id", default="")
# What the request guard has seen of the request being served (status, sizes, why it was unavailable).
request_state_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "regionmed_request_state", default=None
)
BENTOML_GENERIC_5XX = "An unexpected error has occurred, please check the server log."
OVERLOADED = (
    "the service is overloaded: too many requests are waiting (a request that waits longer than "
    "batching.max_latency_ms is shed); retry later"
)
RETRY_AFTER_S = b"1"


def note_unavailable(message: str, code: str = "overloaded") -> None:
    """Say why this request gets a 503: BentoML answers every 5xx with one generic sentence, and the
    request guard puts this one (and ``code``) in the body instead."""
    state = request_state_var.get()
    if state is not None:
        state["unavailable"], state["code"] = message, code


def current_request_id() -> str:
    """The id of the request being served (the client's ``X-Request-ID`` or a generated one)."""
    return request_id_var.get() or uuid.uuid4().hex


async def _send_json(
    send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


class RequestGuardMiddleware:
    """Request id (set in a context variable, echoed in ``X-Request-ID``), API key, body size,
    access log.

    ``api_key_env``: the environment variable holding the key (read per request). When it is set
    and not empty, every path but the health checks needs ``Authorization: Bearer <key>`` or
    ``X-API-Key: <key>`` (compared in constant time); else 401. ``open_prefixes``: path prefixes
    whose GET/HEAD requests need no key either (the demo page's static files: the page must load to
    ask for the key; the APIs it calls stay guarded). ``log_paths``: the routes the access log names
    (a path under an open prefix is logged as ``<prefix>/*``, anything else as ``<other>``: a path is
    the client's text).
    """

    def __init__(
        self,
        app,
        max_body_bytes: int,
        api_key_env: str | None = None,
        open_prefixes: tuple[str, ...] = (),
        log_paths=(),
    ):
        self.app, self.max_body_bytes, self.api_key_env = app, int(max_body_bytes), api_key_env
        self.open_prefixes = tuple(p.rstrip("/") for p in open_prefixes)
        self.log_paths = frozenset(log_paths) | QUIET_PATHS

    def _is_open_static(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.open_prefixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_id = (_header(scope, REQUEST_ID_HEADER.encode()) or b"").decode("latin-1").strip()
        request_id = raw_id[:MAX_REQUEST_ID_CHARS] if raw_id else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1", "replace"))
        seen = {"status": 0, "code": "", "in": 0, "out": 0, "done": False, "gone": False}
        state_token = request_state_var.set(seen)
        started = time.perf_counter()

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.disconnect":
                seen["gone"] = not seen["done"]
            else:
                seen["in"] += len(message.get("body", b""))
            return message

        error_start: dict | None = None
        error_body: list[bytes] = []

        async def send_with_id(message):
            nonlocal error_start
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER.encode()
                ]
                message = {**message, "headers": [*headers, id_header]}
                if (400 <= message["status"] < 500 or message["status"] == 503) and _is_json(
                    message["headers"]
                ):
                    error_start = message  # hold it: the body is rewritten to one shape
                    return
            elif message["type"] == "http.response.body" and error_start is not None:
                error_body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                if error_start["status"] == 503:
                    body, code = _unavailable_body(seen), seen["code"] or "overloaded"
                else:
                    body, code = _normalise_error(b"".join(error_body))
                seen["code"] = seen["code"] or code
                headers = [h for h in error_start["headers"] if h[0].lower() != b"content-length"]
                if error_start["status"] == 503 and seen["code"] == "overloaded":
                    headers.append((b"retry-after", RETRY_AFTER_S))
                await send(
                    {**error_start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
                )
                error_start = None
                message = {"type": "http.response.body", "body": body}
            if message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
                seen["done"] = seen["done"] or not message.get("more_body", False)
            await send(message)

        try:
            return await self._guard(scope, counted_receive, send_with_id, seen)
        finally:
            request_id_var.reset(token)
            request_state_var.reset(state_token)
            self._log_access(scope, seen, request_id, time.perf_counter() - started)

    async def _guard(self, scope, receive, send, seen):
        key = os.environ.get(self.api_key_env, "").encode() if self.api_key_env else b""
        path = scope.get("path", "")
        if (
            key
            and path not in OPEN_PATHS
            and not _authorised(scope, key)
            and not (scope.get("method") in OPEN_METHODS and self._is_open_static(path))
        ):
            seen["code"] = "unauthorized"
            return await _send_json(
                send,
                401,
                "missing or wrong API key (Authorization: Bearer <key>)",
                [(b"www-authenticate", b"Bearer")],
            )
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                seen["code"] = "bad_content_length"
                return await _send_json(send, 400, "Content-Length is not a number")
            if declared > self.max_body_bytes:
                seen["code"], seen["in"] = "body_too_large", declared
                return await _send_json(
                    send,
                    413,
                    f"request body of {declared} bytes is over the limit of {self.max_body_bytes} bytes",
                )
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        # no Content-Length (chunked): buffer up to the limit, then replay
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if seen["in"] > self.max_body_bytes:
                seen["code"] = "body_too_large"
                return await _send_json(
                    send, 413, f"request body is over the limit of {self.max_body_bytes} bytes"
                )
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _log_access(self, scope, seen: dict, request_id: str, seconds: float) -> None:
        """One line per request, nothing of the request in it but its route, sizes and id."""
        path = scope.get("path", "")
        if path in QUIET_PATHS and seen["status"] < 400:
            return
        prefix = next((p for p in self.open_prefixes if path == p or path.startswith(p + "/")), None)
        route = path if path in self.log_paths else f"{prefix}/*" if prefix else "<other>"
        method = scope.get("method", "")
        method = (
            method if method in ("GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH") else "<other>"
        )
        rid = _REQUEST_ID.sub("_", request_id)
        if seen["gone"]:
            level, outcome = logging.INFO, "disconnected (the client went away before the answer)"
        else:
            status = seen["status"]
            level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
            code = seen["code"] or (STATUS_CODES.get(status, "error") if status >= 400 else "ok")
            outcome = f"status={status} error={code}" if status >= 400 else f"status={status}"
        access_log.log(
            level,
            "%s %s %s request=%s in=%dB out=%dB %.1fms",
            method,
            route,
            outcome,
            rid,
            seen["in"],
            seen["out"],
            seconds * 1000,
        )


def _unavailable_body(seen: dict) -> bytes:
    """A 503's body: why (noted by the service), else BentoML's own shedding (its queue was full or
    a request waited past max_latency_ms), never its generic 'unexpected error' sentence."""
    return json.dumps(
        {"error": seen.get("unavailable") or OVERLOADED, "code": seen["code"] or "overloaded"}
    ).encode()


def _is_json(headers) -> bool:
    return any(
        k.lower() == b"content-type" and v.split(b";")[0].strip() == b"application/json" for k, v in headers
    )


def _normalise_error(body: bytes) -> tuple[bytes, str]:
    """Every 4xx body as ``{"error": "<what was wrong>", "detail": [...]}``, and an error code for
    the access log (pydantic's error types, or the image check's category; never the message).

    BentoML answers a pydantic error as ``{"error": "1 validation error for Input", "detail": [...]}``
    and its own exceptions as ``[{"error": ...}]``; the message is lifted out of ``detail`` so that
    ``error`` alone says what was wrong.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return body, ""
    if isinstance(doc, list) and len(doc) == 1 and isinstance(doc[0], dict):
        doc = doc[0]
    if not isinstance(doc, dict):
        return body, ""
    codes: list[str] = []
    detail = doc.get("detail")
    if isinstance(detail, list) and detail:
        parts = []
        for d in detail:
            if not isinstance(d, dict):
                continue
            d.pop("url", None)
            loc = "".join(
                f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                for i, p in enumerate(d.get("loc") or [])
            )
            msg = str(d.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
            category = _CATEGORY.search(msg)
            code = category.group(1) if category else str(d.get("type", ""))
            if _CODE.match(code) and code not in codes:
                codes.append(code)
        if parts:
            doc["error"] = "; ".join(parts)
    elif isinstance(doc.get("code"), str) and _CODE.match(doc["code"]):
        codes.append(doc["code"])
    return json.dumps(doc).encode(), ",".join(codes)


def _authorised(scope, key: bytes) -> bool:
    auth = _header(scope, b"authorization") or b""
    given = (
        auth[7:].strip() if auth[:7].lower() == b"bearer " else (_header(scope, b"x-api-key") or b"").strip()
    )
    return bool(given) and hmac.compare_digest(given, key)
