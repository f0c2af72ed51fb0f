"""The validation tests' small corpus settings, and a build summary edited in place."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.params import default_params
from regionmed.params import Params

# 300 images is about the smallest size where every label of the atlas lands in test (seed 0); the
# threshold that depends on corpus size is relaxed accordingly, everything else is params.yaml's (the
# image size too: other params, e.g. the model's, must agree with corpus.image_size).
SMALL = {"corpus": {"synthetic": {"n_images": 300}}, "validation": {"thresholds": {"min_label_count": 1}}}


def small_params(**validation) -> Params:
    from regionmed.params import deep_merge

    return default_params(deep_merge(SMALL, {"validation": validation}))


def edit_build_summary(corpus: Path, **changes) -> None:
    path = corpus / "build.json"
    summary = json.loads(path.read_text())
    summary.update(changes)
    path.write_text(json.dumps(summary))


def store_image(corpus: Path, image_path: str, data: bytes | None) -> None:
    """Replace the stored bytes of ``image_path`` (``None``: delete it), in its shard or as its file:
    what a disk error or a hand edit after the build does."""
    from regionmed.corpus.shards import iter_shard, split_member, write_shard

    shard, member = split_member(image_path)
    if member is None:
        if data is None:
            (corpus / image_path).unlink()
        else:
            (corpus / image_path).write_bytes(data)
        return
    members = [(name, data if name == member else old) for name, old in iter_shard(corpus / shard)]
    write_shard(corpus, shard, [(name, b) for name, b in members if b is not None])
