"""Where a corpus keeps its image bytes: tar shards (``corpus.layout: shards``) or one PNG per image.

A shard is a WebDataset-style tar (``shards/000012.tar``) of ``<image_id>.png`` members, written whole
under a temporary name and renamed, with fixed member metadata so the same images give the same bytes.
The manifest's ``image_path`` names a member as ``shards/000012.tar#<image_id>.png`` and a file as
``images/<image_id>.png``; :func:`image_bytes` reads either, so no stage cares which layout it got.

Members are read by offset (``os.pread``, safe across forked DataLoader workers), from an index of the
tar's headers built once per process and shard, so training keeps random access (its shuffled order,
and its metrics, are those of the file layout) while DVC tracks a few hundred files at any corpus size.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from regionmed.corpus.schema import IMAGES_DIR, SHARDS_DIR

MEMBER_SEP = "#"
_TAR_MEMBER = ".tar" + MEMBER_SEP


def shard_file(index: int) -> str:
    """The corpus-relative path of shard ``index``."""
    return f"{SHARDS_DIR}/{index:06d}.tar"


def member_path(shard: str, member: str) -> str:
    """The manifest's ``image_path`` of ``member`` in ``shard``."""
    return f"{shard}{MEMBER_SEP}{member}"


def split_member(path: str | Path) -> tuple[str, str | None]:
    """``(tar file, member)`` of a member path, ``(path, None)`` of a plain file."""
    text = str(path)
    head, sep, member = text.partition(_TAR_MEMBER)
    return (head + ".tar", member) if sep else (text, None)


def write_shard(corpus_dir: Path, shard: str, members: Sequence[tuple[str, bytes]]) -> None:
    """Write ``members`` (name, bytes) as the tar ``corpus_dir / shard``, whole or not at all: a task
    re-run after its worker died replaces the shard, and a half-written one never has its name."""
    path = corpus_dir / shard
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_partial_shards(corpus_dir: Path) -> int:
    """Delete the temporary files of shard writes that never finished (a killed worker's); their count."""
    folder = corpus_dir / SHARDS_DIR
    leftovers = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


@lru_cache(maxsize=256)
def _tar_index(path: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """``member -> (offset, size)`` of the tar at ``path`` (as of its mtime and size)."""
    with tarfile.open(path, "r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}


def image_bytes(path: str | Path) -> bytes:
    """The stored bytes of an image: a plain file, or a member of a shard (``<tar>#<member>``).
    A missing file or member is ``FileNotFoundError`` naming it."""
    tar, member = split_member(path)
    if member is None:
        return Path(tar).read_bytes()
    stat = os.stat(tar)
    offset, size = _tar_index(tar, stat.st_mtime_ns, stat.st_size).get(member, (None, 0))
    if offset is None:
        raise FileNotFoundError(f"{member!r} is not in shard {tar}")
    fd = os.open(tar, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def iter_shard(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every member of a shard in stored order, read sequentially (a stream, as WebDataset reads it)."""
    with tarfile.open(path, "r:") as tar:
        for m in tar:
            if m.isfile():
                yield m.name, tar.extractfile(m).read()


def copy_image_store(src: Path, dst: Path) -> None:
    """Copy a corpus's stored images (shards and/or files) to another corpus folder: same paths."""
    for folder in (SHARDS_DIR, IMAGES_DIR):
        if (src / folder).is_dir():
            shutil.copytree(src / folder, dst / folder, ignore=shutil.ignore_patterns(".*.tmp"))
