"""A small valid synthetic corpus, and helpers that make broken copies of it (one per test)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from regionmed.corpus.schema import MANIFEST_FILE, MANIFEST_SCHEMA, read_manifest
from regionmed.params import Params

# 300 images is about the smallest size where every label of the atlas lands in test (seed 0); the
# threshold that depends on corpus size is relaxed accordingly, everything else is the default (the
# image size too: other params, e.g. the model's, must agree with corpus.image_size).
SMALL = {"corpus": {"synthetic": {"n_images": 300}}, "validation": {"thresholds": {"min_label_count": 1}}}


def small_params(**validation) -> Params:
    from regionmed.params import _deep_merge

    return Params.model_validate(_deep_merge(SMALL, {"validation": validation}))


@pytest.fixture(scope="session")
def val_params() -> Params:
    return small_params()


@pytest.fixture(scope="session")
def good_corpus(tmp_path_factory, val_params) -> Path:
    from regionmed.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("validation") / "corpus"
    build_corpus(val_params, out, progress=False)
    return out


def write_manifest_df(df: pd.DataFrame, corpus: Path) -> None:
    table = pa.Table.from_pandas(df, schema=MANIFEST_SCHEMA, preserve_index=False)
    pq.write_table(table, corpus / MANIFEST_FILE)


@pytest.fixture
def broken_copy(tmp_path, good_corpus) -> Callable[..., Path]:
    """``broken_copy(edit)``: a private copy of the good corpus with ``edit(df, corpus_dir)`` applied.

    ``edit`` gets the manifest (list columns as Python lists) and may also touch files; it returns the
    manifest to write back (or None to leave the manifest as it is).
    """

    def make(edit: Callable[[pd.DataFrame, Path], pd.DataFrame | None]) -> Path:
        corpus = tmp_path / "corpus"
        shutil.copytree(good_corpus, corpus)
        df = edit(read_manifest(corpus), corpus)
        if df is not None:
            write_manifest_df(df, corpus)
        return corpus

    return make


def edit_build_summary(corpus: Path, **changes) -> None:
    path = corpus / "build.json"
    summary = json.loads(path.read_text())
    summary.update(changes)
    path.write_text(json.dumps(summary))
