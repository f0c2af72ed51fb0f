"""The embedding passes of the stages as cluster tasks: a split's images in chunks, each chunk embedded
(or described) on a Dask worker (regionmed/cluster.py, docs/scaling.md).

A task gets a chunk of image paths and what rebuilds the model on its worker: the model's folder, loaded
once per worker process (:func:`worker_model`), never a pickled model. A chunk is whole batches of the
stage's ``batch_size`` (the split's last chunk excepted), so a worker embeds exactly the batches the
stage's own loop embedded before the cluster existed: torch's sums depend on what a batch holds, not
on where it runs. With the default one in-process worker, whose torch threads are the stage's, the
embeddings are bitwise those of that loop; worker processes with as many threads give the same bits.

The stages call this module: ``evaluate`` (regionmed/evaluation/inference.py), ``package``'s retrieval
index (regionmed/inference/index.py) and ``monitor_reference``'s image descriptors
(regionmed/monitoring/reference_stage.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from regionmed.cluster import run_tasks

IMAGES_PER_TASK = 256  # rounded up to whole batches: enough work per task to hide its scheduling
MODELS_KEPT = 2  # models a worker keeps loaded (the evaluate stage embeds with two)

_models: OrderedDict[tuple[str, int], tuple[Any, Any]] = OrderedDict()
_loading = threading.Lock()  # a worker with several task threads loads a model once, not once per thread


def worker_model(model_dir: str | Path) -> tuple[Any, Any]:
    """``(model in eval mode on the CPU, tokenizer)`` of the exported model in ``model_dir``, loaded once
    per process: kept by (folder, modification time of its weights), so a worker that outlives a stage
    (a shared scheduler's) loads a re-exported model again, and keeps at most :data:`MODELS_KEPT`."""
    from regionmed.model.io import WEIGHTS_FILE, load_model

    path = Path(model_dir).resolve()
    key = (str(path), (path / WEIGHTS_FILE).stat().st_mtime_ns)
    with _loading:
        if key not in _models:
            _models[key] = load_model(path)
            while len(_models) > MODELS_KEPT:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return _models[key]


def batch_chunks(paths: Sequence[str], batch_size: int) -> list[list[str]]:
    """``paths`` cut into tasks of whole batches: :data:`IMAGES_PER_TASK` rounded up to a multiple of
    ``batch_size`` (a task's batches are then the in-process loop's)."""
    per_task = batch_size * max(1, -(-IMAGES_PER_TASK // batch_size))
    return [list(paths[i : i + per_task]) for i in range(0, len(paths), per_task)]


def run_chunked(
    client,
    fn: Callable[..., Any],
    path_lists: Sequence[Sequence[str]],
    batch_size: int,
    *,
    name: str,
    shared: Sequence[Any] = (),
    progress: bool | None = None,
) -> list[list[Any]]:
    """``fn(*shared, chunk)`` for every chunk (:func:`batch_chunks`) of every list of ``path_lists``, in
    one pass over the cluster; per list, its chunks' results in order. ``shared`` are sent to each worker
    once (small values: folder paths, sizes)."""
    chunked = [batch_chunks(paths, batch_size) for paths in path_lists]
    tasks = [(chunk,) for chunks in chunked for chunk in chunks]
    results = run_tasks(client, fn, tasks, name=name, shared=shared, progress=progress, unit="chunk")
    per_list, start = [], 0
    for chunks in chunked:
        per_list.append(results[start : start + len(chunks)])
        start += len(chunks)
    return per_list
