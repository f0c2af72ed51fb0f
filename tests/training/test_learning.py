"""Learning is real: a short run beats chance on held-out images by stated margins."""

from __future__ import annotations

import numpy as np

from regionmed.corpus.schema import read_manifest
from regionmed.evaluation.grounding import pointing_game, uniform_chance_pointing
from regionmed.evaluation.inference import Encoder, load_pixels
from regionmed.evaluation.retrieval import retrieval_ranks
from regionmed.evaluation.suite import finding_regions
from regionmed.evaluation.zeroshot import zero_shot_scores
from regionmed.model.io import load_model
from regionmed.prompts.templates import embed_prompt_sets, modality_prompts
from regionmed.training.train import train

# Stated margins over chance, on the val split of the tiny corpus (~50 images, 3 modalities).
RETRIEVAL_MARGIN = 0.15  # image→report R@5 at least chance + 0.15
MODALITY_MARGIN = 0.4  # zero-shot modality accuracy at least 1/3 + 0.4
HARDNEG_MARGIN = 0.05  # true region phrase above all its swaps, vs the chance of doing so (the tiny
# model gets 120 joint steps; tests/model/test_model_learns.py checks hard negatives at 0.75)
POINTING_MARGIN = 0.15  # pointing game (lenient) of finding phrases, vs uniform chance on the same boxes


def test_global_then_joint_training_beats_chance(tiny_training, tmp_path):
    params, corpus, tokenizer = tiny_training
    first = train(params, "global", corpus, tokenizer, tmp_path / "global", state_dir=tmp_path / "state")
    assert first["steps"] == 120 and first["train/loss"] < np.log(params.train.batch_size)
    summary = train(
        params,
        "joint",
        corpus,
        tokenizer,
        tmp_path / "joint",
        init_from=tmp_path / "global",
        state_dir=tmp_path / "state",
    )
    assert summary["steps"] == 120
    assert not list((tmp_path / "state" / "joint").glob("**/*.ckpt")), "a finished run keeps no checkpoints"

    model, tok = load_model(tmp_path / "joint")
    enc = Encoder(model, tok, 64)
    val = read_manifest(corpus, "val")
    pixels = load_pixels(corpus, val, 1)
    images, reports = enc.images(pixels), enc.texts(list(val["report"]))
    ranks = retrieval_ranks(
        images, reports, query_groups=list(val["report"]), gallery_groups=list(val["report"])
    )
    chance_r5 = 5 / len(val)
    assert (ranks <= 5).mean() >= chance_r5 + RETRIEVAL_MARGIN, ((ranks <= 5).mean(), chance_r5)

    modalities = sorted(val["modality"].unique())
    scores = zero_shot_scores(images, embed_prompt_sets(enc.texts, modality_prompts(modalities)))
    accuracy = (np.asarray(modalities)[scores.argmax(1)] == val["modality"].to_numpy()).mean()
    assert accuracy >= 1 / len(modalities) + MODALITY_MARGIN, accuracy

    regions = finding_regions(val)
    region_emb = enc.regions(
        pixels, regions["image_index"].to_numpy(), np.asarray(regions["bbox"].tolist(), dtype=np.float32)
    )
    true = (region_emb * enc.texts(list(regions["phrase"]))).sum(1)
    wins, chance = [], []
    for k, negatives in enumerate(regions["hard_negatives"]):
        if negatives:
            wins.append(bool((true[k] > enc.texts(negatives) @ region_emb[k]).all()))
            chance.append(1 / (len(negatives) + 1))
    assert np.mean(wins) >= np.mean(chance) + HARDNEG_MARGIN, (np.mean(wins), np.mean(chance))

    boxes = np.asarray(regions["bbox"].tolist())
    heat, _ = enc.ground(pixels, regions["image_index"].to_numpy(), list(regions["phrase"]))
    hits = pointing_game(heat, boxes)["lenient"].mean()
    chance = uniform_chance_pointing(boxes, heat.shape[-2:])["lenient"].mean()
    assert hits >= chance + POINTING_MARGIN, (hits, chance)
