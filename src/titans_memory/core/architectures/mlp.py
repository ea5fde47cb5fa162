"""The MLP family of memories: the matrix memory and the residual MLP of any depth.

The memory ``M`` is an MLP without biases, in the row-vector convention ``h @ W``:

* :class:`MatrixMemory` (depth 1):   ``M(x) = x W``   (linear attention, DeltaNet, TTT-Linear)
* :class:`ResidualMLPMemory` (depth L >= 2): ``h_0 = x;  h_l = act(h_{l-1} W_l) for l < L;
  M(x) = x + h_{L-1} W_L``   (Titans' deep memory, Titans eq. 12 with an MLP; TTT-MLP)

Every weight carries a leading batch dimension, ``(N, d_in, d_out)`` for N = batch x heads
independent memories. The error signals are written out by hand (not ``torch.autograd.grad``), so
the gradient of the inner loss is an ordinary differentiable expression: outer-loop training
differentiates straight through it. The dual-form read of a chunk and its hand-written backward
live beside this file, in ``mlp_dual_form.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from titans_memory.core.architectures import mlp_dual_form
from titans_memory.core.architectures.activations import (
    ACTIVATIONS,
    FUSED_BACKWARD,
    SECOND_DERIVATIVE,
)
from titans_memory.core.architectures.base import (
    DualFormMemory,
    KeyPath,
    ReadCoefficients,
    WriteCoefficients,
)
from titans_memory.core.architectures.mlp_key_path import bounded_key_path
from titans_memory.core.objectives import AttentionalBias


def layer_chain(weights: Sequence[Tensor], x: Tensor, activation: str) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The bias-free layers ``x W_1, act, ..., W_L`` without any residual: ``(out, inputs, preacts)``
    as :meth:`MLPMemory.forward_with_cache` returns them (``inputs[0] = x``)."""
    act = ACTIVATIONS[activation][0]
    inputs: list[Tensor] = [x]
    preacts: list[Tensor] = []
    h = x
    for w in weights[:-1]:
        z = h @ w
        preacts.append(z)
        h = act(z)
        inputs.append(h)
    return h @ weights[-1], inputs, preacts


class MLPMemory(DualFormMemory):
    """Shared code of the MLP family: a chain of bias-free linear layers with an activation
    between them, optionally with a residual connection around the whole chain."""

    activation: str
    residual: bool
    #: where the residual starts in the input: ``M(x) = chain(x) + x[..., s : s + d]`` (0: the input
    #: itself; the feature memory skips its constant feature)
    skip_offset: int = 0

    @property
    def skip(self) -> int | None:
        """The residual's first input channel (``skip_offset``), None without a residual."""
        return self.skip_offset if self.residual else None

    # --- the memory itself ------------------------------------------------------------------------
    def forward_with_cache(self, weights: Sequence[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``M(x)`` and what the explicit backward needs.

        Returns:
            ``(out, inputs, preacts)``: ``out`` is ``M(x)`` ``(..., T, d)``; ``inputs[l]`` the input
            ``h_l`` of layer ``l + 1`` (``inputs[0] = x``); ``preacts[l]`` the pre-activation of
            hidden layer ``l + 1`` (L - 1 of them).
        """
        out, inputs, preacts = layer_chain(weights, x, self.activation)
        return mlp_dual_form.add_skip(out, x, self.skip), inputs, preacts

    def forward(self, weights: Sequence[Tensor], x: Tensor) -> Tensor:
        return self.forward_with_cache(weights, x)[0]

    def backward(self, weights: Sequence[Tensor], preacts: Sequence[Tensor], grad_out: Tensor) -> list[Tensor]:
        """Error signals ``delta_l = d loss / d (pre-activation of layer l)``, one per weight.

        The gradient of a weight is then the sum of outer products ``inputs[l]^T @ delta_l``; this
        never forms it, because the chunk-parallel form only needs the factors.

        Args:
            grad_out: ``(..., T, d)``, ``d loss / d M(x)`` per token (the attentional bias' error).
        """
        act_grad = ACTIVATIONS[self.activation][1]
        deltas = [grad_out]  # the residual path adds no parameter, so delta_L = d loss / d out
        delta = grad_out
        for layer in range(len(weights) - 1, 0, -1):
            delta = (delta @ weights[layer].transpose(-1, -2)) * act_grad(preacts[layer - 1])
            deltas.append(delta)
        deltas.reverse()
        return deltas

    def token_gradients(self, weights, k, v, bias, param):
        # the plain forward and backward above (not the fused key path): the reference shares
        # as little as it can with the fast path
        pred, inputs, preacts = self.forward_with_cache(weights, k)
        deltas = self.backward(weights, preacts, bias.error(pred, v, param))
        return [a.unsqueeze(-1) * d.unsqueeze(-2) for a, d in zip(inputs, deltas, strict=True)]

    # --- the dual form (chunked operator) -----------------------------------------------------------
    def key_path(self, anchor, k, v, bias: AttentionalBias, param, row_scale=None) -> KeyPath:
        """Forward and backward of the inner loss in one pass.

        Same values as :meth:`forward_with_cache` then :meth:`backward`, with the activation's
        derivative applied by PyTorch's fused backward kernels (one op per layer, differentiable).
        Scaling all weights by s (``row_scale``) scales every pre-activation and every
        back-propagated error by s.
        """
        act = ACTIVATIONS[self.activation][0]
        act_backward = FUSED_BACKWARD[self.activation]
        inputs: list[Tensor] = [k]
        preacts: list[Tensor] = []
        h = k
        for w in anchor[:-1]:
            z = h @ w
            if row_scale is not None:
                z = z * row_scale
            h = act(z)
            preacts.append(z)
            inputs.append(h)
        pred = h @ anchor[-1]
        if row_scale is not None:
            pred = pred * row_scale
        pred = mlp_dual_form.add_skip(pred, k, self.skip)
        delta = bias.error(pred, v, param)
        deltas = [delta]
        for layer in range(len(anchor) - 1, 0, -1):
            back = delta @ anchor[layer].transpose(-1, -2)
            if row_scale is not None:
                back = back * row_scale
            delta = act_backward(back, preacts[layer - 1], inputs[layer])  # back * act'(z)
            deltas.append(delta)
        deltas.reverse()
        return KeyPath(tuple(inputs), tuple(deltas))

    def bounded_key_path(
        self, anchor, k, v, bias: AttentionalBias, param, row_scale, max_step_norm, *, differentiable=True
    ) -> KeyPath:
        """:meth:`key_path` and the step bound as one autograd node with a hand-written backward
        (``mlp_key_path.py``); the generic autograd version for an activation without a known
        second derivative."""
        if self.activation not in SECOND_DERIVATIVE:
            return super().bounded_key_path(anchor, k, v, bias, param, row_scale, max_step_norm)
        inputs, deltas = bounded_key_path(
            anchor, k, v, bias, param, row_scale, max_step_norm, self.activation, self.skip,
            differentiable=differentiable,
        )
        return KeyPath(tuple(inputs), tuple(deltas))

    def read_write(
        self,
        q: Tensor,
        read: ReadCoefficients,
        write: WriteCoefficients,
        weights: Sequence[Tensor],
        momentum: Sequence[Tensor] | None,
        key_path: KeyPath,
        *,
        differentiable: bool,
        inplace: bool = False,
    ):
        if differentiable:
            return mlp_dual_form.read_write_autograd(
                q, read, write, weights, momentum, key_path, self.activation, self.skip
            )
        return mlp_dual_form.read_write(
            q, read, write, weights, momentum, key_path, self.activation, self.skip, inplace=inplace
        )

    def write(self, write, weights, momentum, key_path, *, inplace=False):
        return mlp_dual_form.write_state(write, weights, momentum, key_path, inplace=inplace)


@dataclass(frozen=True)
class MatrixMemory(MLPMemory):
    """``M(x) = x W``: one ``(d, d)`` matrix per head, starting at 0 (nothing stored yet)."""

    dim: int
    activation: str = "gelu"  # unused (no hidden layer); kept so every MLP memory has one
    residual = False

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(self.dim, self.dim)]

    def init_weights(self, heads, generator=None):
        return [torch.zeros(heads, self.dim, self.dim)]


@dataclass(frozen=True)
class ResidualMLPMemory(MLPMemory):
    """``M(x) = x + act(... act(x W_1) ...) W_L``, depth L >= 2, hidden width ``hidden``.

    Initialisation: hidden layers get variance ``1 / d_in``; the last layer starts small (variance
    ``0.1 / d_in``) so that ``M(x) ~ x + small`` at first.
    """

    dim: int
    hidden: int
    depth: int = 2
    activation: str = "gelu"
    residual = True

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ValueError(f"ResidualMLPMemory.depth must be >= 2 (depth 1 is MatrixMemory), got {self.depth}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"ResidualMLPMemory.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        d, h = self.dim, self.hidden
        return [(d, h)] + [(h, h)] * (self.depth - 2) + [(h, d)]

    def init_weights(self, heads, generator=None):
        shapes = self.layer_shapes
        weights = []
        for i, (d_in, d_out) in enumerate(shapes):
            std = (1.0 if i < len(shapes) - 1 else math.sqrt(0.1)) / math.sqrt(d_in)
            weights.append(torch.randn(heads, d_in, d_out, generator=generator) * std)
        return weights
