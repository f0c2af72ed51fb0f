"""Fixture writers for the importer tests: tiny PNG / DICOM / JSONL / COCO files in tmp_path."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class ImportKit:
    """Writes fixture files under one folder and builds corpora from them."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    # -- images -----------------------------------------------------------------------------------

    def png(
        self, name: str, width: int, height: int, value: int = 200, array: np.ndarray | None = None
    ) -> str:
        arr = array if array is not None else np.full((height, width), value, dtype=np.uint8)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        return name

    def jpeg(self, name: str, width: int, height: int, value: int = 120) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path, quality=95)
        return name

    def raw(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return name

    def bomb_png(self, name: str, width: int = 100_000, height: int = 100_000) -> str:
        """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it."""

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
        data = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b"")
        )
        return self.raw(name, data)

    def dicom(
        self,
        name: str,
        pixels: np.ndarray | None,
        photometric: str = "MONOCHROME1",
        slope: float = 2.0,
        intercept: float = -1024.0,
        center: float | None = 40.0,
        width: float | None = 400.0,
    ) -> str:
        """A real DICOM file (explicit VR little endian, 16-bit unsigned); ``pixels=None``: no PixelData."""
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = "P-DICOM"
        rows, cols = pixels.shape if pixels is not None else (64, 64)
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if center is not None:
            ds.WindowCenter, ds.WindowWidth = center, width
        if pixels is not None:
            ds.PixelData = pixels.astype("<u2").tobytes()
        ds.save_as(path, enforce_file_format=True)
        return name

    # -- index files ------------------------------------------------------------------------------

    def jsonl(self, records: list, name: str = "records.jsonl") -> Path:
        """Records as lines; a ``str`` item is written verbatim (for broken lines)."""
        path = self.root / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def json(self, name: str, obj) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
        return path

    def csv(self, name: str, rows: list[dict], columns: list[str]) -> Path:
        import csv

        path = self.root / name
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
        return path

    # -- building ---------------------------------------------------------------------------------

    def build(
        self, source: str, path: Path, captions_csv: Path | None = None, out: Path | None = None, **corpus
    ):
        """``build_corpus`` for an importer (image_size 64, no reject limit unless given).

        Returns the summary, the manifest and the rejected records.
        """
        from helpers.params import default_params

        from regionmed.corpus.build import build_corpus
        from regionmed.corpus.schema import read_manifest

        out = out or self.root.parent / "corpus"
        importer = {"path": str(path), **corpus.pop("importer", {})}
        if captions_csv is not None:
            importer["captions_csv"] = str(captions_csv)
        corpus = {
            "source": source,
            "image_size": 64,
            "max_reject_fraction": 1.0,
            "importer": importer,
            **corpus,
        }
        # the model's input size must match the corpus's
        model = {"vision": {"image_size": corpus["image_size"], "channels": corpus.get("channels", 1)}}
        cluster = {"workers": corpus.pop("workers")} if "workers" in corpus else {}
        params = default_params({"corpus": corpus, "model": model, "cluster": cluster})
        summary = build_corpus(params, out, progress=False)
        return summary, read_manifest(out), read_rejected(out)


def read_rejected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]


@pytest.fixture
def kit(tmp_path) -> ImportKit:
    return ImportKit(tmp_path / "data")
