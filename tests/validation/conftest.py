"""A small valid synthetic corpus, and helpers that make broken copies of it (one per test)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.validation_corpus import small_params

from regionmed.corpus.schema import MANIFEST_FILE, MANIFEST_SCHEMA, read_manifest
from regionmed.params import Params


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
