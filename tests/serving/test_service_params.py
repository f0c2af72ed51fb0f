"""Where the service reads its settings: $REGIONMED_PARAMS, else the params packaged with its model,
else params.yaml in the working directory; with none, an error naming what it tried (never defaults)."""

from __future__ import annotations

import pytest
from helpers.params import write_params

from regionmed.serving import settings


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """A working directory without params.yaml, no REGIONMED_* variable, no model in the store."""
    for name in (settings.ENV_PARAMS, settings.ENV_MODEL_DIR, settings.ENV_MODEL_TAG):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "_store_model_folder", lambda tag: None)
    return tmp_path


def _store(monkeypatch, folders: dict[str, object]) -> None:
    monkeypatch.setattr(settings, "_store_model_folder", folders.get)


def test_the_variable_comes_first(bare, monkeypatch):
    write_params(bare / "params.yaml", {"serving": {"port": 3001}})
    chosen = write_params(bare / "elsewhere.yaml", {"serving": {"port": 3002}})
    monkeypatch.setenv(settings.ENV_PARAMS, str(chosen))
    assert settings.service_params_file() == chosen
    assert settings.load_serving_params().port == 3002


def test_a_variable_naming_no_file_is_an_error(bare, monkeypatch):
    monkeypatch.setenv(settings.ENV_PARAMS, str(bare / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml \(from \$REGIONMED_PARAMS\) does not exist"):
        settings.load_serving_params()


def test_the_params_packaged_with_the_bentos_model_come_before_the_working_directorys(bare, monkeypatch):
    write_params(bare / "params.yaml", {"serving": {"port": 3001}})
    store_model = bare / "store" / "regionmed" / "v1"
    write_params(store_model / settings.STORE_PARAMS_FILE, {"serving": {"port": 3003}})
    _store(monkeypatch, {settings.MODEL_ALIAS: store_model})
    assert settings.load_serving_params().port == 3003


def test_the_params_of_the_tagged_model_and_not_the_bentos(bare, monkeypatch):
    tagged, bentos = bare / "tagged", bare / "bentos"
    write_params(tagged / settings.STORE_PARAMS_FILE, {"serving": {"port": 3004}})
    write_params(bentos / settings.STORE_PARAMS_FILE, {"serving": {"port": 3005}})
    _store(monkeypatch, {"regionmed:v2": tagged, settings.MODEL_ALIAS: bentos})
    monkeypatch.setenv(settings.ENV_MODEL_TAG, "regionmed:v2")
    assert settings.load_serving_params().port == 3004


def test_the_working_directorys_params_yaml_last(bare, monkeypatch):
    _store(monkeypatch, {settings.MODEL_ALIAS: bare / "model-without-params"})
    write_params(bare / "params.yaml", {"serving": {"port": 3006}})
    assert settings.service_params_file().resolve() == (bare / "params.yaml").resolve()
    assert settings.load_serving_params().port == 3006


def test_no_params_anywhere_stops_with_what_was_tried(bare, monkeypatch):
    monkeypatch.setenv(settings.ENV_MODEL_TAG, "regionmed:gone")
    with pytest.raises(FileNotFoundError) as info:
        settings.load_serving_params()
    message = str(info.value)
    assert "$REGIONMED_PARAMS is not set" in message
    assert "$REGIONMED_MODEL_TAG=regionmed:gone (none)" in message
    assert str((bare / "params.yaml").resolve()) in message
