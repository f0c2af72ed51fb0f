"""The demo page in a real headless Chromium against a real ``bentoml serve`` of the packaged Bento.

The Bento is the one the ``package`` stage's code builds (the ``packaged`` fixture runs
``regionmed.serving.package.package`` on the tiny model), served with an API key and a drift
summary. Every number the page shows is compared with the API's answer for the same bytes.
Screenshots of each state go to the session's temp folder (``demo_screenshots/``). The page runs
under the service's Content-Security-Policy, and no test may see it refuse anything
(``no_csp_violation``); framing is tested in ``test_demo_page_framing_browser.py``.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import torch
from helpers.browser import (
    csp_violations,
    missing,
    painted_pixels,
    set_viewport,
    start_chromium,
    stop_chromium,
    wait_for,
)
from helpers.servers import Server, server_env
from helpers.tiny_service import dicom_bytes, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

KEY = "demo-page-key-42"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DRIFT = {
    "status": "drift",
    "drift": True,
    "drifted_checks": ["image/embeddings/mmd"],
    "message": "drift in 1 of 4 checks: image/embeddings/mmd",
    "window": {"hours": 24.0},
}


@pytest.fixture(scope="module")
def demo_server(packaged, serving_root):
    import os

    drift_file = serving_root / "demo-drift.json"
    drift_file.write_text(json.dumps(DRIFT))
    env = server_env(
        BENTOML_HOME=os.environ["BENTOML_HOME"],
        REGIONMED_API_KEY=KEY,
        REGIONMED_DRIFT_SUMMARY=str(drift_file),
        REGIONMED_EMBEDDING_LOG_DIR=str(serving_root / "log-demo"),
    )
    server = Server([packaged["record"]["bento_tag"]], env, serving_root, serving_root / "demo-server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_screenshots")


@pytest.fixture(scope="module")
def chromium():
    driver = start_chromium()
    try:
        yield driver
    finally:
        stop_chromium(driver)


@pytest.fixture(autouse=True)
def no_csp_violation(chromium):
    """Every test runs the page under the service's Content-Security-Policy: nothing it does may be
    refused (the listener's records and the console's CSP messages; browser.csp_violations)."""
    csp_violations(chromium)  # what came before this test
    yield
    assert csp_violations(chromium) == []


@pytest.fixture
def page(chromium, demo_server):
    """The page loaded at a 1280x800 viewport, the key entered, the model card filled."""
    set_viewport(chromium, 1280, 800)
    chromium.get(f"{demo_server.url}/ui/")
    wait_for(chromium, "return !document.getElementById('key-panel').hidden")
    enter_key(chromium, KEY)
    wait_for(chromium, "return document.getElementById('key-panel').hidden")
    return chromium


def enter_key(driver, key: str) -> None:
    field = driver.find_element("id", "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element("css selector", "#key-form button").click()


def upload(driver, path, data: bytes | None = None, until: str | None = None):
    """Choose ``path`` (written with ``data`` first) in the file input; wait for ``until`` (JS)."""
    if data is not None:
        path.write_bytes(data)
    driver.find_element("id", "file").send_keys(str(path))
    if until:
        wait_for(driver, until)
    return path


def textarea_lines(driver, element_id: str) -> list[str]:
    return [
        s.strip()
        for s in driver.find_element("id", element_id).get_attribute("value").splitlines()
        if s.strip()
    ]


def api(server, route: str, **kwargs) -> dict:
    r = httpx.post(f"{server.url}/{route}", headers=AUTH, timeout=TIMEOUT, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


def bars(driver) -> dict[str, float]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#zs-bars li')].map("
        "li => [li.dataset.label, Number(li.dataset.prob)]))"
    )


def test_without_the_key_the_page_asks_for_it_and_with_it_shows_the_model(chromium, demo_server, shots):
    set_viewport(chromium, 1280, 800)
    chromium.get(f"{demo_server.url}/ui/")  # the static files load without the key...
    wait_for(chromium, "return !document.getElementById('key-panel').hidden")  # ...metadata did not: 401
    assert "needs an API key" in chromium.find_element("id", "key-reason").text
    assert chromium.switch_to.active_element.get_attribute("id") == "api-key"
    chromium.save_screenshot(str(shots / "1-asks-for-key.png"))

    enter_key(chromium, "wrong-key")
    wait_for(chromium, "return document.getElementById('key-reason').textContent.includes('refused')")
    assert chromium.find_element("id", "key-panel").is_displayed()

    enter_key(chromium, KEY)
    wait_for(chromium, "return document.getElementById('key-panel').hidden")
    meta = api(demo_server, "metadata", json={})
    card = chromium.find_element("id", "model-card").text
    assert meta["model"]["version"] in card and meta["model"]["version"].startswith("regionmed:")
    assert "gate: passed" in card and "retrieval/i2t_R@5" in card and "0.500" in card  # the packaged metrics
    assert "drift: DRIFT" in card  # the monitor summary the server was given
    options = chromium.execute_script(
        "return [...document.getElementById('vocab').options].map(o => o.value)"
    )
    assert options == meta["labels"] and options
    chromium.save_screenshot(str(shots / "2-key-accepted.png"))


def test_an_upload_shows_the_model_input_and_bars_equal_to_zero_shot(page, demo_server, shots, tmp_path):
    image = upload(
        page,
        tmp_path / "scan.png",
        png_bytes(120, 90, seed=3),
        "return document.querySelectorAll('#zs-bars li').length > 0",
    )
    assert painted_pixels(page, "view") == 512 * 512  # the preview fills the square canvas
    labels = textarea_lines(page, "labels")
    shown = bars(page)
    expected = api(
        demo_server,
        "zero_shot",
        files=[("image", ("scan.png", image.read_bytes(), "image/png"))],
        data={"labels": json.dumps(labels)},
    )
    assert set(shown) == set(expected["classes"]) == set(labels)
    for label, p in zip(expected["classes"], expected["probabilities"], strict=True):
        assert shown[label] == pytest.approx(p, abs=1e-9), label
    texts = page.execute_script(
        "return [...document.querySelectorAll('#zs-bars li .num')].map(e => e.textContent)"
    )
    assert sorted(texts) == sorted(f"{p:.3f}" for p in expected["probabilities"])
    preview = api(demo_server, "preview", files=[("image", ("scan.png", image.read_bytes(), "image/png"))])
    assert (
        preview["fit"]["width"] == 120
        and f"{preview['size']}×{preview['size']}" in page.find_element("id", "stage-caption").text
    )
    page.save_screenshot(str(shots / "3-zero-shot.png"))


def test_grounding_draws_the_heatmap_and_each_phrase_box_equal_to_ground(page, demo_server, shots, tmp_path):
    image = upload(
        page,
        tmp_path / "scan.png",
        png_bytes(100, 100, seed=5),
        "return document.querySelectorAll('#ground-results li').length === 2",
    )
    assert painted_pixels(page, "heat") == 512 * 512 and painted_pixels(page, "overlay") > 0
    phrases = textarea_lines(page, "phrases")
    rows = page.execute_script(
        "return [...document.querySelectorAll('#ground-results li')].map(li => "
        "[li.dataset.box, li.querySelectorAll('mark.disagree').length])"
    )
    for phrase, (box_text, n_marked) in zip(phrases, rows, strict=True):
        expected = api(
            demo_server,
            "ground",
            files=[("image", ("scan.png", image.read_bytes(), "image/png"))],
            data={"phrase": phrase},
        )
        assert [float(v) for v in box_text.split(",")] == pytest.approx(expected["box"], abs=1e-12), phrase
        assert n_marked == sum(not w["agrees"] for w in expected["location_check"]["words"]), phrase
    assert_heat_is_the_bilinear_heatmap(page)
    # the opacity slider sets the heatmap layer's opacity
    slider = page.find_element("id", "opacity")
    page.execute_script("arguments[0].value = 25; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert page.execute_script("return document.getElementById('heat').style.opacity") == "0.25"
    page.save_screenshot(str(shots / "4-grounding.png"))


def assert_heat_is_the_bilinear_heatmap(page) -> None:
    """The heat canvas is the shown phrase's cell scores resized bilinearly (cell values at cell
    centres, edges held: torch's align_corners=False) and coloured, smooth rather than in blocks."""
    heatmap = np.array(page.execute_script("return state.ground[state.heat].heatmap"), dtype=np.float64)
    pixels = np.array(
        page.execute_script(
            "const c = document.getElementById('heat');"
            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);"
        ),
        dtype=np.float64,
    ).reshape(512, 512, 4)
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(heatmap)[None, None], size=(512, 512), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    t = (resized - heatmap.min()) / ((heatmap.max() - heatmap.min()) or 1)
    rgb = np.stack([np.minimum(1, 2 * t), 1 - np.abs(2 * t - 1), np.maximum(0, 1 - 2 * t)], axis=-1) * 255
    assert np.abs(pixels[..., :3] - rgb).max() <= 1.5  # rounding only
    row = pixels[256, :, :3]
    assert len(np.unique(row, axis=0)) > 4 * heatmap.shape[1]  # far more shades than cells: no blocks


def test_a_box_drawn_with_the_mouse_gives_the_closest_phrases(page, demo_server, shots, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    image = upload(
        page,
        tmp_path / "scan.png",
        png_bytes(64, 64, seed=7),  # the model's size: no letterbox
        "return document.querySelectorAll('#retrieve-results tbody tr').length > 0",
    )
    overlay = page.find_element("id", "overlay")
    w = overlay.size["width"]
    (
        ActionChains(page)
        .move_to_element_with_offset(overlay, int(-w * 0.3), int(-w * 0.3))
        .click_and_hold()
        .move_by_offset(int(w * 0.4), int(w * 0.4))
        .release()
        .perform()
    )
    wait_for(page, "return document.querySelectorAll('#region-results li').length > 0")
    box = [
        float(page.find_element("id", f"box-{k}").get_attribute("value")) for k in ("x0", "y0", "x1", "y1")
    ]
    assert box == pytest.approx([0.2, 0.2, 0.6, 0.6], abs=0.02)
    candidates = textarea_lines(page, "candidates")
    region = api(
        demo_server,
        "encode_regions",
        files=[("image", ("scan.png", image.read_bytes(), "image/png"))],
        data={"boxes": json.dumps([box])},
    )["embeddings"][0]
    texts = httpx.post(
        f"{demo_server.url}/encode_text", headers=AUTH, json={"texts": candidates}, timeout=TIMEOUT
    ).json()

    def cosine(a, b):
        return (
            sum(x * y for x, y in zip(a, b, strict=True))
            / (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
        )

    expected = sorted(candidates, key=lambda t: -cosine(region, texts[candidates.index(t)]))[:5]
    shown = page.execute_script(
        "return [...document.querySelectorAll('#region-results li')].map(li => li.dataset.phrase)"
    )
    assert shown == expected
    page.save_screenshot(str(shots / "5-region.png"))


def test_retrieval_lists_the_top_k_of_retrieve(page, demo_server, tmp_path):
    image = upload(
        page,
        tmp_path / "scan.png",
        png_bytes(90, 70, seed=11),
        "return document.querySelectorAll('#retrieve-results tbody tr').length > 0",
    )
    shown = page.execute_script(
        "return [...document.querySelectorAll('#retrieve-results tbody tr')]"
        ".map(tr => tr.cells[1].textContent)"
    )
    expected = api(
        demo_server,
        "retrieve",
        files=[("image", ("scan.png", image.read_bytes(), "image/png"))],
        data={"top_k": "5", "target": "report"},
    )
    assert shown == [r["id"] for r in expected["results"]]


def test_a_dropped_dicom_is_shown_windowed_and_classified(page):
    data = dicom_bytes(96, 64)
    page.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const dt = new DataTransfer();"
        " dt.items.add(new File([bytes], 'study.dcm', {type: 'application/dicom'}));"
        "document.getElementById('drop-zone')"
        ".dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));",
        __import__("base64").b64encode(data).decode(),
    )
    wait_for(page, "return document.querySelectorAll('#zs-bars li').length > 0")
    assert page.find_element("id", "stage-caption").text.startswith("DICOM 96×64")
    assert "study.dcm" in page.find_element("id", "file-name").text


def test_a_file_that_is_not_an_image_shows_the_service_message(page, demo_server, shots, tmp_path):
    notes = tmp_path / "notes.txt"
    upload(page, notes, b"this is not an image")
    message = wait_for(
        page, "const m = document.getElementById('message'); return !m.hidden && m.textContent"
    )
    r = httpx.post(
        f"{demo_server.url}/preview",
        headers=AUTH,
        timeout=TIMEOUT,
        files=[("image", ("notes.txt", notes.read_bytes(), "text/plain"))],
    )
    assert r.status_code == 400 and message == r.json()["error"] and "not a readable" in message
    assert page.find_elements("css selector", "#zs-bars li") == []
    page.save_screenshot(str(shots / "6-not-an-image.png"))


def test_every_control_is_labelled_and_the_page_fits_a_narrow_window(page, shots):
    unlabelled = page.execute_script(
        "return [...document.querySelectorAll('input, select, textarea, button')].filter(e => "
        "!(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())"
        ".map(e => e.id)"
    )
    assert unlabelled == []
    # Tab from the top reaches the file input, the drop zone and every form's button
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.find_element("tag name", "body").click()
    reached = set()
    for _ in range(60):
        ActionChains(page).send_keys(Keys.TAB).perform()  # key events: send_keys on a file input types a path
        reached.add(page.switch_to.active_element.get_attribute("id"))
    assert {
        "drop-zone",
        "file",
        "labels",
        "zs-run",
        "phrases",
        "ground-run",
        "opacity",
        "box-x0",
        "region-run",
        "top-k",
        "retrieve-run",
    } <= reached
    for width, height in ((1280, 800), (390, 844)):
        set_viewport(page, width, height)
        assert page.execute_script("return document.documentElement.scrollWidth") <= width
    columns = page.execute_script(
        "return getComputedStyle(document.querySelector('main')).gridTemplateColumns"
    )
    assert len(columns.split()) == 1  # one column on a narrow window
    page.save_screenshot(str(shots / "7-narrow.png"))


def test_a_file_over_the_upload_limit_shows_the_service_413_message(page, demo_server, tmp_path):
    limit = api(demo_server, "metadata", json={})["limits"]["max_upload_bytes"]  # the Bento's own params.yaml
    big = upload(page, tmp_path / "big.png", png_bytes(64, 64) + b"\0" * limit)
    message = wait_for(
        page, "const m = document.getElementById('message'); return !m.hidden && m.textContent"
    )
    r = httpx.post(
        f"{demo_server.url}/preview",
        headers=AUTH,
        timeout=TIMEOUT,
        files=[("image", ("big.png", big.read_bytes(), "image/png"))],
    )
    assert r.status_code == 413 and "over the limit" in message and message.startswith("request body of ")
