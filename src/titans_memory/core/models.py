"""Memory architectures as plain functions of ``(weights, x)``, with an explicit backward.

The memory ``M`` is an MLP without biases, written in the row-vector convention ``h @ W``:

* depth 1 (matrix memory):  ``M(x) = x W``
* depth L >= 2 (residual):  ``h_0 = x;  h_l = act(h_{l-1} W_l) for l < L;  M(x) = x + h_{L-1} W_L``

Every weight tensor carries leading batch dimensions, e.g. ``(N, d_in, d_out)`` for N = batch x heads
independent memories. The error signals are written out by hand (not ``torch.autograd.grad``) so that
the gradient of the inner loss is an ordinary differentiable expression: outer-loop training
differentiates straight through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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


ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "gelu": (torch.nn.functional.gelu, _gelu_grad),
    "silu": (torch.nn.functional.silu, _silu_grad),
    "relu": (torch.relu, _relu_grad),
    "tanh": (torch.tanh, _tanh_grad),
}

# ``grad * act'(z)`` (mostly as one fused ATen kernel), given the pre-activation z and the output
# h = act(z): the same value as ``grad * slope(z)`` in one op (and one autograd node), and itself
# differentiable (PyTorch ships their double backward), so outer-loop training goes through it.
_FUSED_BACKWARD: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "gelu": lambda grad, z, h: torch.ops.aten.gelu_backward(grad, z),
    "silu": lambda grad, z, h: grad * _silu_grad(z),  # silu_backward has no double backward
    "relu": lambda grad, z, h: torch.ops.aten.threshold_backward(grad, z, 0),
    "tanh": lambda grad, z, h: torch.ops.aten.tanh_backward(grad, h),
}


def memory_forward(
    weights: Sequence[Tensor], x: Tensor, activation: str = "gelu"
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Run the memory on ``x``.

    Args:
        weights: L tensors ``(..., d_in, d_out)``.
        x: ``(..., T, d)`` inputs (keys or queries).
        activation: name of the hidden non-linearity (depth >= 2).

    Returns:
        ``(out, inputs, preacts)``: ``out`` is ``M(x)`` of shape ``(..., T, d)``; ``inputs[l]`` is the
        input ``h_{l}`` of layer ``l + 1`` (``inputs[0] = x``); ``preacts[l]`` is the pre-activation
        of hidden layer ``l + 1`` (L - 1 of them).
    """
    act, _ = ACTIVATIONS[activation]
    inputs: list[Tensor] = [x]
    preacts: list[Tensor] = []
    h = x
    for w in weights[:-1]:
        z = h @ w
        preacts.append(z)
        h = act(z)
        inputs.append(h)
    out = h @ weights[-1]
    if len(weights) > 1:
        out = out + x  # residual form of the deep memory
    return out, inputs, preacts


def memory_backward(
    weights: Sequence[Tensor], preacts: Sequence[Tensor], grad_out: Tensor, activation: str = "gelu"
) -> list[Tensor]:
    """Error signals ``delta_l = d loss / d (pre-activation of layer l)``, one per weight.

    The gradient of a weight is then the sum of outer products ``inputs[l]^T @ delta_l``; this
    function never forms it, because the chunk-parallel form only needs the factors.

    Args:
        weights: the L weights used in the forward pass.
        preacts: ``preacts`` from :func:`memory_forward`.
        grad_out: ``(..., T, d)``, ``d loss / d M(x)`` per token (from the attentional bias).

    Returns:
        L tensors ``(..., T, d_out_l)``.
    """
    _, act_grad = ACTIVATIONS[activation]
    deltas = [grad_out]  # the residual path adds no parameter, so delta_L = d loss / d out
    delta = grad_out
    for layer in range(len(weights) - 1, 0, -1):
        delta = (delta @ weights[layer].transpose(-1, -2)) * act_grad(preacts[layer - 1])
        deltas.append(delta)
    deltas.reverse()
    return deltas


def memory_errors_at(
    weights: Sequence[Tensor],
    x: Tensor,
    target: Tensor,
    error_fn: Callable[..., Tensor],
    activation: str = "gelu",
    *,
    param: Tensor | None = None,
    row_scale: Tensor | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Forward and backward of the inner loss in one pass: ``(inputs, deltas)`` per layer.

    Same values as :func:`memory_forward` then :func:`memory_backward`, with the activation's
    derivative applied by PyTorch's fused backward kernels (one op per layer, differentiable).

    Args:
        error_fn: ``error_fn(pred, target, param)`` is ``d loss / d M(x)`` of the attentional bias.
        param: per-token parameter of the bias, ``(..., T, 1)``, or None.
        row_scale: ``(..., T, 1)``: token t's gradient is taken at the weights scaled by
            ``row_scale_t`` (every layer), i.e. at a decayed memory (Gated DeltaNet). Scaling all
            weights by s scales every layer's pre-activation and back-propagated error by s.
    """
    act = ACTIVATIONS[activation][0]
    act_backward = _FUSED_BACKWARD[activation]
    inputs: list[Tensor] = [x]
    preacts: list[Tensor] = []
    h = x
    for w in weights[:-1]:
        z = h @ w
        if row_scale is not None:
            z = z * row_scale
        h = act(z)
        preacts.append(z)
        inputs.append(h)
    pred = h @ weights[-1]
    if row_scale is not None:
        pred = pred * row_scale
    if len(weights) > 1:
        pred = pred + x
    delta = error_fn(pred, target, param)
    deltas = [delta]
    for layer in range(len(weights) - 1, 0, -1):
        back = delta @ weights[layer].transpose(-1, -2)
        if row_scale is not None:
            back = back * row_scale
        delta = act_backward(back, preacts[layer - 1], inputs[layer])  # back * act'(z)
        deltas.append(delta)
    deltas.reverse()
    return inputs, deltas


def memory_weight_grads(inputs: Sequence[Tensor], deltas: Sequence[Tensor]) -> list[Tensor]:
    """Per-token weight gradients ``inputs[l]_t^T delta_l,t`` as ``(..., T, d_in, d_out)``.

    Only for references and tests: the fast path never materialises per-token gradients.
    """
    return [a.unsqueeze(-1) * d.unsqueeze(-2) for a, d in zip(inputs, deltas, strict=True)]


def init_memory_weights(
    layer_shapes: Sequence[tuple[int, int]], heads: int, generator: torch.Generator | None = None
) -> list[Tensor]:
    """Initial memory weights ``(heads, d_in, d_out)``, scaled so a fresh memory is well behaved.

    Hidden layers get variance 1/d_in. The last layer of a residual memory starts smaller
    (variance 0.1/d_in) so that ``M(x) ~ x + small`` at first; a matrix memory starts at 0.
    """
    weights = []
    deep = len(layer_shapes) > 1
    for i, (d_in, d_out) in enumerate(layer_shapes):
        if not deep:
            w = torch.zeros(heads, d_in, d_out)
        else:
            std = (1.0 if i < len(layer_shapes) - 1 else math.sqrt(0.1)) / math.sqrt(d_in)
            w = torch.randn(heads, d_in, d_out, generator=generator) * std
        weights.append(w)
    return weights
