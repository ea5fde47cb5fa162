"""The one rule every registry of the core follows (biases, retentions, architectures, backends).

A registry is a plain ``dict`` from a name to a callable; ``add_entry`` is the checked way in, so
that each ``register_*`` function is one line and all of them refuse bad input alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def add_entry(
    registry: dict[str, Any],
    name: str,
    entry: Callable[..., Any],
    *,
    replace: bool,
    caller: str,
    expected: str = "factory must be callable",
) -> None:
    """Put ``entry`` into ``registry`` under ``name``.

    Args:
        registry: the registry to extend (changed in place).
        name: a non-empty string.
        entry: the callable to register.
        replace: allow replacing an existing entry (else that is a ``ValueError``).
        caller: the public function's name, which starts every error message.
        expected: what the entry must be, said when it is not callable.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"{caller}: name must be a non-empty string, got {name!r}")
    if not callable(entry):
        raise TypeError(f"{caller}: {expected}, got {entry!r}")
    if name in registry and not replace:
        raise ValueError(f"{caller}: {name!r} is already registered (pass replace=True)")
    registry[name] = entry
