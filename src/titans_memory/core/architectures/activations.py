"""Hidden non-linearities of the MLP memory, each with its derivative and a fused backward."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_grad(z: Tensor) -> Tensor:
    # d/dz [z Phi(z)] = Phi(z) + z phi(z)  (exact, erf-based GELU)
    cdf = 0.5 * (1.0 + torch.erf(z * _SQRT_HALF))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return cdf + z * pdf


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def _tanh_grad(z: Tensor) -> Tensor:
    return 1.0 - torch.tanh(z) ** 2


#: Hidden non-linearities: ``name -> (act, act')``.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "gelu": (torch.nn.functional.gelu, _gelu_grad),
    "silu": (torch.nn.functional.silu, _silu_grad),
    "relu": (torch.relu, _relu_grad),
    "tanh": (torch.tanh, _tanh_grad),
}

#: ``grad * act'(z)`` (mostly as one fused ATen kernel), given the pre-activation z and the output
#: h = act(z): the same value as ``grad * act'(z)`` in one op (and one autograd node), and itself
#: differentiable (PyTorch ships their double backward), so outer-loop training goes through it.
FUSED_BACKWARD: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "gelu": lambda grad, z, h: torch.ops.aten.gelu_backward(grad, z),
    "silu": lambda grad, z, h: grad * _silu_grad(z),  # silu_backward has no double backward
    "relu": lambda grad, z, h: torch.ops.aten.threshold_backward(grad, z, 0),
    "tanh": lambda grad, z, h: torch.ops.aten.tanh_backward(grad, h),
}
