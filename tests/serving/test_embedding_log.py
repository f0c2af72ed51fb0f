"""The embedding log: format, rotation by size and time, retention, the reader's time window, safety."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from regionmed.monitoring.embedding_log import (
    EmbeddingLogWriter,
    embedding_matrix,
    hash_request_id,
    log_files,
    read_log,
)

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def write(
    w: EmbeddingLogWriter, n: int = 1, endpoint: str = "encode_image", kind: str = "image", rid: str = "r"
):
    emb = np.random.default_rng(n).normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    desc = (
        [{"width": 10, "height": 12, "channels": 1, "format": "png", "bytes": 99, "mean": 0.5, "std": 0.1}]
        * n
        if kind == "image"
        else [{"n_chars": 5, "n_tokens": 3, "truncated": False}] * n
    )
    w.log(
        endpoint=endpoint,
        model_version="regionmed:v1",
        request=hash_request_id(rid),
        kind=kind,
        embeddings=emb,
        descriptors=desc,
    )
    return emb


def test_records_round_trip_through_read_log(tmp_path):
    w = EmbeddingLogWriter(tmp_path, clock=Clock())
    emb = write(w, 3)
    write(w, 2, endpoint="encode_text", kind="text")
    w.close()
    df = read_log(tmp_path)
    assert len(df) == 5 and df.attrs["skipped_lines"] == 0
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    np.testing.assert_allclose(embedding_matrix(df[df["kind"] == "image"]), emb, atol=1e-6)
    assert list(df["endpoint"]) == ["encode_image"] * 3 + ["encode_text"] * 2
    assert df["request"].str.fullmatch("[0-9a-f]{16}").all()
    assert len(read_log(tmp_path, endpoint="encode_text")) == 2 and len(read_log(tmp_path, kind="image")) == 3
    first = json.loads(log_files(tmp_path)[0].read_text().splitlines()[0])
    assert first["v"] == 1 and first["dim"] == 8 and first["ts"] == "2026-11-28T10:00:00.000000Z"


def test_rotation_by_size_and_by_time_and_retention(tmp_path):
    clock = Clock()
    w = EmbeddingLogWriter(tmp_path, rotate_bytes=1024, rotate_seconds=60, clock=clock)
    for _ in range(6):
        write(w, 2)  # ~300 bytes a record
    by_size = len(log_files(tmp_path))
    assert by_size >= 3
    clock.t += 61
    write(w, 1)
    assert len(log_files(tmp_path)) == by_size + 1  # a quiet minute: a new file for the next record
    w.close()
    assert len(read_log(tmp_path)) == 13
    kept = EmbeddingLogWriter(tmp_path / "kept", rotate_bytes=1024, keep_files=2, clock=Clock())
    for _ in range(10):
        write(kept, 2)
    kept.close()
    assert len(log_files(tmp_path / "kept")) <= 3  # the open file plus keep_files closed ones


def test_read_log_time_window(tmp_path):
    clock = Clock()
    w = EmbeddingLogWriter(tmp_path, rotate_seconds=30, clock=clock)
    for minute in range(5):
        clock.t = T0 + 60 * minute
        write(w, 1, rid=str(minute))
    w.close()
    df = read_log(tmp_path, since="2026-11-28T10:01:00Z", until=datetime(2026, 11, 28, 10, 3, tzinfo=UTC))
    assert [t.minute for t in df["ts"]] == [1, 2]
    assert len(read_log(tmp_path, since="2026-11-28 10:04:00")) == 1  # naive = UTC
    assert len(read_log(tmp_path, until="2026-11-28T09:00:00Z")) == 0


def test_a_truncated_last_line_is_skipped_and_counted(tmp_path):
    w = EmbeddingLogWriter(tmp_path, clock=Clock())
    write(w, 2)
    w.close()
    path = log_files(tmp_path)[0]
    path.write_bytes(path.read_bytes() + b'{"v":1,"ts":"2026-11-28T10:0')
    df = read_log(tmp_path)
    assert len(df) == 2 and df.attrs["skipped_lines"] == 1


def test_an_empty_or_missing_log_reads_as_an_empty_frame(tmp_path):
    df = read_log(tmp_path / "nothing")
    assert len(df) == 0 and "embedding" in df.columns and embedding_matrix(df).shape == (0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {"patient_name": "DOE^JOHN"},  # not a descriptor
        {"text": "a pleural effusion"},  # raw text has no key to go in
        {"format": "DOE^JOHN"},  # the one string descriptor is a closed set
        {"width": "512"},  # types are enforced
        {"box": [0, 0, 1]},
    ],
)
def test_the_writer_refuses_anything_but_the_known_descriptors(tmp_path, bad):
    w = EmbeddingLogWriter(tmp_path, clock=Clock())
    with pytest.raises(ValueError):
        w.log(
            endpoint="encode_image",
            model_version="m",
            request=hash_request_id("r"),
            kind="image",
            embeddings=np.ones((1, 4)),
            descriptors=[bad],
        )


def test_the_writer_refuses_unhashed_ids_and_free_text_names(tmp_path):
    w = EmbeddingLogWriter(tmp_path, clock=Clock())
    ok = {"model_version": "m", "kind": "image", "embeddings": np.ones((1, 4))}
    with pytest.raises(ValueError, match="hashed"):
        w.log(endpoint="e", request="patient-12345", **ok)
    with pytest.raises(ValueError, match="plain name"):
        w.log(endpoint="DOE JOHN's report", request=hash_request_id("r"), **ok)


def test_concurrent_writers_never_interleave_lines(tmp_path):
    w = EmbeddingLogWriter(tmp_path, rotate_bytes=50_000, clock=Clock())

    def worker(i: int) -> None:
        for _ in range(25):
            write(w, 3, rid=str(i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    df = read_log(tmp_path)
    assert len(df) == 8 * 25 * 3 == w.records_written and df.attrs["skipped_lines"] == 0


class SteppingClock:
    """A clock that moves on by ``step`` seconds every time it is read, like a real one under load."""

    def __init__(self, t: float = T0, step: float = 0.25):
        self.t, self.step = t, step

    def __call__(self) -> float:
        t = self.t
        self.t += self.step
        return t


def _file_starts(directory) -> list[datetime]:
    return [
        datetime.strptime(p.name.split("-")[1], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        for p in log_files(directory)
    ]


def test_every_record_in_a_window_is_read_at_rotation_boundaries(tmp_path):
    # Rotation by time and by size with a clock that moves between reads: files start right where
    # records are stamped. Every window whose edges sit on a record's time or a file's start (or one
    # microsecond either side) must return exactly the records in [since, until): none lost at the
    # end (a file named at or after `until` holding older records), none from outside.
    w = EmbeddingLogWriter(tmp_path, rotate_bytes=700, rotate_seconds=1.0, clock=SteppingClock())
    for i in range(24):
        write(w, 1 + i % 3, rid=str(i))
    w.close()
    assert len(log_files(tmp_path)) >= 6
    everything = read_log(tmp_path)
    assert len(everything) == w.records_written
    stamps = sorted(set(everything["ts"]))
    starts = [pd.Timestamp(s) for s in _file_starts(tmp_path)]
    us = pd.Timedelta(microseconds=1)
    edges = sorted({e + d for e in [*stamps, *starts] for d in (-us, pd.Timedelta(0), us)})

    def expected(since, until):
        keep = pd.Series(True, index=everything.index)
        if since is not None:
            keep &= everything["ts"] >= since
        if until is not None:
            keep &= everything["ts"] < until
        return sorted(zip(everything["ts"][keep], everything["request"][keep], strict=True))

    def got(since, until):
        df = read_log(tmp_path, since=since, until=until)
        return sorted(zip(df["ts"], df["request"], strict=True))

    for edge in edges:
        assert got(None, edge) == expected(None, edge), f"until={edge}"
        assert got(edge, None) == expected(edge, None), f"since={edge}"
    for since, until in zip(edges, edges[3:], strict=False):
        assert got(since, until) == expected(since, until), f"[{since}, {until})"


def test_no_record_is_older_than_its_file_even_when_the_clock_steps_back(tmp_path):
    clock = Clock()
    w = EmbeddingLogWriter(tmp_path, rotate_seconds=60, clock=clock)
    write(w, 1, rid="a")
    clock.t = T0 - 5  # NTP steps the clock back
    write(w, 2, rid="b")
    clock.t = T0 + 61  # rotate
    write(w, 1, rid="c")
    clock.t = T0 + 30  # back again, in the new file
    write(w, 1, rid="d")
    w.close()
    for path, start in zip(log_files(tmp_path), _file_starts(tmp_path), strict=True):
        stamps = [
            datetime.strptime(json.loads(line)["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            for line in path.read_text().splitlines()
        ]
        assert stamps and min(stamps) >= start and stamps == sorted(stamps)
    assert len(read_log(tmp_path, until=datetime.fromtimestamp(T0 + 61, tz=UTC))) == 3
    assert len(read_log(tmp_path, since=datetime.fromtimestamp(T0 + 61, tz=UTC))) == 2


def test_window_bounds_finer_than_a_microsecond(tmp_path):
    w = EmbeddingLogWriter(tmp_path, clock=Clock())
    write(w, 1)
    w.close()
    ts = pd.Timestamp("2026-11-28T10:00:00Z")
    half = pd.Timedelta(nanoseconds=500)
    assert len(read_log(tmp_path, until=ts + half)) == 1  # ts < until
    assert len(read_log(tmp_path, since=ts + half)) == 0  # ts < since
    assert len(read_log(tmp_path, since=ts - half, until=ts + half)) == 1
