"""Security headers on every answer of the service: the demo page at ``/ui`` is where a user types
the API key, so no other site may frame it, feed it a script, or learn its URL.

One ASGI middleware, installed outside the request guard (``middleware.py``) so that the guard's
own answers (401, 413, 400) get the headers too, as do the APIs, the health checks, 404s and the
static files:

* ``Content-Security-Policy``: the demo page's policy (``PAGE_CSP``: its own scripts, styles and
  API calls only, the model-input preview as a ``data:`` image, no framing, no ``<base>``, forms
  post to itself) under the page's prefix; ``DOCS_CSP`` on BentoML's own API docs page (``/`` and
  its ``/static_content/``: Swagger UI writes inline styles, and the page's inline Google Tag
  Manager script stays blocked); ``API_CSP`` (nothing may load, nothing may frame) on the rest.
* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (browsers without CSP level 2),
  ``Referrer-Policy: no-referrer``.
* ``Cache-Control: no-store`` on every answer but the static files (API answers carry embeddings,
  metadata and error messages, none of which a shared cache or the browser's disk should keep).

A header of the same name set by the app is replaced, never doubled.
"""

from __future__ import annotations

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
DOCS_PATHS = frozenset({"/"})  # BentoML's Swagger UI page...
DOCS_STATIC_PREFIX = "/static_content"  # ...and its assets (bentoml/_internal/server/static_content)
ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
NO_STORE = (b"cache-control", b"no-store")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class SecurityHeadersMiddleware:
    """Adds the headers of the module docstring to every HTTP answer.

    ``page_prefixes``: path prefixes of the demo page's static files (``PAGE_CSP``, cacheable).
    """

    def __init__(self, app, page_prefixes: tuple[str, ...] = ()):
        self.app = app
        self.page_prefixes = tuple(p.rstrip("/") for p in page_prefixes)

    def headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        """The headers an answer to ``path`` gets."""
        if any(_under(path, p) for p in self.page_prefixes):
            csp, static = PAGE_CSP, True
        elif _under(path, DOCS_STATIC_PREFIX):
            csp, static = DOCS_CSP, True
        elif path in DOCS_PATHS:
            csp, static = DOCS_CSP, False
        else:
            csp, static = API_CSP, False
        headers = [*ALWAYS, (b"content-security-policy", csp.encode())]
        return headers if static else [*headers, NO_STORE]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        added = self.headers_for(scope.get("path", ""))
        names = {name for name, _ in added}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)
