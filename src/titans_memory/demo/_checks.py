"""Argument checks shared by the demo layer and the data generators.

Each check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value of the
right kind but out of range, and names the argument, so a bad call fails at the call site with a
message that says what to fix (rather than as a shape error or a NaN many steps later).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from titans_memory._tensors import all_finite


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` >= 1."""
    # bool is an int subclass; True as a dimension is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``[low, high)`` if ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def positive_real(name: str, value: object) -> float:
    """``value`` as a finite ``float`` > 0."""
    value = real(name, value, low=0.0)
    if value == 0.0:
        raise ValueError(f"{name} must be > 0, got 0.0")
    return value


def finite_tensor(name: str, x: object, last_dim: int, like: Tensor) -> Tensor:
    """``x`` as a non-empty, finite tensor whose last dimension is ``last_dim``, on the device
    and with the dtype of ``like`` (a parameter of the module that will use it)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must be a real-valued tensor, got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != last_dim:
        raise ValueError(
            f"{name} must have last dimension input_dim={last_dim}, got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    x = x.to(device=like.device, dtype=like.dtype)
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf")
    return x
