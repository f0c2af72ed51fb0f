"""The security headers on every answer of the service's ASGI app, in-process: the demo page, its
static files, the APIs, health, BentoML's docs page, and the error answers (401, 413, 404, 400)."""

from __future__ import annotations

import pytest
from helpers.tiny_service import TEST_SERVING, png_bytes, upload

from regionmed.serving.security_headers import API_CSP, DOCS_CSP, PAGE_CSP, SecurityHeadersMiddleware

KEY = "headers-key-7"
AUTH = {"Authorization": f"Bearer {KEY}"}


def directives(csp: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in csp.split(";")) if d}


def assert_protected(response, csp: str, no_store: bool) -> None:
    h = response.headers
    assert h["content-security-policy"] == csp, response.request.url
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert (h.get("cache-control") == "no-store") == no_store, (response.request.url, h.get("cache-control"))
    for name in ("content-security-policy", "x-frame-options", "cache-control"):
        assert len(h.get_list(name)) <= 1, f"{name} sent twice"


def test_the_page_policy_is_strict():
    page = directives(PAGE_CSP)
    assert page["default-src"] == "'none'" and page["frame-ancestors"] == "'none'"
    assert page["script-src"] == page["style-src"] == page["connect-src"] == "'self'"
    assert page["base-uri"] == "'none'" and page["form-action"] == "'self'"
    assert page["img-src"] == "'self' data:"  # the preview API answers a data: URL
    assert "unsafe" not in PAGE_CSP and "*" not in PAGE_CSP and "http" not in PAGE_CSP
    api = directives(API_CSP)
    assert api["default-src"] == api["frame-ancestors"] == "'none'" and "script-src" not in api
    assert directives(DOCS_CSP)["frame-ancestors"] == "'none'"


@pytest.mark.parametrize(
    ("path", "csp", "no_store"),
    [
        ("/ui/", PAGE_CSP, False),
        ("/ui/demo.js", PAGE_CSP, False),
        ("/ui/demo.css", PAGE_CSP, False),
        ("/livez", API_CSP, True),
        ("/readyz", API_CSP, True),
        ("/", DOCS_CSP, True),
        ("/static_content/swagger-ui.css", DOCS_CSP, False),
        ("/docs.json", API_CSP, True),
        ("/ui/no-such-file.js", PAGE_CSP, False),  # 404 from the page's static files
        ("/no-such-route", API_CSP, True),  # 404 from BentoML's router
    ],
)
def test_every_get_route_family_carries_the_headers(client, path, csp, no_store):
    r = client.get(path)
    assert r.status_code in (200, 404), r.status_code
    assert (r.status_code == 404) == ("no-such" in path)
    assert_protected(r, csp, no_store)


def test_api_answers_and_their_errors_carry_the_headers(client):
    ok = client.post("/metadata", json={})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/json")
    assert_protected(ok, API_CSP, no_store=True)
    embedded = client.post("/encode_image", files=[upload("a.png", png_bytes(), "images")])
    assert embedded.status_code == 200
    assert_protected(embedded, API_CSP, no_store=True)
    bad = client.post("/encode_text", json={"texts": "not a list"})
    assert bad.status_code == 400
    assert_protected(bad, API_CSP, no_store=True)
    too_large = client.post(
        "/encode_text",
        content=b"x" * (TEST_SERVING["max_upload_bytes"] + 1),
        headers={"content-type": "application/json"},
    )
    assert too_large.status_code == 413  # answered by the request guard, inside this middleware
    assert_protected(too_large, API_CSP, no_store=True)


def test_answers_refused_for_the_key_carry_the_headers(client, monkeypatch):
    monkeypatch.setenv("REGIONMED_API_KEY", KEY)
    refused = client.post("/metadata", json={})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert_protected(refused, API_CSP, no_store=True)
    assert_protected(client.get("/"), DOCS_CSP, no_store=True)  # BentoML's docs page is guarded: 401
    assert client.get("/").status_code == 401
    page = client.get("/ui/")  # the page loads without the key, so that it can ask for it
    assert page.status_code == 200
    assert_protected(page, PAGE_CSP, no_store=False)
    assert_protected(client.post("/metadata", json={}, headers=AUTH), API_CSP, no_store=True)


def test_the_page_has_no_inline_script_or_style(client):
    import re

    html = client.get("/ui/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline <script>: CSP refuses it"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style: CSP refuses it"
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler: CSP refuses it"


def test_a_header_the_app_set_is_replaced_not_doubled():
    import asyncio

    async def app(scope, receive, send):
        headers = [(b"cache-control", b"max-age=600"), (b"X-Frame-Options", b"SAMEORIGIN")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = SecurityHeadersMiddleware(app, page_prefixes=("/ui",))
    asyncio.run(middleware({"type": "http", "method": "GET", "path": "/metadata"}, receive, send))
    names = [k.lower() for k, _ in sent[0]["headers"]]
    assert names.count(b"cache-control") == names.count(b"x-frame-options") == 1
    assert dict(sent[0]["headers"])[b"cache-control"] == b"no-store"
    assert dict(sent[0]["headers"])[b"x-frame-options"] == b"DENY"
    assert sent[1]["body"] == b"{}"
    assert middleware.headers_for("/uix") == middleware.headers_for("/metadata")  # not the page's prefix
