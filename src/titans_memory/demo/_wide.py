"""Tokens too large for the networks' dtype: a proof that the plain step fits, or a wide step.

The demo's networks compute in their parameters' dtype (float32). The square of a value above
~1.8e19 does not fit in float32 (a squared error, an outer product of an error and an
activation), and a token near float32's maximum (3.4e38) overflows the first linear layer
already. Once one of these is Inf, the write gate is ``Inf / Inf`` or the clipped step
``Inf * 0``, NaN, and the weights turn NaN for good; from ~4e9 on, the squared gradient norm
alone overflows, the clipping factor becomes 0 and the write is silently skipped. Rather than
slow every step down, each step goes one of two ways:

* the **plain** path, the usual arithmetic in the parameters' dtype, when :func:`plain_fits`
  proves, from the norms of the weights and the size of the input, that no intermediate value of
  the forward pass, the error, the backward pass or the step can exceed 1/16 of the dtype's
  largest finite value;
* the **wide** path otherwise: the same computation in float64, where a float32 input of any
  size cannot overflow (a squared error of a 3.4e38 input is ~1e77, float64 goes to 1.8e308),
  and every result that does not fit back into the dtype (a surprise above 3.4e38, a read, a
  weight after an unclipped step) is *saturated*: clamped to the dtype's largest finite value.

On ordinary inputs every step takes the plain path, so the results are bit for bit the ones of
the plain arithmetic. Nothing here records autograd history: callers run under
``torch.no_grad()``. ``params`` is ``[W_1, b_1, ..., W_L, b_L]`` as in :mod:`._mlp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from titans_memory.demo import _mlp

# The plain path must keep every intermediate value below max / _HEADROOM: the bounds below are
# for exact arithmetic, and a 16x margin covers the rounding of any sum of a few thousand terms.
_HEADROOM = 16.0
# The wide path's dtype. With float32 (or float16/bfloat16) inputs and weights of sane size its
# range is never approached; with weights already clamped at float32's maximum (after unclipped
# steps) a surprise can overflow it too, and is clamped like any other.
_WIDE = torch.float64


def limit(dtype: torch.dtype) -> float:
    """The largest magnitude the plain path may produce in ``dtype``: its max / 16."""
    return torch.finfo(dtype).max / _HEADROOM


def plain_fits(
    norms: Sequence[float],
    x_max: float,
    dim: int,
    *,
    bound: float,
    rows: int = 1,
    upto: Literal["read", "error", "step"] = "step",
    lr: float = 0.0,
    max_grad_norm: float | None = None,
    growth: float = 0.0,
    mse_bound: float = math.inf,
) -> bool:
    """Whether a ReLU MLP's forward pass (``upto="read"``), its mean squared error of
    reconstructing the input (``"error"``), and the backward pass and gradient step on that
    error (``"step"``) provably keep every intermediate value at most ``bound``.

    With ``a_0 = x`` and ``a_l = relu(W_l a_{l-1} + b_l)``, per row, Cauchy-Schwarz gives
    ``||a_l|| <= ||W_l||_F ||a_{l-1}|| + ||b_l||``, which also bounds every partial sum of the
    matrix products; the error ``e = y - x`` has ``||e|| <= ||y|| + ||x||``; the gradient of the
    mean over ``rows * dim`` elements, summed over the rows, has
    ``||dL/dW_l|| <= ||delta_l|| ||a_{l-1}||`` and ``||dL/db_l|| <= ||delta_l||`` with
    ``||delta_L|| <= 2 ||e|| / dim`` and ``||delta_{l-1}|| <= ||W_l||_F ||delta_l||`` (the ReLU
    mask only shrinks it). A step moves the weights by at most ``lr * min(||g||, max_grad_norm)``.

    Args:
        norms: ``[||W_1||_F, ||b_1||, ..., ||W_L||_F, ||b_L||]`` (NaN or Inf: does not fit).
        x_max: the largest magnitude of an input element.
        dim: the input's (and output's) last dimension.
        bound: the largest magnitude allowed, e.g. :func:`limit` of the dtype.
        rows: the number of rows the error's sum of squares runs over.
        upto: the last stage computed: ``"read"``, ``"error"`` or ``"step"``.
        lr: the step size, gain included (the write gate is at most 1).
        max_grad_norm: the clipping threshold of the step, or ``None`` for a plain step.
        growth: added to every norm, for weights that may move by that much before the next
            check.
        mse_bound: the mean squared error must not exceed this either.
    """
    weights = [n + growth for n in norms[0::2]]
    biases = [n + growth for n in norms[1::2]]
    x = math.sqrt(dim) * x_max  # bound on one row's L2 norm
    acts = [x]
    for w, b in zip(weights, biases, strict=True):
        acts.append(w * acts[-1] + b)
    values = [*weights, *biases, *acts]
    if upto == "read":
        return all(v <= bound for v in values)
    err = acts[-1] + x
    values += [err, rows * err * err]
    mse = err * err / dim
    if upto == "step":
        delta = 2.0 * err / dim
        total = 0.0
        for layer in range(len(weights) - 1, -1, -1):
            grad_w = delta * acts[layer]
            values += [delta, grad_w]
            total += grad_w * grad_w + delta * delta
            delta *= weights[layer]
        values.append(total)
        grad_norm = math.sqrt(total)
        if max_grad_norm is None:
            step = lr * grad_norm
        else:  # _mlp.sgd_step_ forms lr * max_grad_norm, then a factor <= lr
            step = lr * min(grad_norm, max_grad_norm)
            values += [lr, lr * max_grad_norm]
        values += [step, max(weights + biases) + step]
    # `v <= bound` is False for NaN, so a NaN anywhere (0 * Inf) means "does not fit".
    return all(v <= bound for v in values) and mse <= mse_bound


def norms_and_max(
    params: Sequence[Tensor], x: Tensor, per_row: bool = False
) -> tuple[list[float], list[float]]:
    """``([||p|| for p in params], [max |x|])`` with one device-to-host transfer.

    With ``per_row``, ``x`` is ``(T, d)`` and the second list holds each row's maximum (the
    per-token maxima of a sequence). An overflowing norm comes back as Inf, which
    :func:`plain_fits` rejects.
    """
    norms = torch.stack(torch._foreach_norm(list(params)))
    x_abs = x.abs().amax(dim=-1) if per_row else x.abs().amax().reshape(1)
    both = torch.cat([norms.to(x_abs.dtype), x_abs]).tolist()
    return both[: len(params)], both[len(params) :]


def fits_for(
    params: Sequence[Tensor],
    x: Tensor,
    *,
    upto: Literal["read", "error", "step"] = "step",
    lr: float = 0.0,
    max_grad_norm: float | None = None,
) -> bool:
    """:func:`plain_fits` for one call of a network (``params``) on ``x``, ``(..., d)``, in
    ``x``'s dtype, with the current weights."""
    norms, (x_max,) = norms_and_max(params, x)
    dim = x.shape[-1]
    return plain_fits(
        norms,
        x_max,
        dim,
        bound=limit(x.dtype),
        rows=x.numel() // dim,
        upto=upto,
        lr=lr,
        max_grad_norm=max_grad_norm,
    )


def plain_steps(
    nets: Sequence[tuple[Sequence[Tensor], dict[str, Any]]], block: Tensor, bound: float
) -> list[bool] | None:
    """For each token of ``block``, ``(K, d)``, whether the plain arithmetic provably fits it in
    every network of ``nets``: pairs ``(params, checks)``, ``checks`` the keyword arguments of
    :func:`plain_fits` (step size, clipping, growth). ``None`` when every token fits, the usual
    case, decided with one check of the block's largest value."""
    params = [p for net, _ in nets for p in net]
    norms, x_max = norms_and_max(params, block, per_row=True)
    dim = block.shape[-1]

    def fits(value: float) -> bool:
        start = 0
        for net, checks in nets:
            own = norms[start : start + len(net)]
            start += len(net)
            if not plain_fits(own, value, dim, bound=bound, **checks):
                return False
        return True

    return None if fits(max(x_max)) else [fits(v) for v in x_max]


def saturate(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``, every value beyond the dtype's range clamped to its largest finite
    value (so +Inf from an overflow becomes ``max`` and -Inf ``-max``; NaN stays NaN)."""
    big = torch.finfo(dtype).max
    return t.clamp(-big, big).to(dtype)


def widen(params: Sequence[Tensor]) -> list[Tensor]:
    """Float64 copies of ``params``."""
    return [p.to(_WIDE) for p in params]


def forward(params64: list[Tensor], x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """``(x64, y64, inputs)``: the input in float64, the network's output and the layer inputs
    kept for :func:`titans_memory.demo._mlp.backward`, all in float64 (``x``: ``(N, d)`` or
    ``(d,)``)."""
    x64 = x.to(_WIDE)
    y64, inputs = _mlp.forward_cached(params64, x64)
    return x64, y64, inputs


def step_(
    params: list[Tensor],
    params64: list[Tensor],
    grads64: list[Tensor],
    lr: float,
    gain: float = 1.0,
    max_grad_norm: float | None = None,
) -> None:
    """The step of :func:`titans_memory.demo._mlp.sgd_step_`, computed in float64.

    ``params[i] <- saturate(params64[i] - lr * gain * c * grads64[i])`` with
    ``c = min(1, max_grad_norm / ||g||)`` (``c = 1`` without ``max_grad_norm``); ``||g||`` is
    computed from ``g / max|g|``, so that no square overflows even in float64. A clipped step
    moves the weights by at most ``lr * gain * max_grad_norm``; an unclipped one can leave the
    dtype's range, and then the weights saturate.
    """
    big = torch.finfo(_WIDE).max
    grads64 = [g.clamp(-big, big) for g in grads64]  # no Inf, so that g / max|g| is defined
    scale = lr * gain
    if max_grad_norm is not None:
        peak = max(float(g.abs().max()) for g in grads64)
        if peak == 0.0:
            return  # a zero gradient: no step
        norm = peak * math.sqrt(sum(float((g / peak).square().sum()) for g in grads64))
        scale = scale * max_grad_norm / max(norm, max_grad_norm)
    # An unclipped step of an astronomical size: the largest float64 keeps 0 * scale at 0.
    scale = min(scale, big)
    for p, p64, g in zip(params, params64, grads64, strict=True):
        p.copy_(saturate(p64 - scale * g, p.dtype))
