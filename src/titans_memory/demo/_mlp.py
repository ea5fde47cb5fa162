"""Explicit forward and backward passes for the demo's small ReLU MLPs.

The demo layer takes one tiny gradient step per token. With autograd, each step builds and frees a
graph and sets ``.grad`` on every parameter: for networks of a few hundred weights that bookkeeping
costs more than the arithmetic. The nets here are plain ``Linear -> ReLU -> ... -> Linear`` stacks,
so the gradient of a mean squared error is a handful of matrix products, written out below.

Conventions: ``params`` is the flat list ``[W_1, b_1, W_2, b_2, ...]`` of a ``nn.Sequential``'s
``Linear`` layers (``W_l`` of shape ``(d_out, d_in)`` as in ``nn.Linear``); inputs are 2-D,
``(N, d_in)``. Nothing here records autograd history: callers run under ``torch.no_grad()``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def linear_params(net: nn.Sequential) -> list[Tensor]:
    """The parameters ``[W_1, b_1, ..., W_L, b_L]`` of an alternating ``Linear``/``ReLU`` stack.

    Raises:
        TypeError: if ``net`` is not ``Linear (ReLU Linear)*``; the explicit backward below is
            only correct for that structure.
    """
    layers = list(net)
    ok = len(layers) % 2 == 1 and all(
        isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, nn.ReLU)
        for i, m in enumerate(layers)
    )
    if not ok or any(m.bias is None for m in layers[::2]):
        raise TypeError("expected an nn.Sequential of Linear (with bias) layers separated by ReLU")
    params: list[Tensor] = []
    for lin in layers[::2]:
        params += [lin.weight, lin.bias]
    return params


def forward_cached(params: list[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Forward pass keeping each layer's input for the backward pass.

    Args:
        params: ``[W_1, b_1, ..., W_L, b_L]``.
        x: ``(N, d_in)``, or a single vector ``(d_in,)`` (the per-token fast path: matrix-vector
            products, no batch dimension to create or sum over).

    Returns:
        ``(y, inputs)``: ``y`` is ``(N, d_out)`` (or ``(d_out,)``); ``inputs[l]`` is the input of
        layer ``l + 1`` (``inputs[0] = x``, the others are post-ReLU activations).
    """
    n_layers = len(params) // 2
    # addmm/addmv fuse the bias add into the product: one kernel launch instead of two.
    vector = x.dim() == 1
    inputs = [x]
    h = x
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        h = torch.addmv(b, w, h) if vector else torch.addmm(b, h, w.t())
        if i < n_layers - 1:
            h = torch.relu(h)
            inputs.append(h)
    return h, inputs


def backward(params: list[Tensor], inputs: list[Tensor], grad_out: Tensor) -> list[Tensor]:
    """Gradients of a loss w.r.t. ``params`` given ``d loss / d y`` (``grad_out``).

    ``grad_out`` has ``y``'s shape, ``(N, d_out)`` or ``(d_out,)``. Uses
    ``relu'(z) = 1[relu(z) > 0]``, so the post-activation inputs saved by :func:`forward_cached`
    are enough (no pre-activations needed).
    """
    n_layers = len(params) // 2
    vector = grad_out.dim() == 1
    grads: list[Tensor] = [grad_out] * len(params)  # placeholders, all overwritten
    delta = grad_out
    for i in range(n_layers - 1, -1, -1):
        a = inputs[i]
        if vector:
            grads[2 * i] = torch.outer(delta, a)
            grads[2 * i + 1] = delta
        else:
            grads[2 * i] = delta.t().mm(a)
            grads[2 * i + 1] = delta.sum(0)
        if i > 0:
            # delta @ W works for a vector and for a batch of rows alike.
            delta = (delta @ params[2 * i]) * (a > 0)
    return grads


def mse_grad_out(y: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(loss, d loss / d y)`` for ``loss = mean((y - target) ** 2)`` over all elements."""
    err = y - target
    loss = err.square().mean()
    return loss, err * (2.0 / err.numel())


def sgd_step_(
    params: list[Tensor],
    grads: list[Tensor],
    lr: float,
    gain: Tensor | None = None,
    max_grad_norm: float | None = None,
) -> None:
    """In place: ``p -= lr * gain * c * g`` for every parameter ``p`` and its gradient ``g``.

    Args:
        params: tensors updated in place (call under ``torch.no_grad()``).
        grads: their gradients, same order; overwritten (used as scratch space).
        lr: step size.
        gain: optional 0-d tensor multiplying the step (e.g. a write gate); a tensor, not a
            float, so the step needs no host-device sync.
        max_grad_norm: if given (> 0), ``c = min(1, max_grad_norm / ||g||)`` with ``||g||`` the
            L2 norm of all gradients together, so one step moves the weights by at most
            ``lr * gain * max_grad_norm``. ``None``: ``c = 1``, a plain, unbounded step.
    """
    if max_grad_norm is None:
        if gain is None:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        scale = gain * lr
    else:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        # lr * min(1, M / ||g||) = lr * M / max(||g||, M): no division by zero, as M > 0.
        bound = lr * max_grad_norm
        scale = (bound if gain is None else gain * bound) / norm.clamp_(min=max_grad_norm)
    torch._foreach_mul_(grads, scale)
    torch._foreach_sub_(params, grads)
