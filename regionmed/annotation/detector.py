"""The ``detector`` localizer: a Hugging Face zero-shot object detector, optionally refined by SAM.

``annotate.detector.model`` is a hub id or a local folder of any model that
``AutoModelForZeroShotObjectDetection`` loads (OWLv2, OWL-ViT, Grounding DINO), with its processor.
Each phrase is the text query for its image; the best-scoring box is kept, its score is the
confidence. With ``annotate.detector.sam`` (SAM, MedSAM: a ``SamModel`` folder), that box prompts
the segmenter and the mask's tight bounding box replaces it (the mask score times the detection
score is the confidence); an empty mask keeps the detector's box.

:func:`check_detector_settings` reads both configs before any work, so a missing folder or a model
of the wrong type stops the stage with a message naming the setting. docs/annotation.md says how to
point it at real weights (the machine that runs the pipeline needs them on disk or in ``HF_HOME``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from regionmed.annotation.localizers import Placed, Query, clip_box
from regionmed.corpus.images import open_stored


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def _config(setting: str, name: str | None):
    from transformers import AutoConfig

    if not name:
        raise ValueError(f"{setting} is not set: a hub id or a local folder (docs/annotation.md)")
    if _looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ValueError(f"{setting}: {name} is not a folder")
    try:
        return AutoConfig.from_pretrained(str(Path(name).expanduser()) if _looks_like_path(name) else name)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{setting}: {name} could not be read as a Hugging Face model ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None


def check_detector_settings(d) -> None:
    """Raise ``ValueError`` naming the setting when the detector (or SAM) cannot be what it should."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES as DETECTORS,
    )

    config = _config("annotate.detector.model", d.model)
    if config.model_type not in DETECTORS:
        raise ValueError(
            f"annotate.detector.model: {d.model} is a {config.model_type!r} model, not a zero-shot "
            f"object detector (one of {sorted(DETECTORS)})"
        )
    if d.sam is not None:
        sam = _config("annotate.detector.sam", d.sam)
        if not sam.model_type.startswith("sam"):
            raise ValueError(f"annotate.detector.sam: {d.sam} is a {sam.model_type!r} model, not a SamModel")


class DetectorLocalizer:
    name = "detector"

    def __init__(self, d, channels: int):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.settings = d
        self.processor = AutoProcessor.from_pretrained(d.model)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(d.model).eval()
        self.sam = self.sam_processor = None
        if d.sam is not None:
            from transformers import SamModel, SamProcessor

            self.sam, self.sam_processor = (
                SamModel.from_pretrained(d.sam).eval(),
                SamProcessor.from_pretrained(d.sam),
            )
        post = self.processor.post_process_grounded_object_detection
        self._post_args = set(inspect.signature(post).parameters)

    @torch.inference_mode()
    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        out: list[Placed | None] = []
        for start in range(0, len(queries), self.settings.batch_size):
            chunk = queries[start : start + self.settings.batch_size]
            images = [open_stored(q.image_path).convert("RGB") for q in chunk]
            out.extend(self._detect(images, [q.phrase for q in chunk]))
        return out

    def _detect(self, images: list[Image.Image], phrases: list[str]) -> list[Placed | None]:
        inputs = self.processor(text=[[p] for p in phrases], images=images, return_tensors="pt", padding=True)
        outputs = self.model(**inputs)
        kwargs = {"threshold": self.settings.box_threshold, "target_sizes": [(1, 1)] * len(images)}
        if "input_ids" in self._post_args:  # Grounding DINO matches boxes to the query tokens
            kwargs["input_ids"] = inputs["input_ids"]
        if "text_threshold" in self._post_args:
            kwargs["text_threshold"] = self.settings.box_threshold
        results = self.processor.post_process_grounded_object_detection(outputs, **kwargs)
        placed: list[Placed | None] = []
        for image, res in zip(images, results, strict=True):
            # the best-scoring box with any area inside the image (a detection may fall outside it)
            order = res["scores"].argsort(descending=True).tolist()
            best = next((k for k in order if clip_box(res["boxes"][k].tolist()) is not None), None)
            if best is None:
                placed.append(None)
                continue
            box, score = clip_box(res["boxes"][best].tolist()), float(res["scores"][best].clamp(0, 1))
            if self.sam is not None:
                box, score = self._refine(image, box, score)
            clipped = clip_box(box)
            placed.append(None if clipped is None else Placed(clipped, score, "detector"))
        return placed

    def _refine(self, image: Image.Image, box: list[float], score: float) -> tuple[list[float], float]:
        """Box → SAM mask → the mask's tight box (normalised), confidence times the mask's IoU score."""
        w, h = image.size
        pixel_box = [[[box[0] * w, box[1] * h, box[2] * w, box[3] * h]]]
        inputs = self.sam_processor(image, input_boxes=pixel_box, return_tensors="pt")
        outputs = self.sam(**inputs, multimask_output=False)
        masks = self.sam_processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]
        mask = np.asarray(masks[0, 0], dtype=bool)
        if not mask.any():
            return box, score
        rows, cols = np.nonzero(mask)
        tight = [cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h]
        iou_score = float(outputs.iou_scores.reshape(-1)[0].sigmoid()) if outputs.iou_scores.numel() else 1.0
        return tight, score * iou_score
