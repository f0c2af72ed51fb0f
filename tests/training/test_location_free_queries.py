"""Location-free grounding queries: the augmentation that asks the image, not the words, where a finding is."""

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
    phrases = ["a small nodule in the right upper zone", "a small nodule in the left lower zone", "the right lung"]
    base = {"pixels": torch.zeros(1, 4, 4), "texts": {lv: "x" for lv in ("report", "modality_text", "anatomy_text",
                                                                          "finding_text")},
            "boxes": boxes, "phrases": phrases, "hard_negatives": [["n1"], ["n2"], ["the left lung"]],
            "region_kind": ["finding", "finding", "anatomy"], "region_size": ["small", "small", ""],
            "labels": ["nodule"], "modality": "chest_xray", "image_id": "a"}
    located = dict(base, image_id="b", ground_phrases=list(phrases))
    stripped = dict(base, ground_phrases=["a small nodule", phrases[1], phrases[2]])
    return [stripped, located]


def test_collator_groups_every_region_a_location_free_query_names():
    batch = Collator(_Tokenizer(), 8)(_items())
    table = {int(i): k for k, i in enumerate(batch["text_table"]["input_ids"][:, 0])}
    assert batch["ground_index"].shape == (6,)
    # region 0's query is another table entry than its phrase; the other five query their own phrase
    assert batch["ground_index"][0] != batch["phrase_index"][0]
    assert torch.equal(batch["ground_index"][1:], batch["phrase_index"][1:])
    expected = torch.eye(6, dtype=torch.bool)
    expected[0, 1] = True  # "a small nodule" names both small nodules of image 0, not the lung, not image 1's
    assert torch.equal(batch["ground_group"], expected)
    assert table  # the stripped query is one more distinct text, tokenised once


def test_dataset_drops_location_words_only_from_findings_at_the_configured_rate(tiny_training):
    _, corpus, _ = tiny_training
    rates, strippable = {}, []
    for p in (0.0, 0.5, 1.0):
        data = CorpusDataset(corpus, "train", 1, 6, AugmentConfig(location_free=p), seed=3)
        changed = total = 0
        for i in range(len(data)):
            item = data[i]
            for phrase, query, kind in zip(item["phrases"], item["ground_phrases"], item["region_kind"]):
                if kind != "finding":
                    assert query == phrase
                    continue
                assert query in (phrase, strip_location(phrase))
                total += 1
                changed += query != phrase
                strippable.append(strip_location(phrase) != phrase)
        rates[p] = changed / total
    assert total > 50
    share = sum(strippable) / len(strippable)  # "mild cardiomegaly" has no location words to drop
    assert share > 0.8
    assert rates[0.0] == 0 and rates[1.0] == pytest.approx(share)
    assert 0.35 * share < rates[0.5] < 0.65 * share
    # deterministic per (seed, epoch, index)
    data = CorpusDataset(corpus, "train", 1, 6, AugmentConfig(location_free=0.5), seed=3)
    assert [data[i]["ground_phrases"] for i in range(5)] == [data[i]["ground_phrases"] for i in range(5)]


def test_the_training_step_grounds_the_location_free_queries():
    """The module must hand ``ground_index``/``ground_group`` to the model (a filter once dropped them)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
    from model_batches import all_texts, phantom_samples, tiny_config

    from regionmed.model.losses import ClipLoss, hierarchical_loss
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.module import OptimConfig, RegionMedModule

    samples = phantom_samples(8, seed=5)
    tokenizer = train_wordpiece_tokenizer(all_texts(samples) + [strip_location(p) for s in samples for p in s["phrases"]],
                                          vocab_size=300)
    torch.manual_seed(0)
    model = RegionCLIP(tiny_config(), vocab_size=len(tokenizer))
    module = RegionMedModule(model, {"grounding": 1.0}, OptimConfig(1e-3, 0.0, 0, 10))
    located = Collator(tokenizer, 64)([dict(s, ground_phrases=s["phrases"]) for s in samples])
    stripped = Collator(tokenizer, 64)([dict(s, ground_phrases=[strip_location(p) if k == "finding" else p
                                                                for p, k in zip(s["phrases"], s["region_kind"])])
                                        for s in samples])
    assert not torch.equal(stripped["ground_index"], stripped["phrase_index"])
    kept = module._batch_for(stripped)
    assert {"ground_index", "ground_group"} <= set(kept)
    model.eval()

    def grounding_loss(batch):  # what training_step computes, without a Trainer to log to
        outputs = model(module._batch_for(batch), text_levels=module.text_levels, ground_cells=True)
        return hierarchical_loss(outputs, module.loss_weights, ClipLoss())[0]

    with torch.no_grad():
        loss_located, loss_stripped = grounding_loss(located), grounding_loss(stripped)
    assert torch.isfinite(loss_stripped) and not torch.isclose(loss_located, loss_stripped)
