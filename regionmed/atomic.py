"""Outputs written whole or not at all, and a full disk said in one message.

Every stage writes its outputs through these helpers, so a process killed in the middle (SIGKILL, the
OOM killer, a power cut) never leaves a half-written file or folder under the output's own name: the
output is written to a temporary name in the same folder (same file system, so the rename is atomic)
and renamed when complete. A reader, DVC included, sees the old output, no output, or the new one.

- :func:`atomic_write_bytes`, :func:`atomic_write_text`: a whole file from memory;
- :func:`atomic_file`: a temporary path for a writer that takes a path (``savefig``, ``to_parquet``,
  ``save_html``); renamed over ``path`` when the block ends without an exception;
- :func:`atomic_dir`: a folder, written as ``<name>.tmp-<pid>`` and renamed to ``<name>``;
- :func:`append_whole`: an append-only log's lines, all of a write or none of it.

Leftovers of a killed run (a temporary name whose process is gone) are removed by the next write of
the same output. A full disk (``ENOSPC``, a quota) while writing becomes :class:`NoSpace`, a
:class:`~regionmed.errors.BadInput` (exit status 2) whose message names the folder, the space the write
needed or had written, and the space free; :func:`as_no_space` turns one raised elsewhere (a library
that wrote on its own) into the same message at the stage boundary (regionmed/cli.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from regionmed.errors import BadInput

TMP_MARK = ".tmp-"
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# How libraries that drop the errno say it: pyarrow, safetensors (Rust's io::Error), torch's writer
_NO_SPACE_TEXTS = ("No space left on device", "StorageFull", "Disk quota exceeded", "errno 28")
NEARLY_FULL_BYTES = 256 * 1024  # a write that failed with less than this free failed for want of space


class NoSpace(BadInput):
    """The disk of an output folder filled while the stage wrote it (the message says how much)."""

    def __init__(self, folder: str | Path, needed: int | None = None, written: int | None = None):
        self.folder, self.needed, self.written = Path(folder), needed, written
        free = free_bytes(self.folder)
        what = [f"needed ~{_mb(needed)}"] if needed is not None else []
        what += [f"wrote {_mb(written)} before it filled"] if written is not None else []
        super().__init__(
            f"no space left in {self.folder}: {', '.join(what) or 'a write failed'}; "
            f"{_mb(free) if free is not None else 'unknown'} free now (free some space there or point the "
            "output elsewhere, then rerun; nothing partial was kept)"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.0f} kB"


def free_bytes(folder: str | Path) -> int | None:
    """Free space on the file system of ``folder`` (or of its nearest existing parent)."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or a quota."""
    return any(
        isinstance(e, NoSpace)
        or (isinstance(e, OSError) and e.errno in _NO_SPACE_ERRNOS)
        or any(text in str(e) for text in _NO_SPACE_TEXTS)
        for e in _chain(exc)
    )


def _failed_for_space(exc: BaseException, folder: Path) -> bool:
    """A full disk not yet said as :class:`NoSpace`: said (:func:`is_no_space`) or not (a writer that
    reports only "write failed" while the disk has next to nothing free)."""
    if isinstance(exc, NoSpace) or not isinstance(exc, Exception):
        return False
    if is_no_space(exc):
        return True
    free = free_bytes(folder)
    return isinstance(exc, (OSError, RuntimeError)) and free is not None and free < NEARLY_FULL_BYTES


def as_no_space(exc: BaseException) -> NoSpace | None:
    """:class:`NoSpace` for a full-disk error raised outside these helpers, naming the folder of the file
    it names; None when ``exc`` is not a full disk."""
    if isinstance(exc, NoSpace):
        return exc
    if not is_no_space(exc):
        return None
    filename = next((e.filename for e in _chain(exc) if getattr(e, "filename", None)), None)
    return NoSpace(Path(filename).parent if filename else Path.cwd())


def _pid_of(name: str) -> int | None:
    tail = name.rsplit(TMP_MARK, 1)[-1]
    digits = tail.split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: not gone, not a zombie (killed, not yet reaped), not a thread of
    another process that took the number (Linux: /proc; elsewhere: kill 0)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return not fields.get("State", "").strip().startswith(("Z", "X")) and fields.get(
        "Tgid", ""
    ).strip() == str(pid)


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temporary names of ``path`` that a killed process left (its pid is gone)."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for pattern in (f"{path.name}{TMP_MARK}*", f".{path.name}{TMP_MARK}*", f"{path.name}.old-*"):
        for stale in path.parent.glob(pattern):
            pid = _pid_of(stale.name.replace(".old-", TMP_MARK))
            if pid is None or pid == os.getpid() or _alive(pid):
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def _tmp_file(path: Path) -> Path:
    # the suffix is kept: some writers choose the format from it (savefig) or add their own (np.save)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a path; renamed over ``path`` when the block
    ends, removed when it raises (a full disk: :class:`NoSpace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = _tmp_file(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        written = tmp.stat().st_size if tmp.is_file() else None
        tmp.unlink(missing_ok=True)
        if _failed_for_space(exc, path.parent):
            raise NoSpace(path.parent, written=written) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (module docstring); returns ``path``."""
    path = Path(path)
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            fh.write(data)
    except NoSpace as exc:
        raise NoSpace(path.parent, needed=len(data)) from exc.__cause__
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` whole or not at all; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """An empty folder ``<name>.tmp-<pid>`` beside ``path`` to write the output into; when the block ends it
    replaces ``path`` (an older ``path`` is removed), when it raises it is removed and ``path`` is left as it
    was (a full disk: :class:`NoSpace`, with what had been written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as exc:
        written = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if _failed_for_space(exc, path.parent):
            raise NoSpace(path, written=written) from exc
        raise
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists() or old.is_symlink():
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()


def append_whole(handle, data: bytes, size: int) -> int:
    """Append ``data`` to ``handle`` (a file opened ``"ab", buffering=0`` whose length is ``size``): all of
    it, or none of it when a write fails (a full disk: the file is cut back to ``size`` and the error
    raised), so an append-only log never holds a torn line. Returns the new length."""
    view, done = memoryview(data), 0
    try:
        while done < len(view):
            n = handle.write(view[done:])
            if not n:
                raise OSError(errno.ENOSPC, "No space left on device (a write took no bytes)")
            done += n
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(handle.fileno(), size)
        raise
    return size + done


def _fsync(path: Path) -> None:
    # the data reaches the disk before the rename makes it visible (a power cut keeps old or new)
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
