"""EXIF orientation: a JPEG is imported as a viewer shows it, and its boxes (drawn on what the
viewer shows) land on what they were drawn around."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.hostile_images import bright_box, decoded_as_stored, displayed, oriented_jpeg, stored_pixels

from regionmed.corpus.images import decode_image, read_png


@pytest.mark.parametrize("orientation", [6, 8])
def test_decode_applies_the_exif_orientation(orientation):
    jpeg = oriented_jpeg(stored_pixels(), orientation)
    got = decode_image(jpeg, 10_000_000)
    want = displayed(decoded_as_stored(jpeg), orientation)
    assert got.shape == want.shape == (96, 64, 3)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_box_drawn_on_the_displayed_image_is_imported_around_its_finding(kit, orientation):
    stored = stored_pixels()
    box = bright_box(displayed(stored, orientation))
    kit.raw("scan.jpg", oriented_jpeg(stored, orientation))
    path = kit.jsonl(
        [
            {
                "id": "scan",
                "image": "scan.jpg",
                "report": "A bright block.",
                "regions": [{"bbox": box, "label": "block"}],
            }
        ]
    )
    _, manifest, rejected = kit.build("jsonl", path)
    assert rejected == [] and len(manifest) == 1, rejected
    row = manifest.iloc[0]
    image = np.asarray(read_png(kit.root.parent / "corpus" / row["image_path"]), dtype=np.float64)
    x0, y0, x1, y1 = (round(v * 64) for v in row["regions"][0]["bbox"])
    inside = np.zeros(image.shape, dtype=bool)
    inside[y0:y1, x0:x1] = True
    assert image[inside].mean() > 180, "the box does not cover the bright block"
    assert image[~inside].mean() < 40, "bright pixels outside the box: the image or the box is misplaced"


@pytest.mark.parametrize("orientation", [6, 8])
def test_coco_sizes_and_boxes_are_those_of_the_displayed_image(kit, orientation):
    stored = stored_pixels()
    shown = displayed(stored, orientation)
    x0, y0, x1, y1 = bright_box(shown)
    kit.raw("images/scan.jpg", oriented_jpeg(stored, orientation))
    h, w = shown.shape[:2]
    ann = kit.json(
        "annotations.json",
        {
            "images": [{"id": 1, "file_name": "images/scan.jpg", "width": w, "height": h}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0]}],
            "categories": [{"id": 1, "name": "block"}],
        },
    )
    captions = kit.csv(
        "captions.csv",
        [{"file_name": "images/scan.jpg", "report": "A bright block."}],
        ["file_name", "report"],
    )
    _, manifest, rejected = kit.build("coco", ann, captions)
    assert rejected == [], rejected  # before: size_mismatch (the stored size is w and h swapped)
    bx0, by0, bx1, by1 = (round(v * 64) for v in manifest.iloc[0]["regions"][0]["bbox"])
    image = np.asarray(
        read_png(kit.root.parent / "corpus" / manifest.iloc[0]["image_path"]), dtype=np.float64
    )
    assert image[by0:by1, bx0:bx1].mean() > 180
