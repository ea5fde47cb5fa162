"""Synthetic sequences for the demo: a repeating pattern with anomalies, a frequency switch.

Both return 1-D float32 series of shape ``(T,)``, as the original demo did; feed them to
:meth:`~titans_memory.demo.TitansMemoryLayer.process_sequence` as ``seq.unsqueeze(-1)``, shape
``(T, 1)`` (the layer also accepts the ``(T,)`` series itself when ``input_dim == 1``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from titans_memory.demo import _checks


def _int_list(name: str, values: object) -> list[int]:
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints, got {type(values).__name__}")
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must contain ints, got {type(v).__name__}")
        out.append(int(v))
    return out


def generate_repeating_with_anomalies(
    pattern: Sequence[float],
    repeats: int,
    anomaly_indices: Sequence[int],
    anomaly_value: float = 99.0,
) -> tuple[Tensor, Tensor]:
    """``pattern`` repeated ``repeats`` times, with ``anomaly_value`` at ``anomaly_indices``.

    Args:
        pattern: the values of one period, e.g. ``[1, 2, 3]``; non-empty, finite.
        repeats: number of periods, >= 1.
        anomaly_indices: positions in ``[0, T)`` to overwrite (``T = len(pattern) * repeats``);
            may be empty.
        anomaly_value: the value written there; finite.

    Returns:
        ``(seq, anomaly_mask)``, both of shape ``(T,)`` and dtype float32: the series, and 1.0
        at the anomalies, 0.0 elsewhere (use ``anomaly_mask.bool()`` to index).

    Raises:
        TypeError / ValueError: for an argument of the wrong type or out of range (an index
        outside the sequence is an error, not silently skipped).
    """
    if isinstance(pattern, Tensor):
        pattern = pattern.tolist()
    if isinstance(pattern, (str, bytes)) or not isinstance(pattern, Sequence):
        raise TypeError(f"pattern must be a sequence of numbers, got {type(pattern).__name__}")
    if len(pattern) == 0:
        raise ValueError("pattern must not be empty")
    values = [_checks.real("pattern element", v) for v in pattern]
    repeats = _checks.positive_int("repeats", repeats)
    indices = _int_list("anomaly_indices", anomaly_indices)
    anomaly_value = _checks.real("anomaly_value", anomaly_value)

    length = len(values) * repeats
    bad = [i for i in indices if not 0 <= i < length]
    if bad:
        raise ValueError(f"anomaly_indices must lie in [0, {length}), got {bad}")

    seq = torch.tensor(values, dtype=torch.float32).repeat(repeats)
    anomaly_mask = torch.zeros(length, dtype=torch.float32)
    if indices:
        idx = torch.tensor(indices, dtype=torch.long)
        seq[idx] = anomaly_value
        anomaly_mask[idx] = 1.0
    return seq, anomaly_mask


def generate_frequency_shift(
    length: int,
    base_freq: float,
    shifted_freq: float,
    shift_at: Sequence[int],
) -> tuple[Tensor, list[int]]:
    """A sine wave ``sin(2 pi f t)`` whose frequency ``f`` switches at given timesteps.

    ``f`` starts at ``base_freq`` and toggles between ``base_freq`` and ``shifted_freq`` at each
    position in ``shift_at`` (the new frequency applies from that position on). ``t`` is the
    absolute timestep, so the phase jumps at a switch: that discontinuity is the "surprise".

    Args:
        length: number of samples ``T``, >= 1.
        base_freq: starting frequency, in cycles per timestep; finite.
        shifted_freq: the other frequency; finite.
        shift_at: switch positions in ``[0, T)``, in any order (a single int is accepted too).

    Returns:
        ``(seq, shift_at)``: the float32 series of shape ``(T,)``, and the switch positions as
        a list, in the order given.
    """
    length = _checks.positive_int("length", length)
    base_freq = _checks.real("base_freq", base_freq)
    shifted_freq = _checks.real("shifted_freq", shifted_freq)
    if isinstance(shift_at, numbers.Integral) and not isinstance(shift_at, bool):
        shift_at = [int(shift_at)]
    shifts = _int_list("shift_at", shift_at)
    bad = [i for i in shifts if not 0 <= i < length]
    if bad:
        raise ValueError(f"shift_at must lie in [0, {length}), got {bad}")

    t = torch.arange(length, dtype=torch.float64)
    # Number of switches at or before each t; odd -> the shifted frequency is active.
    n_switches = torch.zeros(length, dtype=torch.long)
    for s in shifts:
        n_switches[s:] += 1
    # float64 throughout: a float32 frequency would put a phase error of ~1e-7 * t into sin.
    freq = torch.where(
        n_switches % 2 == 1,
        torch.tensor(shifted_freq, dtype=torch.float64),
        torch.tensor(base_freq, dtype=torch.float64),
    )
    seq = torch.sin(2.0 * math.pi * freq * t).to(torch.float32)
    return seq, shifts
