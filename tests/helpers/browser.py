"""Headless Chromium for the demo page's tests and benchmark (Selenium driving Debian's chromium).

Importable by name, like ``servers.py``. ``missing()`` says what is not installed, so tests skip
with that reason; ``make browser-deps`` installs it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def missing() -> str | None:
    """Why no browser test can run here (``None`` when they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -c requirements/lock.txt -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(Path(path).name)):
            return f"no {path}: install Debian's {package} (make browser-deps)"
    return None


def start_chromium(width: int = 1280, height: int = 800):
    """A headless Chromium with a fresh profile folder (removed by ``stop_chromium``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="regionmed-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages: csp_violations()
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    driver.regionmed_profile = profile
    # before any script of any page or frame: record every Content-Security-Policy violation
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})
    return driver


CSP_RECORDER = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push("
    "`${e.effectiveDirective} blocked ${e.blockedURI || '?'} at ${e.sourceFile || '?'}:${e.lineNumber}`));"
)


def csp_violations(driver) -> list[str]:
    """The CSP violations since the last call: those the current document's listener recorded, and
    the console's CSP messages (the browser log is read, and so emptied, by this call)."""
    recorded = driver.execute_script("return window.__cspViolations || []")
    driver.execute_script("window.__cspViolations = []")
    console = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "X-Frame-Options" in entry["message"]
    ]
    return [*recorded, *console]


def stop_chromium(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.regionmed_profile, ignore_errors=True)


def wait_for(driver, script: str, timeout: float = 60.0, *args):
    """Poll a JavaScript expression (``return ...``) until it is truthy; returns its value."""
    deadline = time.perf_counter() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.perf_counter() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {script}")
        time.sleep(0.05)


def painted_pixels(driver, canvas_id: str) -> int:
    """How many pixels of a canvas are not fully transparent."""
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;",
        canvas_id,
    )


def set_viewport(driver, width: int, height: int) -> None:
    """The page's viewport exactly ``width`` x ``height`` CSS pixels (the window's size includes its
    frame)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
