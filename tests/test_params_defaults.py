"""params.yaml is the one home of every default: the settings models have types, bounds and docs but
no values of their own, and params.yaml states every key (a missing one is an error naming it)."""

from __future__ import annotations

import typing

import pytest
import yaml
from helpers.params import REPO_PARAMS, default_params, repo_params_dict
from pydantic import BaseModel, ValidationError

from regionmed.model.config import ModelConfig
from regionmed.params import Params, ParamsError, load_params

ROOTS = (Params, ModelConfig)


def settings_models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """``root`` and every settings model reachable from its fields (in dicts, lists and unions too)."""
    found: set[type[BaseModel]] = set()

    def visit(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in found:
            found.add(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return found


def fields_with_defaults(root: type[BaseModel]) -> list[str]:
    return sorted(
        f"{model.__name__}.{name}"
        for model in settings_models(root)
        for name, field in model.model_fields.items()
        if not field.is_required()
    )


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: r.__name__)
def test_no_settings_model_has_a_default_of_its_own(root):
    assert len(settings_models(root)) >= 4  # the walk reaches the nested sections
    assert fields_with_defaults(root) == [], "defaults live in params.yaml only"


def test_the_check_sees_a_default():
    class Inner(BaseModel):
        size: int = 3

    class Outer(BaseModel):
        inner: dict[str, Inner]
        name: str

    assert fields_with_defaults(Outer) == ["Inner.size"]


def test_settings_cannot_be_built_from_nothing():
    with pytest.raises(ValidationError):
        Params()
    with pytest.raises(ValidationError):
        ModelConfig()


def stated_keys(raw, model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of ``model``'s fields that ``raw`` (a params file's dict) does not state."""
    missing = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if not isinstance(raw, dict) or name not in raw:
            missing.append(key)
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += stated_keys(raw[name], annotation, key + ".")
        elif typing.get_origin(annotation) is dict:
            item = typing.get_args(annotation)[1]
            if isinstance(item, type) and issubclass(item, BaseModel):
                for entry, value in raw[name].items():
                    missing += stated_keys(value, item, f"{key}.{entry}.")
    return missing


def test_params_yaml_states_every_key_and_loads():
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    assert stated_keys(raw, Params) == []
    assert set(raw["phases"]) == {"global", "region", "joint", "baseline"}
    params = load_params(REPO_PARAMS)
    assert params.model_dump(mode="json") == Params.model_validate(raw).model_dump(mode="json")


@pytest.mark.parametrize(
    "section, key", [("model.text", "dropout"), ("phases.joint", "global_only"), ("serving", "torch_threads")]
)
def test_a_key_missing_from_the_file_is_an_error_naming_it(tmp_path, section, key):
    raw = repo_params_dict()
    node = raw
    for part in section.split("."):
        node = node[part]
    del node[key]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=rf"{section}\.{key}: Field required"):
        load_params(path)


def test_overrides_merge_sections_and_replace_settings():
    params = default_params(
        {"gate": {"floors": {"hardneg/accuracy": 0.5}}, "phases": {"global": {"steps": 2}}, "seed": 3}
    )
    assert params.gate.floors == {"hardneg/accuracy": 0.5}  # a dict-valued setting is replaced whole
    assert params.phases["global"].steps == 2 and params.phases["global"].lr == 0.0005  # a section: merged
    assert params.phases["joint"].steps == 900 and params.seed == 3
