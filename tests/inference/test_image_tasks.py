"""The stages' embedding passes on the cluster (regionmed/inference/image_tasks.py): the evaluation's
image embeddings and test pixels, the retrieval index's image embeddings and the drift reference's image
descriptors are those of the in-process loop, row for row, on one in-process worker and on a
LocalCluster of two worker processes (bitwise where the workers' torch threads are the test's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.params import with_updates

from regionmed.cluster import dask_client
from regionmed.corpus.schema import read_manifest
from regionmed.evaluation.inference import Encoder, cluster_image_embeddings, cluster_pixels, load_pixels
from regionmed.inference import image_tasks
from regionmed.inference.engine import Engine
from regionmed.inference.index import build_index
from regionmed.model.io import load_model
from regionmed.monitoring.reference_stage import build_reference

BATCH = 8
PER_TASK = 16  # two batches a task: the tiny corpus's splits are several tasks


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_corpus):
    from helpers.params import tiny_model_config
    from helpers.tiny_service import TINY_MODEL

    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    tokenizer = train_wordpiece_tokenizer(corpus_texts(tiny_corpus), 300)
    config = tiny_model_config(**TINY_MODEL)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "model"
    return export_model(RegionCLIP(config, vocab_size=len(tokenizer)), tokenizer, config, out)


@pytest.fixture(scope="module")
def two_workers(tiny_params):
    """A client of a LocalCluster of two worker processes of one thread each, and its cluster params."""
    params = with_updates(tiny_params, {"cluster": {"workers": 2, "threads_per_worker": 1}})
    with dask_client(params.cluster) as client:
        yield client, params.cluster


@pytest.fixture(autouse=True)
def _small_tasks(monkeypatch):
    monkeypatch.setattr(image_tasks, "IMAGES_PER_TASK", PER_TASK)


def assert_same(got: np.ndarray, expected: np.ndarray, threads: int) -> None:
    """Bitwise when the workers sum with as many torch threads as this process, else to rounding."""
    assert got.shape == expected.shape
    if torch.get_num_threads() == threads:
        assert np.array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_chunks_are_whole_batches_in_order():
    paths = [f"{i}.png" for i in range(50)]
    chunks = image_tasks.batch_chunks(paths, 6)
    assert [len(c) for c in chunks] == [18, 18, 14]  # 16 rounded up to 3 batches of 6
    assert [p for c in chunks for p in c] == paths


def test_evaluation_embeddings_in_process_and_on_two_workers(
    tiny_params, tiny_corpus, tiny_model, two_workers
):
    test = read_manifest(tiny_corpus, "test")
    train = read_manifest(tiny_corpus, "train").iloc[:40]
    model, tokenizer = load_model(tiny_model)
    # the stage's loop before the cluster: all pixels read here, embedded in batches of BATCH
    expected = [
        Encoder(model, tokenizer, BATCH).images(load_pixels(tiny_corpus, df, 1)) for df in (test, train)
    ]
    assert len(test) > PER_TASK and len(train) > PER_TASK

    with dask_client(tiny_params.cluster) as client:  # the default: one worker, in this process
        here = cluster_image_embeddings(client, tiny_model, tiny_corpus, (test, train), 1, BATCH)
        pixels = cluster_pixels(client, tiny_corpus, test, 1, BATCH)
    for got, want in zip(here, expected, strict=True):
        assert np.array_equal(got, want)
    assert torch.equal(pixels, load_pixels(tiny_corpus, test, 1))

    client, cluster = two_workers
    there = cluster_image_embeddings(client, tiny_model, tiny_corpus, (test, train), 1, BATCH)
    for got, want in zip(there, expected, strict=True):
        assert_same(got, want, cluster.threads_per_worker)  # row i is image i: the order is kept
    assert torch.equal(cluster_pixels(client, tiny_corpus, test, 1, BATCH), pixels)
    loaded = client.run(lambda: len(image_tasks._models))  # each worker process loaded the model once
    assert sorted(loaded.values()) == [1, 1]


def test_index_and_reference_descriptors_on_two_workers(tiny_params, tiny_corpus, tiny_model, two_workers):
    client, cluster = two_workers
    joined = with_updates(tiny_params, {"cluster": {"address": client.scheduler.address}}).cluster
    engine = Engine.from_dir(tiny_model)
    here = build_index(engine, tiny_corpus, "test", batch_size=BATCH)
    there = build_index(engine, tiny_corpus, "test", batch_size=BATCH, cluster=joined, model_dir=tiny_model)
    assert there.items == here.items
    assert_same(there.embeddings, here.embeddings, cluster.threads_per_worker)

    manifest = read_manifest(tiny_corpus, "test").set_index("image_id", drop=False)
    max_pixels = tiny_params.serving.max_image_pixels
    quiet = {"log": lambda *_: None}
    ref_here = build_reference(engine, here, manifest, tiny_corpus, max_pixels, **quiet)
    ref_there = build_reference(engine, here, manifest, tiny_corpus, max_pixels, **quiet, cluster=joined)
    assert len(ref_here.descriptors["image"]) == len(manifest)
    pd.testing.assert_frame_equal(ref_there.descriptors["image"], ref_here.descriptors["image"])
