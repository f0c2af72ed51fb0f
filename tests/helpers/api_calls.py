"""Every API of the service called over HTTP, and the answers checked: shared by the tests of a
``bentoml serve`` process (tests/serving/test_serving_integration.py) and of the container."""

from __future__ import annotations

import json

import httpx
import numpy as np

from helpers.tiny_service import bad_requests, dicom_bytes, jpeg_bytes, png_bytes, upload

TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def call_every_api(url: str, headers: dict) -> dict[str, httpx.Response]:
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as c:
        return {
            "metadata": c.post("/metadata", json={}),
            "encode_image": c.post(
                "/encode_image",
                files=[
                    upload("a.png", png_bytes(), "images"),
                    upload("b.dcm", dicom_bytes(), "images", "application/dicom"),
                ],
            ),
            "encode_text": c.post("/encode_text", json={"texts": ["pleural effusion", "no finding"]}),
            "zero_shot": c.post(
                "/zero_shot",
                files=[upload("a.jpg", jpeg_bytes(), ctype="image/jpeg")],
                data={"labels": json.dumps(["pneumonia", "no finding"])},
            ),
            "ground": c.post(
                "/ground", files=[upload("a.png", png_bytes())], data={"phrase": "the left lung"}
            ),
            "encode_regions": c.post(
                "/encode_regions",
                files=[upload("a.png", png_bytes())],
                data={"boxes": json.dumps([[0.1, 0.2, 0.6, 0.7]])},
            ),
            "retrieve": c.post("/retrieve", json={"text": "pleural effusion", "top_k": 3}),
            "retrieve_image": c.post(
                "/retrieve", files=[upload("a.png", png_bytes())], data={"target": "report"}
            ),
        }


def check_answers(answers: dict[str, httpx.Response], dim: int) -> None:
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.status_code, r.text)
    assert np.array(answers["encode_image"].json()).shape == (2, dim)
    assert np.array(answers["encode_text"].json()).shape == (2, dim)
    assert abs(sum(answers["zero_shot"].json()["probabilities"]) - 1) < 1e-5
    assert len(answers["ground"].json()["box"]) == 4
    assert np.array(answers["encode_regions"].json()["embeddings"]).shape == (1, dim)
    assert len(answers["retrieve"].json()["results"]) == 3
    assert answers["retrieve_image"].json()["results"][0]["kind"] == "report"


def check_bad_requests(url: str, headers: dict, limits: dict) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as c:
        for name, (route, kwargs, status, words) in bad_requests(limits).items():
            kwargs = {**kwargs, "headers": {**headers, **kwargs.get("headers", {})}}
            r = c.post(route, **kwargs)
            assert r.status_code == status, (name, r.status_code, r.text)
            assert words.lower() in r.json()["error"].lower(), (name, r.text)
            assert "Traceback" not in r.text
