"""A zero-step phase passes its warm-start weights through: joint-from-start training is
``phases.global.steps: 0`` + ``phases.region.steps: 0`` with the same DVC stages."""

from __future__ import annotations

import torch

from regionmed.model.io import load_model
from regionmed.training.train import train


def test_zero_step_phases_pass_weights_through_and_still_write_their_declared_outputs(
    tiny_training, tmp_path
):
    params, corpus, tokenizer = tiny_training
    skip = params.model_copy(
        update={
            "phases": {
                **params.phases,
                "global": params.phases["global"].model_copy(update={"steps": 0}),
                "joint": params.phases["joint"].model_copy(update={"steps": 0}),
            }
        }
    )
    first = train(
        skip,
        "global",
        corpus,
        tokenizer,
        tmp_path / "global",
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "dvclive" / "global",
    )
    assert first["steps"] == 0 and (tmp_path / "dvclive" / "global").is_dir()  # dvc.yaml declares it
    second = train(
        skip,
        "joint",
        corpus,
        tokenizer,
        tmp_path / "joint",
        init_from=tmp_path / "global",
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "dvclive" / "joint",
    )
    assert second["steps"] == 0 and (tmp_path / "dvclive" / "joint").is_dir()
    source, _ = load_model(tmp_path / "global")
    passed, _ = load_model(tmp_path / "joint")
    shared = source.state_dict()
    for name, value in passed.state_dict().items():
        if name in shared:
            torch.testing.assert_close(value, shared[name], rtol=0, atol=0)
    assert not passed.global_only and any(n.startswith("roi.") for n in passed.state_dict())


def test_each_image_gets_a_sentence_its_findings_contradict(tiny_training):
    from regionmed.training.data import CorpusDataset

    _params, corpus, _ = tiny_training
    data = CorpusDataset(corpus, "train", 1, 6)
    seen = {"deny": 0, "assert": 0}
    for i in range(len(data)):
        item = data[i]
        text, labels = item["negation_text"], set(item["labels"])
        findings = data.findings_by_modality[item["modality"]]
        label = next(f for f in findings if f in text.lower())
        if text.startswith(("No ", "There is no ")):
            assert label in labels  # a finding the image has, denied
            seen["deny"] += 1
        else:
            assert label not in labels  # a finding of its modality it lacks, asserted
            seen["assert"] += 1
    assert min(seen.values()) > len(data) // 5, seen
