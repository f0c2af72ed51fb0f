"""Location-free grounding queries: the augmentation that asks the image, not the words, where a finding
is."""

from __future__ import annotations

import pytest
import torch

from regionmed.corpus.phrases import strip_location
from regionmed.training.data import AugmentConfig, Collator, CorpusDataset


class _Tokenizer:  # the collator only needs padding-aware ids; texts are compared through the table
    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = torch.tensor([[hash(t) % 1000 + 1] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _items():
    boxes = torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.7, 0.7, 0.8, 0.8], [0.0, 0.0, 0.5, 1.0]])
    phrases = [
        "a small nodule in the right upper zone",
        "a small nodule in the left lower zone",
        "the right lung",
    ]
    base = {
        "pixels": torch.zeros(1, 4, 4),
        "texts": dict.fromkeys(("report", "modality_text", "anatomy_text", "finding_text"), "x"),
        "boxes": boxes,
        "phrases": phrases,
        "hard_negatives": [["n1"], ["n2"], ["the left lung"]],
        "region_kind": ["finding", "finding", "anatomy"],
        "region_size": ["small", "small", ""],
        "labels": ["nodule"],
        "modality": "chest_xray",
        "image_id": "a",
    }
    located = dict(base, image_id="b", location_free_queries=[])
    stripped = dict(base, location_free_queries=[0])
    return [stripped, located]


def test_collator_adds_location_free_queries_naming_every_region_they_describe():
    batch = Collator(_Tokenizer(), 8)(_items())
    # six regions ground their own phrase; one more query: region 0's phrase without its location
    assert batch["ground_index"].shape == (7,)
    own = [0, 1, 2, 4, 5, 6]  # queries in image order: image 0's three phrases and its extra, then image 1's
    assert torch.equal(batch["ground_index"][own], batch["phrase_index"])
    assert torch.equal(batch["ground_region"], torch.tensor([0, 1, 2, 0, 3, 4, 5]))
    assert batch["ground_index"][3] not in batch["phrase_index"]  # a new text, tokenised once
    expected = torch.zeros(7, 6, dtype=torch.bool)
    expected[own, torch.arange(6)] = True
    expected[3, [0, 1]] = (
        True  # "a small nodule" names both small nodules of image 0, not the lung, not image 1's
    )
    assert torch.equal(batch["ground_group"], expected)


def test_dataset_drops_location_words_only_from_findings_at_the_configured_rate(tiny_training):
    _, corpus, _ = tiny_training
    rates, strippable = {}, []
    for p in (0.0, 0.5, 1.0):
        data = CorpusDataset(corpus, "train", 1, 6, AugmentConfig(location_free=p), seed=3)
        changed = total = 0
        for i in range(len(data)):
            item = data[i]
            chosen = set(item["location_free_queries"])
            for k, (phrase, kind) in enumerate(zip(item["phrases"], item["region_kind"], strict=True)):
                has_location = kind == "finding" and strip_location(phrase) != phrase
                assert has_location or k not in chosen  # anatomy and "mild cardiomegaly" never
                total += 1
                changed += k in chosen
                strippable.append(has_location)
        rates[p] = changed / total
    assert total > 50
    share = sum(strippable) / len(strippable)
    assert share > 0.2  # of all regions, anatomy included
    assert rates[0.0] == 0 and rates[1.0] == pytest.approx(share)
    assert 0.35 * share < rates[0.5] < 0.65 * share
    # deterministic per (seed, epoch, index)
    data = CorpusDataset(corpus, "train", 1, 6, AugmentConfig(location_free=0.5), seed=3)
    assert [data[i]["location_free_queries"] for i in range(20)] == [
        data[i]["location_free_queries"] for i in range(20)
    ]


def test_the_training_step_grounds_the_location_free_queries():
    """The module must hand ``ground_index``/``ground_group`` to the model (a filter once dropped them)."""
    from helpers.model_batches import all_texts, phantom_samples, tiny_config

    from regionmed.model.losses import ClipLoss, hierarchical_loss
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.module import OptimConfig, RegionMedModule

    samples = phantom_samples(8, seed=5)
    tokenizer = train_wordpiece_tokenizer(
        all_texts(samples) + [strip_location(p) for s in samples for p in s["phrases"]], vocab_size=300
    )
    torch.manual_seed(0)
    model = RegionCLIP(tiny_config(), vocab_size=len(tokenizer))
    module = RegionMedModule(model, {"grounding": 1.0}, OptimConfig(1e-3, 0.0, 0, 10))
    located = Collator(tokenizer, 64)(samples)
    stripped = Collator(tokenizer, 64)(
        [
            dict(
                s,
                location_free_queries=[
                    k
                    for k, (p, kind) in enumerate(zip(s["phrases"], s["region_kind"], strict=True))
                    if kind == "finding" and strip_location(p) != p
                ],
            )
            for s in samples
        ]
    )
    assert len(stripped["ground_index"]) > len(stripped["phrase_index"])
    kept = module._batch_for(stripped)
    assert {"ground_index", "ground_region", "ground_group"} <= set(kept)
    model.eval()

    def grounding_loss(batch):  # what training_step computes, without a Trainer to log to
        outputs = model(module._batch_for(batch), text_levels=module.text_levels, ground_cells=True)
        return hierarchical_loss(outputs, module.loss_weights, ClipLoss())[0]

    with torch.no_grad():
        loss_located, loss_stripped = grounding_loss(located), grounding_loss(stripped)
    assert torch.isfinite(loss_stripped) and not torch.isclose(loss_located, loss_stripped)
