"""The drift reference: what the packaged model produced for the held-out split, as the service logs it.

Built by the ``monitor_reference`` stage (:func:`regionmed.monitoring.reference_stage.build_reference`)
right after ``package``, from the same packaged model:

- image and report embeddings of the ``serving.index_split`` split: taken from the retrieval index
  the package stage wrote (``serving.index_dir``), so they are exactly the packaged model's;
- per-image descriptors computed the way the service computes them for an upload
  (:func:`~regionmed.inference.uploads.decode_upload` + ``Engine.prepare``: width, height, channels,
  format, bytes, mean and std of the model input), and per-report token and character counts;
- zero-shot class embeddings: the split's finding labels (prompt-ensembled, as the service's
  ``zero_shot`` with ``labels``) and the modalities (the evaluation's modality prompts), so the
  monitor can predict label shares from logged image embeddings without loading the model.

Layout of the folder (``monitor.reference_dir``)::

    reference.json            format_version, split, model_versions, dim, rows, classes, descriptors
    image_embeddings.npy      float32 [n_images, dim]
    text_embeddings.npy       float32 [n_reports, dim]
    image_descriptors.parquet one row per image (numbers and the format enum only)
    text_descriptors.parquet  one row per report (n_chars, n_tokens, truncated)
    classes_finding.npy       float32 [n_labels, dim]  (row i = classes.finding[i])
    classes_modality.npy      float32 [n_modalities, dim]

No report text, file name, patient or image id is stored: only embeddings, numbers and label names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from regionmed.atomic import atomic_dir

FORMAT_VERSION = 1
META_FILE = "reference.json"
KINDS = ("image", "text")


@dataclass
class Reference:
    """Embeddings and descriptors per kind, zero-shot class embeddings, and which model made them."""

    embeddings: dict[str, np.ndarray]
    descriptors: dict[str, pd.DataFrame]
    model_versions: list[str] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)
    class_embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    split: str = ""

    def __post_init__(self) -> None:
        for kind, emb in self.embeddings.items():
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 2:
                raise ValueError(f"reference {kind} embeddings must be [N, D], got {emb.shape}")
            self.embeddings[kind] = emb
            desc = self.descriptors.get(kind)
            if desc is None:
                self.descriptors[kind] = pd.DataFrame(index=range(len(emb)))
            elif len(desc) != len(emb):
                raise ValueError(f"reference {kind}: {len(desc)} descriptor rows for {len(emb)} embeddings")
        for group, names in self.classes.items():
            emb = np.asarray(self.class_embeddings[group], dtype=np.float32)
            if emb.shape[0] != len(names):
                raise ValueError(f"{len(names)} {group} classes for {emb.shape[0]} class embeddings")
            self.class_embeddings[group] = emb

    @property
    def dim(self) -> int:
        dims = {e.shape[1] for e in self.embeddings.values() if e.size}
        if len(dims) > 1:
            raise ValueError(f"reference kinds have different dims {sorted(dims)}")
        return dims.pop() if dims else 0

    def rows(self, kind: str) -> int:
        return len(self.embeddings.get(kind, ()))

    def save(self, out_dir: str | Path) -> Path:
        """Write the folder whole or not at all (regionmed/atomic.py); returns it."""
        with atomic_dir(out_dir) as tmp:
            self._save_into(tmp)
        return Path(out_dir)

    def _save_into(self, out: Path) -> None:
        for kind in KINDS:
            if kind in self.embeddings:
                np.save(out / f"{kind}_embeddings.npy", self.embeddings[kind])
                self.descriptors[kind].reset_index(drop=True).to_parquet(
                    out / f"{kind}_descriptors.parquet", index=False
                )
        for group, emb in self.class_embeddings.items():
            np.save(out / f"classes_{group}.npy", emb)
        meta = {
            "format_version": FORMAT_VERSION,
            "split": self.split,
            "model_versions": list(self.model_versions),
            "dim": self.dim,
            "rows": {k: self.rows(k) for k in self.embeddings},
            "classes": self.classes,
            "descriptors": {k: list(self.descriptors[k].columns) for k in self.embeddings},
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        path = Path(path)
        meta_file = path / META_FILE
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"no drift reference at {path} (run the monitor_reference stage: "
                "dvc repro monitor_reference, or regionmed monitor-reference)"
            )
        meta = json.loads(meta_file.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: reference format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        embeddings, descriptors = {}, {}
        for kind in meta.get("rows", {}):
            embeddings[kind] = np.load(path / f"{kind}_embeddings.npy", allow_pickle=False)
            descriptors[kind] = pd.read_parquet(path / f"{kind}_descriptors.parquet")
        classes = meta.get("classes", {})
        class_emb = {g: np.load(path / f"classes_{g}.npy", allow_pickle=False) for g in classes}
        return cls(
            embeddings,
            descriptors,
            list(meta.get("model_versions", [])),
            classes,
            class_emb,
            meta.get("split", ""),
        )


def predicted_labels(embeddings: np.ndarray, class_embeddings: np.ndarray, names: list[str]) -> np.ndarray:
    """The zero-shot prediction per row: the class with the highest cosine (argmax, as the service's
    ``top``)."""
    if len(embeddings) == 0:
        return np.array([], dtype=object)
    scores = np.asarray(embeddings, dtype=np.float32) @ np.asarray(class_embeddings, dtype=np.float32).T
    return np.asarray(names, dtype=object)[np.argmax(scores, axis=1)]
