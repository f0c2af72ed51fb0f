"""The ``monitor_reference`` stage: a thin wrapper around :func:`regionmed.monitoring.reference.build_reference`.

Reads the packaged model (``serving.model_dir``), its retrieval index (``serving.index_dir``) and the
index split's manifest rows (``corpus.out_dir``); writes ``monitor.reference_dir`` and creates the
(empty) embedding log folder (``serving.embedding_log.dir``), which the ``monitor`` stage depends on.
"""

from __future__ import annotations

from pathlib import Path

from regionmed.monitoring.reference import Reference, build_reference
from regionmed.params import Params


def run_reference_stage(params: Params, log=print) -> Reference:
    from regionmed.corpus.schema import read_manifest
    from regionmed.inference.engine import Engine
    from regionmed.inference.index import RetrievalIndex

    s = params.serving
    if not RetrievalIndex.exists(s.index_dir):
        raise FileNotFoundError(f"no retrieval index at {s.index_dir}: the package stage writes it")
    if s.torch_threads:
        import torch

        torch.set_num_threads(s.torch_threads)
    index = RetrievalIndex.load(s.index_dir)
    manifest = read_manifest(params.corpus.out_dir, index.split).set_index("image_id", drop=False)
    reference = build_reference(Engine.from_dir(s.model_dir), index, manifest, params.corpus.out_dir,
                                s.max_image_pixels, log=log)
    reference.save(params.monitor.reference_dir)
    Path(s.embedding_log.dir).mkdir(parents=True, exist_ok=True)  # must exist before the service first writes
    return reference
