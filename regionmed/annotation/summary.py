"""What the annotate_regions stage did, in numbers (``metrics/annotation.json``) and in a picture.

Counts never hold report text: labels, localizer names and numbers only.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from regionmed.atomic import atomic_file
from regionmed.corpus.images import open_stored

CONFIDENCE_BINS = np.linspace(0.0, 1.0, 11)
GIVEN_COLOUR = (64, 200, 64)
ANNOTATED_COLOUR = (255, 160, 0)
CAPTION_LINES = 4


@dataclass
class AnnotationCounts:
    localizer: str
    images_hidden: int = 0
    images_considered: int = 0  # images of annotate.splits without a given finding region
    images_with_given_anatomy: int = 0  # of those, images whose given anatomy frames their findings
    images_to_place: int = 0  # of those, images with a mention to place
    images_annotated: int = 0
    images_with_mentions: int = 0
    mentions: int = 0
    negated: int = 0
    uncertain: int = 0
    empty_reports: int = 0  # missing or whitespace-only
    truncated_reports: int = 0  # longer than annotate.max_report_chars
    no_mentions: int = 0  # a report with no finding or anatomy word
    nothing_to_place: int = 0  # only negated / uncertain / excluded kinds
    unplaced: int = 0  # the localizer had no box
    below_threshold: int = 0  # a box under annotate.min_confidence
    cut_to_one_organ: int = 0  # finding boxes across both organs of the pair, cut down to one
    cut_away: int = 0  # of those, boxes with less than a quarter of their area left: dropped
    resolved: str = ""  # what annotate.localizer auto resolved to for this corpus ("" when not auto)
    note: str = ""  # why auto resolved as it did
    kept_by_label: Counter = field(default_factory=Counter)
    kept_by_kind: Counter = field(default_factory=Counter)
    kept_by_placement: Counter = field(default_factory=Counter)
    organ_check: dict = field(default_factory=dict)  # the annotator's organs against the mean, on val images
    confidences: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add_mentions(self, found) -> None:
        self.mentions += len(found)
        self.images_with_mentions += bool(found)
        self.negated += sum(m.negated for m in found)
        self.uncertain += sum(m.uncertain for m in found)

    def add_kept(self, localizer: str, region) -> None:
        self.kept_by_label[region.label] += 1
        self.kept_by_kind[region.kind] += 1
        self.kept_by_placement[region.placed_by] += 1

    def to_dict(self) -> dict:
        kept = sum(self.kept_by_label.values())
        hist, _ = np.histogram(self.confidences, bins=CONFIDENCE_BINS)
        return {
            "localizer": self.localizer,
            "resolved": self.resolved or self.localizer,  # what placed the boxes (auto: its choice)
            "note": self.note,
            "images_hidden": self.images_hidden,
            "images_considered": self.images_considered,
            "images_with_given_anatomy": self.images_with_given_anatomy,
            "images_with_mentions": self.images_with_mentions,
            "images_to_place": self.images_to_place,
            "images_annotated": self.images_annotated,
            "mentions": self.mentions,
            "mentions_per_image": round(self.mentions / self.images_considered, 4)
            if self.images_considered
            else 0.0,
            "negated_share": round(self.negated / self.mentions, 4) if self.mentions else 0.0,
            "uncertain_share": round(self.uncertain / self.mentions, 4) if self.mentions else 0.0,
            "cases": {
                "empty_report": self.empty_reports,
                "truncated_report": self.truncated_reports,
                "no_mentions": self.no_mentions,
                "nothing_to_place": self.nothing_to_place,
                "unplaced": self.unplaced,
                "below_threshold": self.below_threshold,
                "cut_to_one_organ": self.cut_to_one_organ,
                "cut_away": self.cut_away,
            },
            "regions_kept": {
                self.resolved or self.localizer: {
                    "total": kept,
                    "by_kind": dict(sorted(self.kept_by_kind.items())),
                    "by_label": dict(sorted(self.kept_by_label.items())),
                    "by_placement": dict(sorted(self.kept_by_placement.items())),
                }
            },
            "organ_check": self.organ_check,
            "confidence_histogram": {
                "edges": [round(float(e), 2) for e in CONFIDENCE_BINS],
                "counts": [int(c) for c in hist],
            },
            "seconds": self.seconds,
        }


def preview_annotations(
    df: pd.DataFrame, corpus_dir: Path, out_png: Path, n: int, seed: int, tile: int = 256, cols: int = 4
) -> Path:
    """Images that got annotated regions (orange, with phrase and confidence) beside images with
    given regions (green); a README-free PNG that says which is which in its captions."""
    annotated = df[df["regions"].map(lambda rs: any(r.get("origin") == "annotated" for r in rs))]
    given = df[df["regions"].map(lambda rs: any(r.get("origin", "given") == "given" for r in rs))]
    half = max(n // 2, 1)
    picks = [
        annotated.sample(n=min(len(annotated), n - min(len(given), half)), random_state=seed),
        given.sample(n=min(len(given), half), random_state=seed),
    ]
    sample = pd.concat(picks)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    caption_h = 14 * CAPTION_LINES
    rows = max((len(sample) + cols - 1) // cols, 1)
    canvas = Image.new("RGB", (cols * tile, rows * (tile + caption_h)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (_, row) in enumerate(sample.iterrows()):
        x, y = (k % cols) * tile, (k // cols) * (tile + caption_h)
        canvas.paste(open_stored(corpus_dir / row["image_path"]).convert("RGB").resize((tile, tile)), (x, y))
        words = []
        for r in row["regions"]:
            mine = r.get("origin") == "annotated"
            if r["kind"] != "finding" and not mine:
                continue
            b = r["bbox"]
            draw.rectangle(
                [x + b[0] * tile, y + b[1] * tile, x + b[2] * tile, y + b[3] * tile],
                outline=ANNOTATED_COLOUR if mine else GIVEN_COLOUR,
                width=2,
            )
            words.append(f"[A {r['confidence']:.2f}] {r['phrase']}" if mine else f"[G] {r['phrase']}")
        lines = textwrap.wrap("; ".join(words) or row["modality"], width=tile // 6)[:CAPTION_LINES]
        draw.multiline_text((x + 2, y + tile + 1), "\n".join(lines), fill=(230, 230, 230), spacing=2)
    with atomic_file(out_png) as tmp:
        canvas.save(tmp, format="PNG")
    return out_png
