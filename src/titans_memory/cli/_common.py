"""What every ``titans`` subcommand shares: :class:`CLIError`, :class:`Subcommand` and the argparse types.

Nothing heavy is imported here (no torch, no numpy), so that building the parser stays instant.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path


class CLIError(Exception):
    """Bad input on the command line: ``main`` prints the message on one line, exit status 2."""


@dataclass(frozen=True)
class Subcommand:
    """One ``titans <name>`` subcommand.

    Attributes:
        name: what the user types after ``titans``.
        help: one line for ``titans --help``.
        configure: adds the subcommand's arguments to its parser.
        run: does the work; returns the process exit status.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def comma_list(text: str) -> list[str]:
    """argparse type: a non-empty comma-separated list of words."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def seed_list(text: str) -> list[int]:
    """argparse type: distinct comma-separated integers >= 0."""
    try:
        seeds = [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return seeds


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def directory_path(text: str) -> Path:
    """argparse type: a non-empty path (``Path("")`` would silently mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty path")
    return Path(text)


def output_directory(path: Path) -> Path:
    """``path`` as a directory to write into: created if missing; a clear error if it cannot be."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {str(path)!r} is a file, not a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"--out {str(path)!r} lies under {str(parent)!r}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create the directory {str(path)!r}: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"the directory {str(path)!r} is not writable")
    return path


def parse_override(text: str, cls: type) -> tuple[str, object]:
    """``FIELD=VALUE`` for a field of the dataclass ``cls``, the value parsed by the field's type.

    Booleans are ``true``/``false``; ``none`` (or ``null``) sets an optional field to None; numbers
    are parsed as numbers; strings are taken as they are.
    """
    if "=" not in text:
        raise CLIError(f"--set expects FIELD=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    if name not in known:
        raise CLIError(f"--set: unknown field {name!r}; fields: {', '.join(known)}")
    return name, _parse_typed(name, raw, hints[name])


def _parse_typed(name: str, raw: str, hint: object) -> object:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if type(None) in options and raw.strip().lower() in ("none", "null"):
        return None
    for kind in (t for t in options if t is not type(None)):
        if kind is bool:
            if raw.strip().lower() in ("true", "false"):
                return raw.strip().lower() == "true"
            continue
        if kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                continue
        if kind is str:
            return raw
    wanted = " or ".join("none" if t is type(None) else ("true/false" if t is bool else t.__name__) for t in options)
    raise CLIError(f"--set {name}={raw!r}: expected {wanted}")
