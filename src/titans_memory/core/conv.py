"""Depthwise causal convolution over time, carried across calls, with a hand-written backward.

``out_t = sum_j w_j * u_{t-K+1+j}`` per channel, where the K-1 inputs before the first token come
from ``tail`` (the previous call's last inputs, zeros for a fresh stream). It is a handful of fused
multiply-adds in ``(B, T, C)`` layout: oneDNN's depthwise ``conv1d`` is as fast at 1k tokens but
about 45x slower at 32k, and autograd through in-place shifted multiply-adds copies the whole
gradient once per tap. The backward below writes each gradient once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _shifted_madd(out: Tensor, a: Tensor, head: Tensor, w: Tensor, flip: bool) -> Tensor:
    """``out += shift(a) * w`` for every tap but the last, in place.

    ``flip=False`` (forward): tap j adds ``a_{t - shift}`` to ``out_t``, reading ``head`` (the tail)
    for ``t < shift``. ``flip=True`` (backward, the adjoint): tap j adds ``a_{t + shift}`` to
    ``out_t`` and returns the tail's gradient.
    """
    K = w.shape[1]
    T = a.shape[1]
    for j in range(K - 1):
        shift = K - 1 - j  # tap j reads u_{t - shift}
        n = min(shift, T)
        if flip:
            if T > shift:
                out[:, : T - shift].addcmul_(a[:, shift:], w[:, j])
            head[:, j : j + n].addcmul_(a[:, :n], w[:, j])
        else:
            if T > shift:
                out[:, shift:].addcmul_(a[:, : T - shift], w[:, j])
            out[:, :n].addcmul_(head[:, j : j + n], w[:, j])
    return out


class _CausalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, weight: Tensor, tail: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(u, weight, tail)
        out = u * weight[:, -1]  # the last tap multiplies the current token
        return _shifted_madd(out, u, tail, weight, flip=False)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: D102
        u, weight, tail = ctx.saved_tensors
        K, T = weight.shape[1], u.shape[1]
        grad_u = grad_w = grad_tail = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            grad_u = grad * weight[:, -1]
            grad_tail = torch.zeros_like(tail)
            _shifted_madd(grad_u, grad, grad_tail, weight, flip=True)
        if ctx.needs_input_grad[1]:
            taps = [(grad * u).sum((0, 1))]
            for j in range(K - 2, -1, -1):
                shift = K - 1 - j
                n = min(shift, T)
                g = (grad[:, :n] * tail[:, j : j + n]).sum((0, 1))
                if T > shift:
                    g = g + (grad[:, shift:] * u[:, : T - shift]).sum((0, 1))
                taps.append(g)
            grad_w = torch.stack(taps[::-1], dim=1)
        return grad_u, grad_w, grad_tail


def causal_depthwise_conv(u: Tensor, weight: Tensor, tail: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Causal depthwise convolution of ``u`` continuing from ``tail``.

    Args:
        u: ``(B, T, C)`` inputs.
        weight: ``(C, K)`` filters; tap ``K - 1`` multiplies the current token.
        tail: ``(B, K - 1, C)``, the K - 1 inputs before ``u`` (None when K = 1).

    Returns:
        ``(out, new_tail)``: ``out`` is ``(B, T, C)``; ``new_tail`` the last K - 1 inputs seen
        (those of ``u``, completed from ``tail`` when ``T < K - 1``), or None when K = 1.
    """
    if tail is None:
        return u * weight[:, 0], None
    K, T = weight.shape[1], u.shape[1]
    out = _CausalConv.apply(u, weight, tail)
    # a copy, not a view: a view would keep the whole (B, T, C) input alive as long as the state
    new_tail = u[:, T - (K - 1) :].clone() if T >= K - 1 else torch.cat([tail[:, T:], u], dim=1)
    return out, new_tail
