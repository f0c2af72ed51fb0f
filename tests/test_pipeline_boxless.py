"""`dvc repro` on your own data without boxes or QA (captioned images, as MedPix or ROCO give them):
every stage up to the gate must run and report what the data allows, and leave out, by name, what
it does not (grounding, hard negatives, VQA)."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers.params import repo_params_dict
from helpers.pipeline_copy import clean_copy, run
from helpers.reduced_pipeline import REDUCED

from regionmed.corpus.schema import read_manifest
from regionmed.corpus.shards import image_bytes

# metrics that need regions or QA: absent on such data, so not in the floors or the baseline checks
NEEDS_BOXES_OR_QA = ("grounding/", "hardneg/", "vqa/", "vs_prior/")


def _boxless_records(tmp_path, data_dir) -> int:
    """A captioned-image JSONL (id, image, report, patient, split, modality, body part, labels; no
    regions, no QA) from the images and reports of a small synthetic corpus."""
    from helpers.params import default_params

    from regionmed.corpus.build import build_corpus

    params = default_params(
        {"corpus": {"image_size": 64, "synthetic": {"n_images": 480}, "out_dir": str(tmp_path / "synthetic")}}
    )
    build_corpus(params, tmp_path / "synthetic", progress=False)
    manifest = read_manifest(tmp_path / "synthetic")
    (data_dir / "images").mkdir(parents=True)
    with open(data_dir / "records.jsonl", "w") as out:
        for row in manifest.itertuples():
            (data_dir / "images" / f"{row.image_id}.png").write_bytes(
                image_bytes(tmp_path / "synthetic" / row.image_path)
            )
            out.write(
                json.dumps(
                    {
                        "id": row.image_id,
                        "image": f"images/{row.image_id}.png",
                        "report": row.report,
                        "patient_id": row.patient_id,
                        "split": row.split,
                        "modality": row.modality,
                        "body_part": row.body_part,
                        "labels": list(row.labels),
                    }
                )
                + "\n"
            )
    return len(manifest)


@pytest.mark.slow
def test_dvc_repro_on_captioned_images_without_boxes_or_qa(tmp_path):
    repo = clean_copy(
        tmp_path / "repo",
        {
            **REDUCED,
            "corpus": {
                **REDUCED["corpus"],
                "source": "jsonl",
                "importer": {"path": "data/boxless/records.jsonl"},
            },
        },
    )
    # the default gate, as a user importing such data gets it: the synthetic corpus's floors are reported
    # only, what needs boxes is skipped by name, and retrieval is judged against the baseline
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["gate"] = repo_params_dict()["gate"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    n_records = _boxless_records(tmp_path, repo / "data" / "boxless")

    result = run(["dvc", "repro", "gate"], repo)
    assert "Running stage 'evaluate'" in result.stdout and "Running stage 'gate'" in result.stdout
    assert len(read_manifest(repo / "data/corpus")) == n_records
    assert read_manifest(repo / "data/corpus")["regions"].map(len).sum() == 0
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    for model in ("regionmed", "baseline"):
        for metric in ("retrieval/i2t_R@5", "retrieval/t2i_R@5", "zeroshot/macro_auroc"):
            assert 0 <= evaluation[model][metric]["value"] <= 1, (model, metric)
            assert evaluation[model][metric]["low"] <= evaluation[model][metric]["high"]
        scored = [
            m
            for m, v in evaluation[model].items()
            if m.startswith(NEEDS_BOXES_OR_QA) and v.get("value") is not None
        ]
        assert not scored, f"{model}: metrics that need boxes or QA were scored without any: {scored}"
    assert "zeroshot/macro_auroc" in evaluation["difference"]
    assert "no finding regions" in (repo / "reports/eval_gallery/README.md").read_text()
    assert not list((repo / "reports/eval_gallery").glob("*.png"))
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["passed"] is True, gate
    # the default relative floors name grounding: without boxes it is skipped by name, not failed
    skipped = {c["metric"] for c in gate["comparisons"] if "not measured" in c["note"]}
    assert {"grounding/full/lenient", "grounding/locfree/strict"} <= skipped, gate
    annotator = json.loads((repo / "models/annotator/annotator.json").read_text())
    assert (
        annotator["trained"] is False and annotator["boxed_train_images"] == 0
    )  # auto: nothing to learn from
