"""An exported model's config.json is complete; one written before a field existed is completed from
the explicit legacy table of regionmed/model/io.py, never from class defaults (there are none)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.model_batches import TINY_BOX_HEAD, all_texts, phantom_samples
from helpers.params import tiny_model_config
from pydantic import ValidationError

from regionmed.model import RegionCLIP, export_model, load_model, train_wordpiece_tokenizer
from regionmed.model.config import ModelConfig
from regionmed.model.io import CONFIG_FILE, LEGACY_MODEL_FIELDS, WEIGHTS_FILE, read_config

TOKENIZER = train_wordpiece_tokenizer(all_texts(phantom_samples(10)), 200)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = tiny_model_config(
        vision={"image_size": 32, "patch_size": 8, "hidden": 32, "layers": 1, "heads": 2, "mlp": 64},
        text={"hidden": 32, "layers": 1, "heads": 2, "mlp": 64, "max_length": 32},
        roi={"fusion_heads": 2, "box_head": TINY_BOX_HEAD},
        embed_dim=16,
    )
    torch.manual_seed(0)
    model = RegionCLIP(config, vocab_size=len(TOKENIZER)).eval()
    return export_model(model, TOKENIZER, config, tmp_path_factory.mktemp("exported") / "model"), config


def _edit_config(folder, edit) -> None:
    path = folder / CONFIG_FILE
    document = json.loads(path.read_text())
    edit(document["model"])
    path.write_text(json.dumps(document))


def test_an_exported_config_states_every_field(exported):
    folder, config = exported
    written = json.loads((folder / CONFIG_FILE).read_text())["model"]
    assert ModelConfig.model_validate(written) == config
    assert set(written["roi"]) == set(type(config.roi).model_fields)


def test_a_config_from_before_the_legacy_fields_loads_with_their_old_values(exported, tmp_path):
    import shutil

    folder, config = exported
    old = shutil.copytree(folder, tmp_path / "old")

    def drop_legacy(model: dict) -> None:
        for section, name in LEGACY_MODEL_FIELDS:
            del model[section][name]

    _edit_config(old, drop_legacy)
    _drop_weights(old, "box_head.")  # a model from before the box head has no weights of it
    legacy, _ = read_config(old)
    assert legacy.roi.cell_path == "fusion" and legacy.roi.fusion_dim is None and legacy.text.dropout == 0.1
    assert legacy.roi.box_head is None
    # what the legacy table does not cover is the file's own: unchanged
    changed = {"roi": {"cell_path", "box_head"}, "text": {"dropout"}}
    assert legacy.model_dump(exclude=changed) == config.model_dump(exclude=changed)
    model, _ = load_model(old)
    assert model.config.roi.cell_path == "fusion"
    assert model.box_head is None  # the weights of a model from before the box head hold none


def _drop_weights(folder, prefix: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = str(folder / WEIGHTS_FILE)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    kept = {k: v for k, v in load_file(path).items() if not k.startswith(prefix)}
    save_file(kept, path, metadata=metadata)


def test_a_field_missing_outside_the_legacy_table_is_an_error_naming_it(exported, tmp_path):
    import shutil

    folder, _ = exported
    broken = shutil.copytree(folder, tmp_path / "broken")
    _edit_config(broken, lambda model: model["roi"].pop("grid_sizes"))
    with pytest.raises(ValidationError, match=r"roi\.grid_sizes"):
        read_config(broken)
