"""regionmed/atomic.py: outputs appear whole or not at all; a killed writer's leftovers are removed by
the next write; a full disk is one NoSpace naming the folder. Real kills and real full disks of each
stage: tests/faults/."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from regionmed.atomic import (
    NoSpace,
    as_no_space,
    atomic_dir,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    is_no_space,
)
from regionmed.errors import EXIT_BAD_INPUT


def test_a_file_replaces_the_old_one_and_leaves_no_temporary_name(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    atomic_write_text(target, "old\n")
    atomic_write_bytes(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_a_writer_that_raises_leaves_the_old_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(ValueError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise ValueError("the writer broke")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_folder_appears_only_when_complete(tmp_path):
    target = tmp_path / "corpus"
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
        assert not target.exists() and tmp.parent == target.parent
    assert [p.name for p in target.iterdir()] == ["a.png"]
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.png").write_bytes(b"2")
        raise RuntimeError("killed mid-way")
    assert [p.name for p in target.iterdir()] == ["a.png"], "the old output is kept"
    with atomic_dir(target) as tmp:
        (tmp / "c.png").write_bytes(b"3")
    assert [p.name for p in target.iterdir()] == ["c.png"], "the new output replaces the old one whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


KILLED_WRITER = """
import sys, time
from regionmed.atomic import atomic_dir, atomic_file
with atomic_dir(sys.argv[1]) as tmp, atomic_file(sys.argv[2]) as f:
    f.write_text("half")
    (tmp / "first.png").write_bytes(b"x")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_way_leaves_nothing_under_the_outputs_names_and_its_leftovers_go(tmp_path):
    folder, file = tmp_path / "corpus", tmp_path / "eval.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(folder), str(file)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not folder.exists() and not file.exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == [f".eval.json.tmp-{proc.pid}.json", f"corpus.tmp-{proc.pid}"]
    with atomic_dir(folder) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    atomic_write_text(file, "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "eval.json"]


def test_a_full_disk_is_no_space_naming_the_output_and_keeps_nothing(tmp_path):
    target = tmp_path / "models" / "global"
    with pytest.raises(NoSpace) as caught, atomic_dir(target) as tmp:
        (tmp / "weights.safetensors").write_bytes(b"x" * 200_000)
        raise OSError(errno.ENOSPC, "No space left on device")
    message = str(caught.value)
    assert message.startswith(f"no space left in {target}: wrote 200 kB before it filled; ")
    assert "free" in message and caught.value.exit_code == EXIT_BAD_INPUT
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_full_disk_said_by_a_library_without_an_errno_is_recognised(tmp_path):
    # pyarrow and safetensors drop the errno and keep the words
    pyarrow_like = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert is_no_space(pyarrow_like)
    chained = RuntimeError("file write failed")
    chained.__cause__ = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "last.ckpt"))
    full = as_no_space(chained)
    assert isinstance(full, NoSpace) and full.folder == tmp_path / "x"
    assert as_no_space(ValueError("a bug")) is None and not is_no_space(OSError(errno.EACCES, "denied"))


def test_a_write_that_needs_more_than_is_free_says_how_much(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the last step of a write: the temporary file is written
    with pytest.raises(NoSpace, match=r"^no space left in .*: needed ~3\.0 MB; .* free now"):
        atomic_write_bytes(tmp_path / "index.npy", b"0" * 3_000_000)
    assert list(tmp_path.iterdir()) == []
