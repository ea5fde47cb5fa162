"""Writing a run's files so that no run is lost or silently wrong.

* :func:`json_text`: JSON that is always valid (NaN and infinities become ``null``);
* :func:`atomic_write_text` / :func:`fsync_tree`: a file or folder is flushed to disk before the
  rename that publishes it, and a failed write (a full disk) leaves no temporary file behind;
* :class:`RunLock`: one process at a time in a run folder (an OS file lock, released by the OS
  when the process ends however it ends);
* :func:`fault_point`: a test hook that kills the process at a named point (``TITANS_FAULT_POINT``).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import sys
from pathlib import Path

#: Environment variable of :func:`fault_point` (a test hook; never set it in a real run).
FAULT_ENV = "TITANS_FAULT_POINT"
LOCK_FILE = ".lock"


class WriteError(OSError):
    """A file of the run could not be written (disk full, no permission): the message names it."""


def finite_or_none(value: object) -> object:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, in nested dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def json_text(value: object, *, indent: int | None = 2) -> str:
    """Valid JSON of ``value``: NaN and infinities are written as ``null`` (JSON has no such numbers)."""
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk; folders where the OS cannot (Windows) are skipped."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return  # Windows opens no folder: its renames are journalled by NTFS
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not path.is_dir() or err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (before the rename that publishes it)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _fsync_path(path)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        _fsync_path(path)
    _fsync_path(folder)


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename inside it) to disk."""
    _fsync_path(folder)


def describe_os_error(err: OSError) -> str:
    """The cause of ``err`` in words: ``No space left on device``, ``Permission denied``, ..."""
    if err.errno is not None:
        return os.strerror(err.errno)
    return str(err) or type(err).__name__


def atomic_write_text(path: Path, text: str, *, what: str = "file") -> None:
    """Write ``text`` to ``path`` through a temporary file that is flushed, then renamed into place.

    A failure (a full disk) removes the temporary file, leaves an older ``path`` as it was and
    raises :class:`WriteError` naming ``path`` and the cause.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write the {what} {str(path)!r}: {describe_os_error(err)}") from None


def save_figure(fig, path: str | Path, *, dpi: int) -> Path:
    """``fig.savefig`` through a temporary file renamed into place: a failure (a full disk) leaves
    no partial or 0-byte image and raises :class:`WriteError` naming the path and the cause."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        _fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write the figure {str(path)!r}: {describe_os_error(err)}") from None
    return path


def append_line(path: Path, line: str, *, what: str = "log") -> None:
    """Append one line to ``path`` and flush it; a failure raises :class:`WriteError` naming the path."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise WriteError(f"cannot write the {what} {str(path)!r}: {describe_os_error(err)}") from None


def remove_tree(folder: Path, fault: str = "removing") -> None:
    """Delete ``folder`` after renaming it out of sight, so a kill mid-way leaves no half folder behind.

    ``fault``: the name of the :func:`fault_point` between the rename and the deletion.
    """
    if not folder.exists():
        return
    trash = folder.with_name(f".trash-{folder.name}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(folder, trash)
    fault_point(fault)
    shutil.rmtree(trash)


def fault_point(name: str, step: int | None = None) -> None:
    """Test hook: SIGKILL this process here when ``TITANS_FAULT_POINT`` is ``name`` or ``name:step``.

    The fault-injection tests (tests/training/test_faults.py) kill a real training run at the
    points where a checkpoint is half written; a real run never sets the variable.
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    point, _, at = wanted.partition(":")
    if point != name or (at and (step is None or int(at) != step)):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# --- one run per folder ---------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run folder for the life of a run: ``with RunLock(folder): ...``.

    The lock is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on
    ``folder/.lock``, which holds the owner's process id. The OS releases it when the process ends,
    however it ends (kill -9 included), so a killed run never blocks the next one; the file it
    leaves behind is a *stale* lock, which the next run detects, reports and takes over.
    A second run while the first holds it gets :class:`ValueError` (one line: exit 2 in the CLI).
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None
        self.stale_pid: int | None = None  # the pid a stale lock named, after acquire()

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            owner = _read_pid(fd)
            os.close(fd)
            who = f" (process {owner})" if owner else ""
            raise ValueError(
                f"run folder {str(self.path.parent)!r} is in use by another titans train{who}; "
                "wait for it to end or choose another --out"
            ) from None
        self.stale_pid = _read_pid(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly, not stale
        except OSError:
            pass
        _unlock(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
