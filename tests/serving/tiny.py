"""A tiny untrained RegionCLIP on a tiny synthetic corpus: enough to test the service's contract."""

from __future__ import annotations

import io
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

    from regionmed.corpus.build import build_corpus
    from regionmed.model.config import ModelConfig
    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import Params
    from regionmed.serving.engine import Engine
    from regionmed.serving.index import build_index
    from regionmed.training.data import corpus_texts

    root = Path(root)
    params = Params.model_validate({"corpus": {"image_size": 64, "synthetic": {"n_images": n_images}}})
    build_corpus(params, root / "corpus", progress=False)
    tokenizer = train_wordpiece_tokenizer(corpus_texts(root / "corpus"), 300)
    config = ModelConfig.model_validate(TINY_MODEL)
    torch.manual_seed(0)
    model = RegionCLIP(config, vocab_size=len(tokenizer))
    export_model(model, tokenizer, config, root / "model", {"phase": "test"})
    engine = Engine.from_dir(root / "model")
    build_index(engine, root / "corpus", "test").save(root / "index")
    return {"corpus": root / "corpus", "model": root / "model", "index": root / "index"}


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
DICOM_IDENTIFIERS = {"PatientName": "Testperson^Secretname", "PatientID": "MRN-778899-SECRET",
                     "PatientBirthDate": "19450317", "InstitutionName": "Hidden Valley Clinic",
                     "AccessionNumber": "ACC55511177", "StudyDescription": "PRIVATE STUDY NOTE"}


def dicom_bytes(width: int = 48, height: int = 40, monochrome1: bool = False, rows: int | None = None,
                cols: int | None = None) -> bytes:
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
    arr = (np.arange(height * width, dtype=np.uint16).reshape(height, width) % 4096)
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
