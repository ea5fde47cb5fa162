"""Mixed precision: bf16 autocast for attention and MLPs, the neural memory kept in float32.

The memory's state is a running sum of gradient steps (Titans eqs. 13-14) carried over thousands
of tokens; its chunked update mixes the float32 state with freshly computed terms, which bf16
autocast would make bf16 (the core's in-place updates then refuse the mixed dtypes). So under
autocast every :class:`~titans_memory.core.neural_memory.NeuralMemory` runs with autocast off, on
float32 inputs; the layers around it still run in bf16.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from titans_memory.core.neural_memory import NeuralMemory


def autocast_for(precision: str, device: torch.device):
    """``(context factory, name)``: bf16 autocast when ``precision`` asks for it, else nothing.

    ``auto`` means bf16 on a CUDA GPU that supports it and float32 elsewhere (on a CPU bf16 is
    allowed when asked for, but rarely faster).
    """
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if not use_bf16:
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), "bf16"


def _float32_call(fn):
    @functools.wraps(fn)
    def call(x, *args, **kwargs):
        if not torch.is_autocast_enabled(x.device.type):
            return fn(x, *args, **kwargs)
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.float(), *args, **kwargs)

    return call


def memory_in_float32(model: nn.Module) -> nn.Module:
    """Make every NeuralMemory of ``model`` run in float32 under autocast (in place; returns ``model``)."""
    for module in model.modules():
        if isinstance(module, NeuralMemory) and not getattr(module, "_float32_under_autocast", False):
            for name in ("forward", "retrieve", "store"):
                setattr(module, name, _float32_call(getattr(module, name)))
            module._float32_under_autocast = True
    return model
