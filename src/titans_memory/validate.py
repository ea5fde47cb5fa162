"""Checks of command-line values, done before any work starts: each raises ``ValueError`` with one line.

The CLI turns a ``ValueError`` into ``titans <command>: error: <message>`` and exit status 2, so a
bad device, path or number is refused at once, never as a traceback nor after the first checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``titans figures --dpi`` bounds: below, text is unreadable; above, one figure needs gigabytes
DPI_RANGE = (10, 1200)


def printable_path(path: str | Path) -> str:
    """``path`` quoted for a message, its bytes that are not UTF-8 shown as ``\\xNN`` escapes."""
    text = os.fsencode(path).decode("utf-8", errors="backslashreplace")
    return "'" + text.replace("'", "\\'") + "'"


def check_utf8_path(path: str | Path, what: str) -> None:
    """ValueError unless ``path`` is valid UTF-8 (a run's JSON files record their paths as text)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} {printable_path(path)} is not valid UTF-8; choose a path whose name is UTF-8 text"
        ) from None


def check_output_path(path: str | Path, what: str, *, is_file: bool = False) -> Path:
    """ValueError unless ``path`` can be written: UTF-8, and for a file, not a folder, with a writable folder.

    Called before the work starts (an evaluation of minutes should not fail at its last line).
    """
    path = Path(path)
    check_utf8_path(path, what)
    if not is_file:
        return path
    if path.is_dir():
        raise ValueError(f"{what} {printable_path(path)} is a directory; give a file path")
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"{what}: the directory {printable_path(parent)} does not exist")
    if not parent.is_dir():
        raise ValueError(f"{what}: {printable_path(parent)} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{what} {printable_path(path)} is not writable")
    return path


def check_dpi(dpi: int) -> int:
    """ValueError unless ``dpi`` lies in :data:`DPI_RANGE`."""
    low, high = DPI_RANGE
    if not low <= dpi <= high:
        raise ValueError(f"--dpi must be in {low}..{high}, got {dpi} (a figure at that resolution would not fit in memory)")
    return dpi


def resolve_device(name: str, what: str = "--device"):
    """The ``torch.device`` ``name`` stands for (``auto``: CUDA if present, else the CPU).

    ValueError for a name torch does not know or a device this machine does not have.
    """
    from titans_memory.training.distributed import pick_device

    return pick_device(name, what=what)
