"""The demo page's server side: its static files, the preview of an upload, the status corner.

The page (``demo/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from another
host) is mounted on the service at ``/ui`` (``serving.demo_page``), so it ships inside the Bento
and its container and is served on the API's own port. The page calls the service's APIs from
the browser; its static files are the only paths the API key does not guard (``OPEN_PREFIXES``
in ``middleware.py``), and they hold no data.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from regionmed.corpus.images import encode_png

DEMO_DIR = Path(__file__).with_name("demo")
DEMO_PATH = "/ui"
ENV_DRIFT_SUMMARY = "REGIONMED_DRIFT_SUMMARY"
DRIFT_KEYS = ("status", "drift", "drifted_checks", "message", "window")


def demo_app():
    """A Starlette app serving ``demo/`` (``index.html`` for the folder)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    return Starlette(routes=[Mount("/", app=StaticFiles(directory=DEMO_DIR, html=True), name="demo")])


def preview_payload(pixels, fit, image_size: int) -> dict[str, Any]:
    """The model's input (float ``[C, H, W]`` 0..1, letterboxed, DICOM windowed) as a PNG data URL,
    and how the upload was fitted into it, so the page can map boxes between the two."""
    import numpy as np

    arr = np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr[:3], (1, 2, 0))
    png = base64.b64encode(encode_png(arr)).decode("ascii")
    return {
        "image": f"data:image/png;base64,{png}",
        "size": image_size,
        "fit": None
        if fit is None
        else {
            k: getattr(fit, k) for k in ("width", "height", "size", "scale_x", "scale_y", "pad_x", "pad_y")
        },
    }


def label_vocabulary(index) -> list[str]:
    """The finding labels of the retrieval index's items (what the model was evaluated on), sorted."""
    if index is None:
        return []
    return sorted({str(label) for item in index.items for label in item.get("labels") or ()})


def drift_status(path: str | Path | None) -> dict[str, Any] | None:
    """The last ``monitor`` run's verdict from its summary file (``monitor.summary_file``), read per
    call so a new run shows without a restart; ``None`` when there is no such file."""
    source = os.environ.get(ENV_DRIFT_SUMMARY) or path
    if not source or not Path(source).is_file():
        return None
    p = Path(source)
    try:
        summary = json.loads(p.read_text())
        written = p.stat().st_mtime
    except (OSError, ValueError):
        return {"status": "unreadable", "message": f"the drift summary at {p.name} could not be read"}
    if not isinstance(summary, dict):
        return {"status": "unreadable", "message": f"the drift summary at {p.name} is not a JSON object"}
    return {
        **{k: summary.get(k) for k in DRIFT_KEYS},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written)),
    }
