"""A tiny corpus, tokenizer and params shared by the training tests."""

from __future__ import annotations

import pytest
from helpers.params import default_params

TINY = {
    "corpus": {"image_size": 64, "synthetic": {"n_images": 480}},
    "model": {
        "vision": {"image_size": 64, "hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
        "text": {"hidden": 64, "layers": 2, "heads": 2, "mlp": 128, "max_length": 64},
        "roi": {"fusion_heads": 2},
        "embed_dim": 64,
    },
    "train": {
        "batch_size": 32,
        "eval_batch_size": 64,
        "precision": "32-true",
        "val_every_n_steps": 50,
        "checkpoint_every_n_steps": 10,
        "warmup_steps": 10,
    },
    "phases": {
        "global": {"steps": 120, "lr": 0.002, "global_only": True, "loss_weights": {"global": 1.0}},
        "joint": {
            "steps": 120,
            "lr": 0.002,
            "loss_weights": {"global": 1.0, "region": 1.0, "grounding": 1.0, "modality": 0.2},
        },
    },
}


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory):
    """``(params, corpus_dir, tokenizer_dir)`` for training tests."""
    from regionmed.corpus.build import build_corpus
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    root = tmp_path_factory.mktemp("training")
    # the training stage reads the annotated corpus (annotate.out_dir); here the built one is used as it is
    params = default_params(
        {
            **TINY,
            "corpus": {**TINY["corpus"], "out_dir": str(root / "corpus")},
            "annotate": {"out_dir": str(root / "corpus")},
        }
    )
    build_corpus(params, root / "corpus", progress=False)
    train_wordpiece_tokenizer(corpus_texts(root / "corpus"), 2000, root / "tokenizer")
    return params, root / "corpus", root / "tokenizer"
