"""The typed results of RegionCLIP's calls say what a caller gets: which fields each mode sets, their
shapes, and that code written against the old dict output fails at once instead of reading a None."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from helpers.model_batches import TINY_BOX_HEAD, all_texts, collate, phantom_samples, tiny_config

from regionmed.model import ClipLoss, RegionCLIP, hierarchical_loss, train_wordpiece_tokenizer
from regionmed.model.outputs import Grounding, RegionCLIPOutput

SAMPLES = phantom_samples(4, seed=7)
TOKENIZER = train_wordpiece_tokenizer([*all_texts(SAMPLES), "no nodule"], 300)
D, GRID = 32, 8  # tiny_config: embed_dim 32, 64 px images in 8 px patches
ALWAYS = {"image_global", "image", "text", "text_ids", "logit_scale"}
REGION = {
    "region",
    "region_batch",
    "region_boxes",
    "phrase",
    "phrase_ids",
    "hard_negative",
    "hard_negative_mask",
    "patch_grid",
}
BOX = {"box_pred", "box_fits"}  # a model with a box head, given the collator's box_anchor_offset
CELLS = {"cell_region", "cell_boxes"}
QUERIES = {"ground_phrase", "ground_region", "ground_group"}
# both ways the cells are embedded: apart from the proposals (fusion path) and as the proposals
ROI_SETTINGS = [
    {"cell_path": "fusion", "grid_sizes": [2, 3, 4], "proposals": "grid", "box_head": TINY_BOX_HEAD},
    {"cell_path": "direct", "grid_sizes": [GRID], "proposals": "similarity", "box_head": TINY_BOX_HEAD},
]


def _model(global_only=False, **roi) -> RegionCLIP:
    torch.manual_seed(0)
    return RegionCLIP(tiny_config(**roi), vocab_size=len(TOKENIZER), global_only=global_only).eval()


@pytest.fixture(scope="module")
def batch():
    return collate(
        [dict(s, negation_text="no nodule" if i % 2 else "") for i, s in enumerate(SAMPLES)], TOKENIZER
    )


def _set_fields(out: RegionCLIPOutput) -> set[str]:
    return {f.name for f in dataclasses.fields(out) if getattr(out, f.name) is not None}


def test_every_field_is_documented_with_its_shape():
    doc = RegionCLIPOutput.__doc__
    for field in dataclasses.fields(RegionCLIPOutput):
        entry = re.search(rf"^\s+{field.name}: (.+)$", doc, re.MULTILINE)
        assert entry, f"{field.name} is not documented"
        assert "``[" in entry.group(1) or field.name in {"text", "text_ids"}, f"{field.name}: no shape"
    assert set(Grounding._fields) == {"heatmap", "box"}


def test_global_only_sets_the_global_fields_and_nothing_of_the_region_path(batch):
    levels = ("report", "finding_text", "negation_text")
    out = _model(global_only=True)(batch, text_levels=levels, ground_cells=True)
    b = len(SAMPLES)
    assert isinstance(out, RegionCLIPOutput) and not out.has_regions and not out.has_cells
    assert _set_fields(out) == ALWAYS | {"negation_mask"}
    assert out.image is out.image_global and out.image.shape == (b, D)
    assert set(out.text) == set(out.text_ids) == set(levels)
    assert all(t.shape == (b, D) for t in out.text.values())
    assert all(i.shape == (b,) and i.dtype == torch.int64 for i in out.text_ids.values())
    assert out.logit_scale.shape == () and out.negation_mask.tolist() == [False, True, False, True]


@pytest.mark.parametrize("roi", ROI_SETTINGS)
def test_region_mode_sets_the_region_fields_and_the_cells_only_when_asked(batch, roi):
    model = _model(**roi)
    b, n = len(SAMPLES), len(batch["region_boxes"])
    m, k = len(batch["ground_index"]), batch["hard_negative_index"].shape[1]
    plain = model(batch, text_levels=("report",))
    assert _set_fields(plain) == ALWAYS | {"negation_mask"} | REGION | QUERIES | BOX
    assert plain.box_pred.shape == (n, 4) and plain.patch_grid == (GRID, GRID)
    assert plain.has_regions and not plain.has_cells and set(plain.text) == {"report"}
    assert plain.region.shape == plain.phrase.shape == (n, D) and plain.phrase_ids.shape == (n,)
    assert plain.hard_negative.shape == (n, k, D) and plain.hard_negative_mask.shape == (n, k)
    assert plain.hard_negative_mask.dtype == torch.bool
    torch.testing.assert_close(plain.region_boxes, batch["region_boxes"])
    assert torch.equal(plain.region_batch, batch["region_batch"])
    assert plain.ground_phrase.shape == (m, D) and plain.ground_group.shape == (m, n)
    assert plain.ground_region.shape == (m,) and m >= n  # every phrase is a query, plus any others
    assert not torch.allclose(plain.image, plain.image_global)  # the region-aware embedding

    cells = model(batch, text_levels=("report",), ground_cells=True)
    assert _set_fields(cells) == _set_fields(plain) | CELLS and cells.has_cells
    assert cells.cell_region.shape == (b, GRID * GRID, D) and cells.cell_boxes.shape == (GRID * GRID, 4)
    torch.testing.assert_close(cells.region, plain.region, atol=1e-5, rtol=0)


def test_a_batch_without_regions_or_queries_leaves_those_fields_none(batch):
    model = _model(**ROI_SETTINGS[0])
    images_only = model({k: batch[k] for k in ("pixels", "report")}, ground_cells=True)
    assert _set_fields(images_only) == ALWAYS  # no regions: no cells either, and no negation mask
    assert images_only.image.shape == (len(SAMPLES), D)
    no_queries = {
        k: v for k, v in batch.items() if k not in ("ground_index", "ground_region", "ground_group")
    }
    assert _set_fields(model(no_queries)) == ALWAYS | {"negation_mask"} | REGION | BOX
    no_anchors = {k: v for k, v in no_queries.items() if k != "box_anchor_offset"}
    assert _set_fields(model(no_anchors)) == ALWAYS | {"negation_mask"} | REGION
    no_head = _model(**{**ROI_SETTINGS[0], "box_head": None})
    assert _set_fields(no_head(no_queries)) == _set_fields(model(no_anchors))


def test_dict_access_fails_loudly_and_the_output_is_frozen(batch):
    out = _model(global_only=True)(batch, text_levels=("report",))
    with pytest.raises(TypeError, match=r"read out\.region, not out\['region'\]"):
        out["region"]
    with pytest.raises(TypeError, match=r"out\.image_global is not None"):
        "image_global" in out  # noqa: B015  (the membership test itself must raise)
    with pytest.raises(AttributeError):
        out.get("region")
    with pytest.raises(AttributeError):
        out.regions  # noqa: B018  (a misspelt field is an error, not a None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.region = out.image
    with pytest.raises(AttributeError, match="logit_scale"):  # a dict where an output belongs
        hierarchical_loss({"logit_scale": out.logit_scale}, {"global": 1.0}, ClipLoss())


def test_the_repr_shows_shapes_not_values(batch):
    out = _model(**ROI_SETTINGS[1])(batch, text_levels=("report",))
    text = repr(out)
    n = len(batch["region_boxes"])
    assert f"region=[{n}, {D}]" in text and "cell_region=None" in text and "report" in text
    assert "tensor(" not in text


@pytest.mark.parametrize("global_only", [False, True])
def test_ground_returns_a_named_heatmap_and_box(batch, global_only):
    model = _model(global_only, **ROI_SETTINGS[1])
    phrase = model.encode_text(**{k: v[:2] for k, v in batch["finding_text"].items()})
    result = model.ground(batch["pixels"][:2], phrase)
    assert isinstance(result, Grounding)
    assert result.heatmap.shape == (2, GRID, GRID) and result.box.shape == (2, 4)
    heat, box = result  # still unpacks as the (heatmap, box) pair
    assert heat is result.heatmap and box is result.box
