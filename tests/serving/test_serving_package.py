"""The package stage: store model with its provenance, the Bento, the champion the gate reads."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from helpers.params import write_params
from helpers.servers import REPO_ROOT

BENTOFILE = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())


def test_bentofile_pins_the_versions_this_project_runs():
    pins = dict(p.split("==") for p in BENTOFILE["python"]["packages"])
    assert len(pins) == len(BENTOFILE["python"]["packages"]), "every package pinned with =="
    for name, pinned in pins.items():
        assert version(name).split("+")[0] == pinned, (name, version(name), pinned)
    assert BENTOFILE["python"]["lock_packages"] is False  # locking resolves against the public index
    assert {"torch", "transformers", "bentoml", "pydicom", "pillow"} <= set(pins)


def test_bentofile_service_alias_and_includes_match_the_code():
    from regionmed.serving.settings import MODEL_ALIAS

    assert BENTOFILE["service"] == "regionmed.serving.service:RegionMedService"
    assert BENTOFILE["models"] == [{"tag": "regionmed:latest", "alias": MODEL_ALIAS}]
    assert {"params.yaml", "regionmed/**/*.yaml", "regionmed/quiet.env"} <= set(BENTOFILE["include"])
    # a v1 Bento on a Python 3.11 base image, through the template that installs no compiler or git
    assert BENTOFILE["docker"]["base_image"].startswith("python:3.11")
    assert (REPO_ROOT / BENTOFILE["docker"]["dockerfile_template"]).is_file()
    envs = {e["name"]: e for e in BENTOFILE["envs"]}
    assert "stage" not in envs["BENTOML_HOST"] and envs["UV_INDEX_STRATEGY"]["stage"] == "build"


def test_package_saves_the_model_with_its_provenance(packaged, tiny):
    from bentoml._internal.models import ModelStore

    from regionmed.serving.package import resolve_bentoml_home

    record = packaged["record"]
    assert record["model_tag"].startswith("regionmed:") and record["bento_tag"].startswith(
        "regionmed_service:"
    )
    assert record["gate_passed"] is True and record["forced"] is False
    home = resolve_bentoml_home(packaged["params"])
    model = ModelStore(home / "models").get(record["model_tag"])
    meta, labels = model.info.metadata, model.info.labels
    assert meta["metrics"] == {
        "retrieval/i2t_R@5": 0.5,
        "grounding/full/lenient": 0.7,
        "vs_prior/grounding/full/lenient_low": 0.01,
    }
    assert (
        meta["gate"]["passed"] is True
        and len(meta["git_rev"]) == 40
        and set(meta["dvc"]) == {"corpus", "weights"}
    )
    assert labels["project"] == "regionmed" and labels["gate"] == "passed"
    root = Path(model.path)
    assert (root / "model/model.safetensors").is_file() and (root / "index/embeddings.npy").is_file()
    assert json.loads((root / "index/index.json").read_text())["model_version"] == record["model_tag"]
    assert (Path(packaged["params"].serving.index_dir) / "index.json").is_file()  # the repo copy (a DVC out)
    assert json.loads(Path(packaged["params"].serving.metrics_file).read_text()) == record


def test_the_store_model_carries_the_params_it_was_packaged_with(packaged, monkeypatch, tmp_path):
    from bentoml._internal.models import ModelStore

    from regionmed.params import load_params
    from regionmed.serving import settings
    from regionmed.serving.package import resolve_bentoml_home

    tag = packaged["record"]["model_tag"]
    folder = Path(ModelStore(resolve_bentoml_home(packaged["params"]) / "models").get(tag).path)
    stored = folder / settings.STORE_PARAMS_FILE
    assert load_params(stored) == packaged["params"]
    # served outside the repository by its tag, the model brings its own settings
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(settings.ENV_PARAMS, raising=False)
    monkeypatch.delenv(settings.ENV_MODEL_DIR, raising=False)
    monkeypatch.setenv(settings.ENV_MODEL_TAG, tag)
    assert settings.service_params_file() == stored


def test_the_champion_is_what_the_gate_reads(packaged):
    from regionmed.evaluation.champion import read_champion
    from regionmed.evaluation.gate import decide

    champion = read_champion(packaged["params"].gate.champion_file)
    assert (
        champion["tag"] == packaged["record"]["model_tag"]
        and champion["bento"] == packaged["record"]["bento_tag"]
    )
    worse = {"retrieval/i2t_R@5": 0.4, "grounding/full/lenient": 0.7}
    decision = decide(
        candidate=worse,
        floors={"retrieval/i2t_R@5": 0.0, "grounding/full/lenient": 0.0},
        champion=champion["metrics"],
        champion_margin=0.02,
    )
    assert not decision.passed and [c.metric for c in decision.failures] == ["retrieval/i2t_R@5"]


def test_the_bento_carries_code_params_and_the_pinned_model(packaged):
    from regionmed.serving.package import resolve_bentoml_home

    name, ver = packaged["record"]["bento_tag"].split(":")
    bento = resolve_bentoml_home(packaged["params"]) / "bentos" / name / ver
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["models"][0]["tag"] == packaged["record"]["model_tag"]
    assert info["models"][0]["alias"] == "regionmed-model"
    assert info["services"][0]["config"]["http"]["host"] == "127.0.0.1"
    src = bento / "src"
    assert (src / "params.yaml").is_file() and (src / "regionmed/prompts/zeroshot.yaml").is_file()
    assert (src / "regionmed/serving/service.py").is_file()
    assert not any(p.name in ("data", "models", "tests", ".state") for p in src.iterdir())
    assert "torch==2.13.0" in (bento / "env/python/requirements.txt").read_text()
    # a v1 Bento (docker.dockerfile_template): the index options go to install.sh's pip arguments
    assert (
        "--extra-index-url https://download.pytorch.org/whl/cpu"
        in (bento / "env/python/install.sh").read_text()
    )


def test_containerize_would_build_the_right_image(packaged, monkeypatch):
    """The Dockerfile `bentoml containerize` generates (no Docker needed to render it). BentoML's own
    (a "v2" Bento) runs `apt-get install build-essential git`; docker/Dockerfile.j2 does not."""
    import bentoml
    from bentoml._internal.container import construct_containerfile

    monkeypatch.chdir("/")  # BentoML resolves the template inside its temporary context, relative to the cwd
    with construct_containerfile(
        bentoml.bentos.get(packaged["record"]["bento_tag"]), enable_buildkit=True
    ) as (_, df):
        dockerfile = Path(df).read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "ENV BENTOML_HOST=$BENTOML_HOST" in dockerfile and "ARG BENTOML_HOST=0.0.0.0" in dockerfile
    assert "ARG UV_INDEX_STRATEGY=unsafe-best-match" in dockerfile
    for word in ("build-essential", "apt-get", " git"):
        assert word not in dockerfile, word
    # the Bento's env/python (and the offline build's torch wheel) is mounted to install, never a layer
    assert "COPY . ./" not in dockerfile and "--mount=type=bind,source=env/python" in dockerfile
    assert "COPY --chown=bentoml:bentoml ./models ./models" in dockerfile and "USER bentoml" in dockerfile
    for var in ("DO_NOT_TRACK", "BENTOML_DO_NOT_TRACK", "HF_HUB_OFFLINE"):
        assert f"ENV {var}=" in dockerfile


def test_package_refuses_a_failed_gate(packaged, tmp_path):
    from regionmed.serving import stage
    from regionmed.serving.package import GateNotPassed, PackageError

    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"passed": False, "n_failed": 2}))
    params = packaged["params"].model_copy(
        update={
            "gate": packaged["params"].gate.model_copy(
                update={"decision_file": str(gate), "champion_file": str(tmp_path / "champion.json")}
            )
        }
    )
    with pytest.raises(GateNotPassed, match="did not pass"):
        stage.run(params, root=REPO_ROOT, build=False)
    assert not (tmp_path / "champion.json").exists()
    params = params.model_copy(
        update={"gate": params.gate.model_copy(update={"decision_file": str(tmp_path / "none")})}
    )
    with pytest.raises(PackageError, match="run the gate"):
        stage.run(params, root=REPO_ROOT, build=False)


def test_cli_package_without_a_gate_decision_exits_2_with_the_reason(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from regionmed.cli import app

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", {"gate": {"decision_file": "nowhere.json"}})
    result = CliRunner().invoke(app, ["package", "--params", "params.yaml", "--no-build"])
    assert result.exit_code == 2 and "package: bad input: no gate decision" in result.output
    assert "run the gate stage first" in result.output


def test_dvc_hashes_come_from_the_lock_file(tmp_path):
    from regionmed.serving.package import dvc_hashes

    (tmp_path / "dvc.lock").write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "build_corpus": {"outs": [{"path": "data/corpus", "md5": "abc.dir"}]},
                    "pretrain_joint": {
                        "outs": [{"path": "models/regionmed", "md5": "def.dir"}, {"path": "dvclive/joint"}]
                    },
                },
            }
        )
    )
    found = dvc_hashes(
        {"corpus": "data/corpus", "weights": "models/regionmed/", "other": "x"}, tmp_path / "dvc.lock"
    )
    assert found == {"corpus": "abc.dir", "weights": "def.dir", "other": None}
