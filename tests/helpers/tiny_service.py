"""A tiny untrained RegionCLIP on a tiny synthetic corpus: enough to test the service's contract."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

TINY_MODEL = {
    "vision": {"image_size": 64, "patch_size": 16, "hidden": 32, "layers": 1, "heads": 2, "mlp": 64},
    "text": {"hidden": 32, "layers": 1, "heads": 2, "mlp": 64, "max_length": 32},
    "roi": {"fusion_heads": 2, "grid_sizes": [2]},
    "embed_dim": 16,
}
# Small limits, so that each one is cheap to exceed in a test.
TEST_SERVING = {
    "max_upload_bytes": 400_000,
    "max_image_pixels": 1_000_000,
    "max_request_pixels": 2_500_000,
    "max_images_per_call": 4,
    "max_texts_per_call": 8,
    "max_text_chars": 200,
    "max_boxes_per_call": 4,
    "max_top_k": 10,
    "batching": {"max_batch_size": 8, "max_latency_ms": 20000},
}


def build_tiny(root: Path, n_images: int = 120) -> dict[str, Path]:
    """corpus/, model/ (exported), index/ under ``root``; returns their paths."""
    import torch

    from helpers.params import default_params, tiny_model_config
    from regionmed.corpus.build import build_corpus
    from regionmed.inference.engine import Engine
    from regionmed.inference.index import build_index
    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    root = Path(root)
    params = default_params({"corpus": {"image_size": 64, "synthetic": {"n_images": n_images}}})
    build_corpus(params, root / "corpus", progress=False)
    tokenizer = train_wordpiece_tokenizer(corpus_texts(root / "corpus"), 300)
    config = tiny_model_config(**TINY_MODEL)
    torch.manual_seed(0)
    model = RegionCLIP(config, vocab_size=len(tokenizer))
    export_model(model, tokenizer, config, root / "model", {"phase": "test"})
    engine = Engine.from_dir(root / "model")
    build_index(engine, root / "corpus", "test").save(root / "index")
    return {"corpus": root / "corpus", "model": root / "model", "index": root / "index"}


def package_tiny(project: Path, tiny: dict[str, Path], **serving) -> dict:
    """The package stage on the tiny model in a scratch project (``serving``: extra serving params)."""
    import os
    import time

    from helpers.params import default_params
    from regionmed.serving import stage

    repo_root = Path(__file__).resolve().parents[2]

    (project / "metrics").mkdir(parents=True, exist_ok=True)
    candidate = {
        "retrieval/i2t_R@5": 0.5,
        "grounding/full/lenient": 0.7,
        "vs_prior/grounding/full/lenient_low": 0.01,
    }
    (project / "metrics/gate.json").write_text(
        json.dumps(
            {
                "passed": True,
                "n_failed": 0,
                "comparisons": [],
                "champion": None,
                "candidate_metrics": candidate,
            }
        )
    )
    params = default_params(
        {
            "corpus": {"out_dir": str(tiny["corpus"])},
            "annotate": {"out_dir": str(tiny["corpus"])},
            "evaluate": {"batch_size": 32},
            "gate": {
                "decision_file": str(project / "metrics/gate.json"),
                "champion_file": str(project / ".state/champion.json"),
            },
            "serving": {
                "model_dir": str(tiny["model"]),
                "index_dir": str(project / "models/retrieval_index"),
                "bentofile": "bentofile.yaml",
                "metrics_file": str(project / "metrics/package.json"),
                "bentoml_home": os.environ["BENTOML_HOME"],
                **serving,
            },
        }
    )
    lines: list[str] = []
    start = time.perf_counter()
    record = stage.run(params, root=repo_root, log=lines.append).record
    return {
        "record": record,
        "params": params,
        "project": project,
        "log": lines,
        "seconds": time.perf_counter() - start,
    }


def png_bytes(width: int = 80, height: int = 60, seed: int = 0, mode: str = "L") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (height, width) if mode == "L" else (height, width, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 70, height: int = 90, seed: int = 1) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(buf, format="JPEG")
    return buf.getvalue()


# Identifiers planted in test DICOM headers: none may ever reach the embedding log.
DICOM_IDENTIFIERS = {
    "PatientName": "Testperson^Secretname",
    "PatientID": "MRN-778899-SECRET",
    "PatientBirthDate": "19450317",
    "InstitutionName": "Hidden Valley Clinic",
    "AccessionNumber": "ACC55511177",
    "StudyDescription": "PRIVATE STUDY NOTE",
}


def dicom_bytes(
    width: int = 48,
    height: int = 40,
    monochrome1: bool = False,
    rows: int | None = None,
    cols: int | None = None,
) -> bytes:
    """A small 16-bit DICOM with identifying header fields (``rows``/``cols`` override the header)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in DICOM_IDENTIFIERS.items():
        setattr(ds, key, value)
    ds.Modality = "CR"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows or height, cols or width
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    arr = np.arange(height * width, dtype=np.uint16).reshape(height, width) % 4096
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def upload(name: str, data: bytes, field: str = "image", ctype: str = "application/octet-stream"):
    """A multipart file part for httpx / the TestClient."""
    return (field, (name, data, ctype))


def bad_requests(limits: dict) -> dict[str, tuple]:
    """Every kind of bad request for the given limits: name → (route, request kwargs, status, words
    the error message must contain)."""
    side = int(limits["max_image_pixels"] ** 0.5) + 1
    big_dicom = dicom_bytes(rows=side, cols=side)  # the header claims too many pixels; the data is tiny
    return {
        # name: (route, request kwargs, status, words the message must contain)
        "garbage image": (
            "/encode_image",
            {"files": [upload("x.png", b"not an image at all", "images")]},
            400,
            "not a readable",
        ),
        "empty image": ("/encode_image", {"files": [upload("x.png", b"", "images")]}, 400, "empty"),
        "truncated png": (
            "/encode_image",
            {"files": [upload("x.png", png_bytes()[:60], "images")]},
            400,
            "image",
        ),
        "decompression bomb": (
            "/encode_image",
            {"files": [upload("x.dcm", big_dicom, "images")]},
            400,
            "too large",
        ),
        "too many images": (
            "/encode_image",
            {
                "files": [
                    upload(f"{i}.png", png_bytes(seed=i), "images")
                    for i in range(limits["max_images_per_call"] + 1)
                ]
            },
            400,
            "over the limit",
        ),
        "no images": ("/encode_image", {"json": {"images": []}}, 400, "no images"),
        "image as a url": (
            "/encode_image",
            {"data": {"images": "http://127.0.0.1:1/x.png"}},
            400,
            "uploaded file",
        ),
        "image as a path": ("/encode_image", {"json": {"images": ["/etc/passwd"]}}, 400, "file"),
        "body too large": (
            "/encode_text",
            {
                "content": b"x" * (limits["max_upload_bytes"] + 1),
                "headers": {"content-type": "application/json"},
            },
            413,
            "over the limit",
        ),
        "too many texts": (
            "/encode_text",
            {"json": {"texts": ["a"] * (limits["max_texts_per_call"] + 1)}},
            400,
            "over the limit",
        ),
        "text too long": (
            "/encode_text",
            {"json": {"texts": ["a" * (limits["max_text_chars"] + 1)]}},
            400,
            "characters",
        ),
        "empty text": ("/encode_text", {"json": {"texts": ["  "]}}, 400, "empty"),
        "texts not a list": ("/encode_text", {"json": {"texts": "a lung"}}, 400, "array"),
        "malformed json": (
            "/encode_text",
            {"content": b"{oops", "headers": {"content-type": "application/json"}},
            400,
            "json",
        ),
        "malformed multipart": (
            "/encode_text",
            {"content": b"--b\r\nnonsense", "headers": {"content-type": "multipart/form-data; boundary=b"}},
            400,
            "",
        ),
        "zero-shot without labels": (
            "/zero_shot",
            {"files": [upload("a.png", png_bytes())]},
            400,
            "exactly one",
        ),
        "zero-shot duplicate labels": (
            "/zero_shot",
            {"files": [upload("a.png", png_bytes())], "data": {"labels": json.dumps(["a", "a"])}},
            400,
            "distinct",
        ),
        "zero-shot no image": ("/zero_shot", {"json": {"labels": ["a"]}}, 400, "image"),
        "ground without phrase": ("/ground", {"files": [upload("a.png", png_bytes())]}, 400, "phrase"),
        "box out of range": (
            "/encode_regions",
            {"files": [upload("a.png", png_bytes())], "data": {"boxes": json.dumps([[0.1, 0.1, 1.5, 0.5]])}},
            400,
            "0..1",
        ),
        "box inverted": (
            "/encode_regions",
            {"files": [upload("a.png", png_bytes())], "data": {"boxes": json.dumps([[0.5, 0.1, 0.2, 0.5]])}},
            400,
            "x0 < x1",
        ),
        "box with 3 numbers": (
            "/encode_regions",
            {"files": [upload("a.png", png_bytes())], "data": {"boxes": json.dumps([[0.1, 0.1, 0.5]])}},
            400,
            "4",
        ),
        "too many boxes": (
            "/encode_regions",
            {
                "files": [upload("a.png", png_bytes())],
                "data": {"boxes": json.dumps([[0, 0, 1, 1]] * (limits["max_boxes_per_call"] + 1))},
            },
            400,
            "over the limit",
        ),
        "retrieve both": (
            "/retrieve",
            {"files": [upload("a.png", png_bytes())], "data": {"text": "x"}},
            400,
            "exactly one",
        ),
        "retrieve neither": ("/retrieve", {"json": {}}, 400, "exactly one"),
        "top_k too big": (
            "/retrieve",
            {"json": {"text": "x", "top_k": limits["max_top_k"] + 1}},
            400,
            "top_k",
        ),
        "unknown target": ("/retrieve", {"json": {"text": "x", "target": "video"}}, 400, "target"),
        "pickle body": (
            "/encode_text",
            {"content": b"\x80\x04N.", "headers": {"content-type": "application/vnd.bentoml+pickle"}},
            415,
            "",
        ),
    }
