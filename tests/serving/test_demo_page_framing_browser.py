"""The security headers in a real headless Chromium against ``bentoml serve`` of the repo's service:
a page on another origin cannot frame the demo page (where the API key is typed), and BentoML's
docs page still works under its policy.

The framing page is served by a second tiny HTTP server on another loopback port (another origin).
As a control, the same framing page also frames a header-less copy of the demo page (a third
server): Chromium shows that one, so an empty frame is the headers' doing, not the test's.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.browser import csp_violations, missing, start_chromium, stop_chromium, wait_for
from helpers.servers import served_repo

from regionmed.serving.demo import DEMO_DIR

pytestmark = [pytest.mark.browser, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

FRAMING_PAGE = '<!doctype html><title>another site</title><iframe id="victim" src="{src}"></iframe>'


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access lines in the test output
        pass


def static_server(folder):
    """A plain HTTP server (no security headers) on a free loopback port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def service(tiny, serving_root):
    yield from served_repo(tiny, serving_root, "framing")


@pytest.fixture(scope="module")
def framer(service, tmp_path_factory):
    """The other site's pages: ``attack.html`` frames the service's ``/ui/``, ``control.html`` frames
    the header-less copy of the page."""
    plain, plain_url = static_server(DEMO_DIR)
    site = tmp_path_factory.mktemp("framer")
    (site / "attack.html").write_text(FRAMING_PAGE.format(src=f"{service.url}/ui/"))
    (site / "control.html").write_text(FRAMING_PAGE.format(src=f"{plain_url}/index.html"))
    server, url = static_server(site)
    try:
        yield url
    finally:
        for s in (server, plain):
            s.shutdown()
            s.server_close()


@pytest.fixture(scope="module")
def chromium():
    driver = start_chromium()
    try:
        yield driver
    finally:
        stop_chromium(driver)


def framed_document(driver) -> dict:
    """What the frame ``#victim`` holds once the framing page has loaded (its load waits for the frame)."""
    driver.switch_to.frame(driver.find_element("id", "victim"))
    try:
        return driver.execute_script(
            "return {url: location.href, title: document.title,"
            " keyPanel: document.getElementById('key-panel') !== null,"
            " text: document.body ? document.body.innerText.slice(0, 200) : ''}"
        )
    finally:
        driver.switch_to.default_content()


def test_a_page_on_another_origin_cannot_frame_the_demo_page(chromium, service, framer):
    chromium.get(f"{framer}/control.html")
    control = framed_document(chromium)
    assert control["keyPanel"] and control["title"] == "RegionMed demo", control  # no headers: framed
    csp_violations(chromium)  # empty the console log

    chromium.get(f"{framer}/attack.html")
    framed = framed_document(chromium)
    assert not framed["keyPanel"] and "RegionMed" not in framed["title"] + framed["text"], framed
    assert not framed["url"].startswith(service.url), framed  # Chromium put an error page there
    reported = csp_violations(chromium)
    # what Chromium says: "Framing 'http://127.0.0.1:<port>/' violates ... "frame-ancestors 'none'"..."
    assert any(f"Framing '{service.url}/'" in m and "frame-ancestors 'none'" in m for m in reported), reported


def test_the_page_itself_loads_under_its_policy_with_no_violation(chromium, service):
    chromium.get(f"{service.url}/ui/")
    wait_for(chromium, "return document.getElementById('model-line').textContent.startsWith('model ')")
    # demo.css applied (the panels' grid, not the browser's default block), demo.js ran (the model line)
    main_display = chromium.execute_script("return getComputedStyle(document.querySelector('main')).display")
    assert main_display == "grid"
    assert csp_violations(chromium) == []


def test_bentoml_s_docs_page_works_under_its_policy(chromium, service):
    chromium.get(f"{service.url}/")
    wait_for(chromium, "return document.querySelectorAll('.opblock').length > 0")
    reported = csp_violations(chromium)
    # nothing of the service is refused: no script, style or call of its own
    own = [m for m in reported if f"blocked {service.url}" in m or "style-src" in m or "connect-src" in m]
    assert own == [], reported
    # what is refused: the page's inline tag-manager snippet, and badge images from other hosts
    assert any(m.startswith("script-src-elem blocked inline") for m in reported), reported
    assert all(
        not m.startswith("img-src blocked") or m.startswith("img-src blocked https://") for m in reported
    ), reported
