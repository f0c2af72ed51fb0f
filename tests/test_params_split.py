"""Params split by stage: the pipeline's stages read a root that holds none of the operations'
settings, so a change to ``serving.*``, ``monitor.*`` or ``flows.*`` reruns none of them."""

from __future__ import annotations

import pytest
import yaml
from helpers.params import REPO_PARAMS, repo_params_dict, write_params
from helpers.stage_closure import resolved_stages

from regionmed.params import Params, load_params
from regionmed.params_loader import ALL_SECTIONS, SECTIONS, ParamsError
from regionmed.params_operations import OperationsParams, load_operations_params
from regionmed.params_pipeline import PipelineParams, load_pipeline_params

STAGES = resolved_stages()
OPERATIONS_CODE = "regionmed/params_operations.py"


def upstream_of_package() -> set[str]:
    """The stages ``package`` depends on through their outputs, directly or not."""
    found, todo = set(), ["package"]
    while todo:
        deps = STAGES[todo.pop()]["deps"]
        for name, stage in STAGES.items():
            outs = stage["outs"] + stage["metrics"]
            if name not in found and any(
                d == o or d.startswith(o.rstrip("/") + "/") for d in deps for o in outs
            ):
                found.add(name)
                todo.append(name)
    return found


def test_the_section_lists_are_the_roots_fields():
    assert set(SECTIONS["pipeline"]) == set(PipelineParams.model_fields)
    assert set(SECTIONS["operations"]) == set(OperationsParams.model_fields)
    assert set(Params.model_fields) == ALL_SECTIONS == set(repo_params_dict())


def test_no_stage_before_package_reads_the_operations_settings():
    before = upstream_of_package()
    assert {"build_corpus", "annotate_regions", "validate_corpus", "evaluate", "gate"} <= before
    assert "pretrain_joint" in before and "package" not in before
    for name in sorted(before):
        stage = STAGES[name]
        assert OPERATIONS_CODE not in stage["deps"] and "regionmed/params.py" not in stage["deps"], name
        keys = [k for k in stage["params"] if k.split(".")[0] in SECTIONS["operations"]]
        assert keys == [], f"{name} declares operations params {keys}"


def test_each_root_reads_its_own_sections_and_ignores_the_others(tmp_path):
    path = write_params(tmp_path / "params.yaml", {"serving": {"port": 3100}, "train": {"batch_size": 8}})
    pipeline, operations = load_pipeline_params(path), load_operations_params(path)
    assert pipeline.train.batch_size == 8 and not hasattr(pipeline, "serving")
    assert operations.serving.port == 3100 and not hasattr(operations, "train")
    full = load_params(path)
    assert full.train == pipeline.train and full.serving == operations.serving
    # a file without the other group's sections is enough for a root
    raw = repo_params_dict()
    only_pipeline = {k: v for k, v in raw.items() if k in SECTIONS["pipeline"]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(only_pipeline))
    assert load_pipeline_params(tmp_path / "pipeline.yaml") == load_pipeline_params(REPO_PARAMS)
    with pytest.raises(ParamsError, match="serving: Field required"):
        load_params(tmp_path / "pipeline.yaml")


@pytest.mark.parametrize("loader", [load_pipeline_params, load_operations_params, load_params])
def test_an_unknown_section_and_a_typo_inside_one_are_errors_naming_them(tmp_path, loader):
    raw = repo_params_dict()
    raw["servings"] = {"port": 1}
    (tmp_path / "top.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"servings: Extra inputs are not permitted"):
        loader(tmp_path / "top.yaml")
    section = "serving" if loader is load_operations_params else "train"
    raw = repo_params_dict()
    raw[section]["batch_sise"] = 8
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=rf"{section}\.batch_sise: Extra inputs are not permitted"):
        loader(tmp_path / "typo.yaml")
