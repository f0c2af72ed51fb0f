"""What the server's own log may say: no part of any request, ever.

BentoML logs every refused request at ERROR with a traceback, and pydantic's message in that
traceback quotes a cut-down copy of the input (``input_value='...'``): the start and end of each
text, label or phrase, of an invalid JSON body, of an upload's file name. Its access log also
carries the request's content type (a multipart boundary is the client's text). So the service
puts a filter on every handler of the worker's logging:

* BentoML's ``Exception on <path>`` record of a refused request (a pydantic ``ValidationError``, a
  ``BentoMLException`` below 500) or of a client that went away is dropped: the request guard
  (``middleware.py``) logs one line for it instead (endpoint, status, error code, request id, sizes);
* every other traceback is kept, but with each exception's message withheld (a message may quote
  data), only the frames (code) and the exception types;
* BentoML's own access-log lines are dropped (the request guard writes the access line).

Prometheus metrics are files the worker writes too, and BentoML labels them with the request's
path: a path that is no route of the service is labelled ``<other>`` (``guard_metric_labels``).

Installed once per worker, when the service module is imported (BentoML has configured logging
by then).
"""

from __future__ import annotations

import logging
import traceback

ACCESS_LOGGER = "regionmed.serving.access"
BENTOML_ACCESS_LOGGER = "bentoml.access"
BENTOML_EXCEPTION_LOGGERS = frozenset({"bentoml._internal.server.http_app", "_bentoml_impl.server.app"})
WITHHELD = "<message withheld: it may quote request data>"
# Loggers whose handlers get the filter: the worker's handlers hang off these (BentoML's server
# logging config gives them one shared stream handler).
_HANDLER_OWNERS = ("", "bentoml", "uvicorn", "uvicorn.error", "uvicorn.access", "circus", "regionmed")


def is_client_side(exc: BaseException | None) -> bool:
    """A refused request or a vanished client (a 4xx or a disconnect, not a server fault)."""
    if exc is None:
        return False
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError
    from starlette.requests import ClientDisconnect

    if isinstance(exc, (ValidationError, ClientDisconnect)):
        return True
    if isinstance(exc, BentoMLException):
        return int(exc.error_code) < 500
    return False


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and of its chained causes: frames and exception types, no messages."""
    te: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    chain = []
    while te is not None and len(chain) < 16:
        chain.append(te)
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    lines: list[str] = []
    for i, part in enumerate(reversed(chain)):
        if i:
            lines.append("The above exception led to:")
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in part.stack.format())
        name = getattr(part, "exc_type_str", None) or getattr(part.exc_type, "__qualname__", "Exception")
        lines.append(f"{name}: {WITHHELD}")
    return "\n".join(lines)


class RequestDataFilter(logging.Filter):
    """Drops or redacts the records that could carry request data (module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == BENTOML_ACCESS_LOGGER:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if record.name in BENTOML_EXCEPTION_LOGGERS and is_client_side(exc):
                return False
            record.exc_text = redacted_traceback(exc)
            record.exc_info = None
        elif record.exc_text and WITHHELD not in record.exc_text:
            record.exc_text = f"<traceback withheld: {WITHHELD}>"
        return True


def install_request_data_filter() -> None:
    """Put :class:`RequestDataFilter` on every handler of the worker's loggers (idempotent)."""
    handlers: set[logging.Handler] = set()
    for name in _HANDLER_OWNERS:
        handlers.update(logging.getLogger(name).handlers)
    for handler in handlers:
        if not any(isinstance(f, RequestDataFilter) for f in handler.filters):
            handler.addFilter(RequestDataFilter())
    # the request guard's access lines are INFO: make sure they get through a WARNING root
    access = logging.getLogger(ACCESS_LOGGER)
    if access.level == logging.NOTSET:
        access.setLevel(logging.INFO)


OTHER_PATH = "<other>"
_ORIGINAL_PATH = "regionmed.original_path"


def guard_metric_labels(known_paths) -> None:
    """Make BentoML's traffic-metrics middleware label any path outside ``known_paths`` as
    ``<other>`` (it uses the raw path: client text, and a label per distinct path). The inner app
    still gets the request's own path, so routing is unchanged. Call before the app is built."""
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    paths = frozenset(known_paths)
    if getattr(base, "_regionmed_guarded", False):
        base.known_paths = paths
        return

    class LabelGuardedTrafficMetrics(base):  # type: ignore[misc, valid-type]
        _regionmed_guarded = True
        known_paths = paths

        def __init__(self, app, *args, **kwargs):
            async def restore_path(scope, receive, send):
                if _ORIGINAL_PATH in scope:
                    scope = {k: v for k, v in scope.items() if k != _ORIGINAL_PATH}
                    scope["path"] = scope.pop("_regionmed_path")
                await app(scope, receive, send)

            super().__init__(restore_path, *args, **kwargs)

        async def __call__(self, scope, receive, send):
            path = scope.get("path", "")
            if scope["type"].startswith("http") and path not in self.known_paths and path != "/metrics":
                scope = {**scope, "path": OTHER_PATH, "_regionmed_path": path, _ORIGINAL_PATH: True}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = LabelGuardedTrafficMetrics
