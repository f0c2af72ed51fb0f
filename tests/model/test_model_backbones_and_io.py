"""Pretrained backbones (tiny HF models saved here) and the export/load round trip."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers.model_batches import all_texts, collate, phantom_samples, tiny_config
from helpers.params import tiny_model_config
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from regionmed.model import RegionCLIP, export_model, load_model, train_wordpiece_tokenizer
from regionmed.model.config import ModelConfig
from regionmed.model.io import split_shared

SAMPLES = phantom_samples(4)
TOKENIZER = train_wordpiece_tokenizer(all_texts(phantom_samples(40)), 400)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """A tiny RGB ViT (native 32 px, with a pooler) and a tiny BERT, saved like hub checkpoints."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(1)
    vit = ViTModel(
        ViTConfig(
            image_size=32,
            patch_size=8,
            num_channels=3,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=96,
        )
    )
    vit.save_pretrained(str(root / "vit"))
    bert = BertModel(
        BertConfig(
            vocab_size=len(TOKENIZER),
            hidden_size=40,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=80,
            max_position_embeddings=64,
        )
    )
    bert.save_pretrained(str(root / "bert"))
    return root, vit.eval(), bert.eval()


def _pretrained_config(root) -> ModelConfig:
    return tiny_model_config(
        vision={"backbone": str(root / "vit"), "image_size": 64, "channels": 1},
        text={"backbone": str(root / "bert")},
        embed_dim=16,
        roi={"fusion_heads": 2},
    )


def test_pretrained_backbones_load_their_weights(backbones):
    root, vit, bert = backbones
    model = RegionCLIP(_pretrained_config(root), vocab_size=len(TOKENIZER)).eval()
    enc = model.image_encoder
    assert enc.backbone.pooler is None and enc.hidden == 48
    torch.testing.assert_close(
        enc.backbone.embeddings.patch_embeddings.projection.weight,
        vit.embeddings.patch_embeddings.projection.weight,
    )
    # grayscale at 64 px into an RGB backbone trained at 32 px: channels repeated, positions resampled
    gray = torch.rand(2, 1, 64, 64)
    global_feat, grid = enc(gray)
    assert grid.shape == (2, 48, 8, 8)
    expected = vit(pixel_values=gray.expand(-1, 3, -1, -1), interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(global_feat, expected[:, 0])
    ids = TOKENIZER(["no effusion"], return_tensors="pt")
    torch.testing.assert_close(
        model.text_encoder(ids["input_ids"], ids["attention_mask"]), bert(**ids).last_hidden_state[:, 0]
    )


def test_export_then_load_gives_identical_embeddings(tmp_path):
    torch.manual_seed(0)
    config = tiny_config()
    model = RegionCLIP(config, vocab_size=len(TOKENIZER)).eval()
    out = export_model(model, TOKENIZER, config, tmp_path / "m", {"phase": "joint", "steps": 3})
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "model.safetensors",
        "config.json",
        "hf/vision/config.json",
        "hf/text/config.json",
        "tokenizer/tokenizer.json",
    } <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl", ".ckpt")) for f in files)  # no pickles
    doc = json.loads((out / "config.json").read_text())
    assert doc["meta"] == {"phase": "joint", "steps": 3} and doc["global_only"] is False
    assert ModelConfig.model_validate(doc["model"]) == config
    loaded, tokenizer = load_model(out)
    batch = collate(SAMPLES, tokenizer)
    assert torch.equal(batch["report"]["input_ids"], collate(SAMPLES, TOKENIZER)["report"]["input_ids"])
    pixels, boxes = batch["pixels"], [s["boxes"] for s in SAMPLES]
    with torch.no_grad():
        for fn, args in (
            ("encode_image", (pixels,)),
            ("encode_image_global", (pixels,)),
            ("encode_text", (batch["report"]["input_ids"], batch["report"]["attention_mask"])),
            ("encode_regions", (pixels, boxes)),
        ):
            assert torch.equal(getattr(model, fn)(*args), getattr(loaded, fn)(*args)), fn
    assert not loaded.training


def test_export_of_pretrained_backbones_needs_no_backbone_to_load(backbones, tmp_path):
    root, _, _ = backbones
    hub = tmp_path / "hub"
    shutil.copytree(root, hub)
    config = _pretrained_config(hub)
    model = RegionCLIP(config, vocab_size=len(TOKENIZER), global_only=True).eval()
    out = export_model(model, TOKENIZER, config, tmp_path / "m", {})
    shutil.rmtree(hub)  # serving has no access to the original checkpoints
    loaded, _ = load_model(out)
    assert loaded.global_only
    pixels = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.encode_image(pixels), loaded.encode_image(pixels))


def test_tied_tensors_are_stored_once_and_restored(tmp_path):
    torch.manual_seed(0)
    config = tiny_config()
    model = RegionCLIP(config, vocab_size=len(TOKENIZER)).eval()
    model.region_proj.weight = model.image_proj.weight  # tie two heads of the same shape
    out = export_model(model, TOKENIZER, config, tmp_path / "m", {})
    stored = load_file(str(out / "model.safetensors"))
    assert ("region_proj.weight" in stored) != ("image_proj.weight" in stored)
    loaded, _ = load_model(out)
    torch.testing.assert_close(loaded.region_proj.weight, model.image_proj.weight)
    kept, aliases = split_shared({"a": model.image_proj.weight, "b": model.region_proj.weight})
    assert list(kept) == ["a"] and aliases == {"b": "a"}


def test_the_same_weights_export_to_the_same_bytes(tmp_path):
    """safetensors writes its metadata in a hash map's order, which changes between calls: the header is
    rewritten sorted, so DVC sees the same file for the same weights (six exports: 1/32 to pass by luck)."""
    torch.manual_seed(0)
    config = tiny_config()
    model = RegionCLIP(config, vocab_size=len(TOKENIZER)).eval()
    outs = [export_model(model, TOKENIZER, config, tmp_path / f"m{i}", {}) for i in range(6)]
    weights = {(out / "model.safetensors").read_bytes() for out in outs}
    assert len(weights) == 1
    loaded, _ = load_model(outs[0])
    expected = model.state_dict()
    assert all(torch.equal(t, expected[name]) for name, t in loaded.state_dict().items())
