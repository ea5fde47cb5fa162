"""The NaN/Inf check on what a :class:`~titans_memory.core.neural_memory.NeuralMemory` is handed.

A NaN that reaches the memory's state stays there for good (every later write mixes it in), so
every input and every state handed in is checked. Reading the answer on the host costs nothing
extra on the CPU, but on a GPU it is a synchronisation per call: the host waits for the device.
Hence the modes of ``NeuralMemory(check_finite=...)``:

* ``True`` (default): on the CPU, a host check that raises ``ValueError`` naming the input; on any
  other device, and while ``torch.compile`` traces, a device-side assertion
  (``torch._assert_async``): no synchronisation, but a NaN fails the *next* synchronising call
  with a device-side assertion error instead of a ``ValueError`` here (on CUDA the context is then
  unusable: the process must restart);
* ``"sync"``: the host check on every device (one synchronisation per input and state);
* ``"async"``: the device-side assertion on every device (on the CPU it raises ``RuntimeError``
  at once);
* ``False``: no check at all. What is lost: a NaN or Inf in an input then spreads silently into
  the state and every later output, with nothing to say where it came from.
"""

from __future__ import annotations

import torch
from torch import Tensor

from titans_memory._tensors import all_finite

#: the accepted values of ``check_finite``
CHECK_FINITE_MODES = (True, False, "sync", "async")


def check_finite_mode(value: object) -> bool | str:
    """``value`` if it is one of :data:`CHECK_FINITE_MODES`, else a ``TypeError``."""
    if not any(value is mode or (isinstance(mode, str) and value == mode) for mode in CHECK_FINITE_MODES):
        raise TypeError(f"check_finite must be True, False, 'sync' or 'async', got {value!r}")
    return value


def on_host(mode: bool | str, t: Tensor) -> bool:
    """Whether ``mode`` checks ``t`` on the host (else on the device, or not at all)."""
    if mode == "sync":
        return True
    return mode is True and t.device.type == "cpu" and not torch.compiler.is_compiling()


def require_finite(t: Tensor, what: str, mode: bool | str) -> None:
    """Raise (or assert on the device) unless ``t`` holds no NaN and no Inf; see the module docstring."""
    if mode is False or t.numel() == 0 or not t.is_floating_point():
        return
    if on_host(mode, t):
        if not all_finite(t):
            raise ValueError(f"{what} contains NaN or Inf")
        return
    lo, hi = torch.aminmax(t)  # one pass; NaN propagates, and an infinity is the min or the max
    torch._assert_async(torch.isfinite(lo) & torch.isfinite(hi), f"{what} contains NaN or Inf")
