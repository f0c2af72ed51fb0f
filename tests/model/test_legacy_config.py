"""An exported model's config.json is complete; one written before a field existed is completed from
the explicit legacy table of regionmed/model/io.py, never from class defaults (there are none)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.model_batches import all_texts, phantom_samples
from helpers.params import tiny_model_config
from pydantic import ValidationError

from regionmed.model import RegionCLIP, export_model, load_model, train_wordpiece_tokenizer
from regionmed.model.config import ModelConfig
from regionmed.model.io import CONFIG_FILE, LEGACY_MODEL_FIELDS, read_config

TOKENIZER = train_wordpiece_tokenizer(all_texts(phantom_samples(10)), 200)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = tiny_model_config(
        vision={"image_size": 32, "patch_size": 8, "hidden": 32, "layers": 1, "heads": 2, "mlp": 64},
        text={"hidden": 32, "layers": 1, "heads": 2, "mlp": 64, "max_length": 32},
        roi={"fusion_heads": 2},
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
    legacy, _ = read_config(old)
    assert legacy.roi.cell_path == "fusion" and legacy.roi.fusion_dim is None and legacy.text.dropout == 0.1
    # what the legacy table does not cover is the file's own: unchanged
    assert legacy.model_dump(exclude={"roi": {"cell_path"}, "text": {"dropout"}}) == config.model_dump(
        exclude={"roi": {"cell_path"}, "text": {"dropout"}}
    )
    model, _ = load_model(old)
    assert model.config.roi.cell_path == "fusion"


def test_a_field_missing_outside_the_legacy_table_is_an_error_naming_it(exported, tmp_path):
    import shutil

    folder, _ = exported
    broken = shutil.copytree(folder, tmp_path / "broken")
    _edit_config(broken, lambda model: model["roi"].pop("grid_sizes"))
    with pytest.raises(ValidationError, match=r"roi\.grid_sizes"):
        read_config(broken)
