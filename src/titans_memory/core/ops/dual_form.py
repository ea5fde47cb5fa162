"""Read and write of one segment in the dual form, with a hand-written backward.

Given the key path's layer inputs ``H_l`` and error signals ``Delta_l`` (taken at the anchor by
:func:`~titans_memory.core.models.memory_errors_at`, differentiated by autograd), one segment of
c tokens of N memories computes (see :mod:`titans_memory.core.ops.chunked` for the coefficients)::

    read:   z_l = A (h_l W_l) + f (h_l S_l) - ((h_l H_l^T) * G) Delta_l       h_0 = q
            h_{l+1} = act(z_l);  y = z_{L-1} (+ q for a residual memory, L >= 2)
    write:  W_l' = a W_l + f_r S_l - (g H_l)^T Delta_l      S_l' = e S_l - (p H_l)^T Delta_l

(row scalings ``A_t``, ``f_t``, ``g_t``, ``p_t`` per token; ``a``, ``f_r``, ``e`` per memory). The
first layer's terms ``A q``, ``f q`` and ``(q k^T) * G`` are computed for many segments at once by
the caller and passed in. Autograd would record some 30 small ops per segment here, each with
its own graph node and gradient buffers; :class:`ReadWrite` is one node whose backward is the
same linear algebra written out, with per-token scalings on the narrower side. Measured at 4
heads of 64 (benchmarks/neural_memory.py), it took forward + backward from 1.05x to about 1.2x
the peer. Without momentum the ``S``, ``f`` and ``p`` terms are absent (None).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from titans_memory.core.models import _FUSED_BACKWARD, ACTIVATIONS


def _scaled_outer(scale: Tensor, h: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """The factors of ``(scale * h)^T delta``, scaling whichever of h, delta is narrower."""
    if h.shape[-1] <= delta.shape[-1]:
        return (scale * h).transpose(-1, -2), delta
    return h.transpose(-1, -2), scale * delta


def read_write(
    q: Tensor,
    qa: Tensor,
    qf: Tensor | None,
    s0: Tensor,
    A: Tensor,
    f: Tensor | None,
    G: Tensor,
    g: Tensor,
    a: Tensor,
    p: Tensor | None,
    f_r: Tensor | None,
    e: Tensor | None,
    weights: Sequence[Tensor],
    momentum: Sequence[Tensor] | None,
    inputs: Sequence[Tensor],
    deltas: Sequence[Tensor],
    activation: str,
    *,
    inplace: bool = False,
    saved: list | None = None,
) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """The dual-form read and the segment-end write (module docstring), without autograd.

    Args:
        q: ``(N, c, d)`` queries (for the residual); qa, qf: ``A q``, ``f q``; s0: ``(N, c, c)``.
        A, f: ``(N, c, 1)`` row scalings; G: ``(N, c, c)``; g, p: ``(N, c, 1)``; a, f_r, e: ``(N, 1, 1)``.
        weights, momentum: per layer ``(N, d_in, d_out)``; inputs, deltas: the key path's
            ``(N, c, d_in)`` and ``(N, c, d_out)``.
        inplace: overwrite ``weights`` and ``momentum`` with the new state.
        saved: if a list, receives the intermediates :class:`ReadWrite` needs for its backward.

    Returns:
        ``(y, new_weights, new_momentum)``.
    """
    act = ACTIVATIONS[activation][0]
    depth = len(weights)
    has_momentum = momentum is not None
    # read: layer by layer along the query path
    h = q
    z = torch.bmm(qa, weights[0])
    if has_momentum:
        z.baddbmm_(qf, momentum[0])
    z.baddbmm_(s0, deltas[0], alpha=-1.0)
    for layer in range(1, depth):
        h_prev_z = z
        h = act(z)
        hw = torch.bmm(h, weights[layer])  # (N, c, d_out)
        hs = torch.bmm(h, momentum[layer]) if has_momentum else None
        raw = torch.bmm(h, inputs[layer].transpose(-1, -2))  # (N, c, c) before the causal mask G
        scores = raw * G
        z = hw * A
        if has_momentum:
            z.addcmul_(hs, f)
        z.baddbmm_(scores, deltas[layer], alpha=-1.0)
        if saved is not None:
            saved.append((h_prev_z, h, hw, hs, raw, scores))
    y = z + q if depth > 1 else z

    # write: the state after the segment's last token, per layer
    new_weights, new_momentum = [], []
    for layer in range(depth):
        w, h_k, delta = weights[layer], inputs[layer], deltas[layer]
        left, right = _scaled_outer(g, h_k, delta)
        s = momentum[layer] if has_momentum else None
        if inplace:  # W first, while S is still S_s
            new_w = w.mul_(a)
            if has_momentum:
                new_w.addcmul_(s, f_r)
            new_w.baddbmm_(left, right, alpha=-1.0)
        else:
            base = w * a if not has_momentum else torch.addcmul(w * a, s, f_r)
            new_w = base.baddbmm_(left, right, alpha=-1.0)
        new_weights.append(new_w)
        if has_momentum:
            left, right = _scaled_outer(p, h_k, delta)
            base = s.mul_(e) if inplace else s * e
            new_momentum.append(base.baddbmm_(left, right, alpha=-1.0))
    return y, new_weights, (new_momentum if has_momentum else None)


def _rowdot(x: Tensor, y: Tensor) -> Tensor:
    """``sum_d x[..., t, d] y[..., t, d]`` as ``(..., t, 1)``."""
    return (x * y).sum(-1, keepdim=True)


def _matdot(x: Tensor, y: Tensor) -> Tensor:
    """``<x_n, y_n>`` per memory as ``(N, 1, 1)`` (as fast as it gets: a bmm here is ~20x slower)."""
    return (x * y).sum((-2, -1), keepdim=True)


def _add(acc: Tensor | None, x: Tensor) -> Tensor:
    return x if acc is None else acc.add_(x)


def _unflatten(tensors: Sequence[Tensor | None], depth: int, has_momentum: bool) -> tuple:
    """:class:`ReadWrite`'s flat inputs back as :func:`read_write`'s first 16 arguments."""
    rest = list(tensors[12:])
    weights = rest[:depth]
    momentum = rest[depth : 2 * depth] if has_momentum else None
    off = 2 * depth if has_momentum else depth
    return (*tensors[:12], weights, momentum, rest[off : off + depth], rest[off + depth : off + 2 * depth])


class ReadWrite(torch.autograd.Function):
    """:func:`read_write` as one autograd node (arguments flattened; see :func:`read_write_autograd`)."""

    @staticmethod
    def forward(ctx, activation: str, depth: int, has_momentum: bool, *tensors: Tensor):  # noqa: D102
        saved: list = []
        y, new_w, new_s = read_write(*_unflatten(tensors, depth, has_momentum), activation, saved=saved)
        ctx.activation, ctx.depth, ctx.has_momentum = activation, depth, has_momentum
        ctx.n_inputs = len(tensors)
        ctx.save_for_backward(*tensors, *[t for group in saved for t in group])  # None is allowed
        outs = [y, *new_w] + (list(new_s) if has_momentum else [])
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor, *grad_state: Tensor):  # noqa: D102
        depth, has_momentum = ctx.depth, ctx.has_momentum
        stored = ctx.saved_tensors
        tensors, flat = stored[: ctx.n_inputs], stored[ctx.n_inputs :]
        saved = [flat[i : i + 6] for i in range(0, len(flat), 6)]  # per layer >= 1, as read_write saves
        gW_out = grad_state[:depth]
        gS_out = grad_state[depth:] if has_momentum else None
        grads = read_write_backward(tensors, saved, gy, gW_out, gS_out, ctx.activation, depth, has_momentum)
        return (None, None, None, *grads)


def read_write_backward(
    tensors: Sequence[Tensor | None],
    saved: Sequence[Sequence[Tensor | None]],
    gy: Tensor,
    gW_out: Sequence[Tensor],
    gS_out: Sequence[Tensor] | None,
    activation: str,
    depth: int,
    has_momentum: bool,
) -> list[Tensor | None]:
    """Gradients of :func:`read_write`'s inputs, flattened in :class:`ReadWrite`'s order.

    Args:
        tensors: the inputs, flattened: ``q, qa, qf, s0, A, f, G, g, a, p, f_r, e``, the weights,
            the momentum (if any), the key path's inputs and deltas.
        saved: what :func:`read_write` put in ``saved``; gy, gW_out, gS_out: output gradients.
    """
    q, qa, qf, s0, A, f, G, g, a, p, f_r, e, weights, momentum, inputs, deltas = _unflatten(
        tensors, depth, has_momentum
    )
    act_backward = _FUSED_BACKWARD[activation]

    gW: list[Tensor | None] = [None] * depth
    gS: list[Tensor | None] = [None] * depth
    gH: list[Tensor | None] = [None] * depth
    gD: list[Tensor | None] = [None] * depth
    gA = gf = gG = None
    gg = ga = gp = gfr = ge = None

    # write: W' = a W + f_r S - (g H)^T Delta,  S' = e S - (p H)^T Delta
    for layer in range(depth):
        U, w, h_k, delta = gW_out[layer], weights[layer], inputs[layer], deltas[layer]
        gW[layer] = U * a
        ga = _add(ga, _matdot(w, U))
        hu = torch.bmm(h_k, U)  # (N, c, d_out)
        du = torch.bmm(delta, U.transpose(-1, -2))  # (N, c, d_in)
        gD[layer] = hu * (-g)
        gH[layer] = du * (-g)
        narrow = h_k.shape[-1] <= delta.shape[-1]  # rowdot(H U, Delta) = rowdot(H, Delta U^T)
        gg = _add(gg, -(_rowdot(h_k, du) if narrow else _rowdot(hu, delta)))
        if has_momentum:
            V, s = gS_out[layer], momentum[layer]
            gS[layer] = torch.addcmul(V * e, U, f_r)
            gfr = _add(gfr, _matdot(s, U))
            ge = _add(ge, _matdot(s, V))
            hv = torch.bmm(h_k, V)
            dv = torch.bmm(delta, V.transpose(-1, -2))
            gD[layer].addcmul_(hv, p, value=-1.0)
            gH[layer].addcmul_(dv, p, value=-1.0)
            gp = _add(gp, -(_rowdot(h_k, dv) if narrow else _rowdot(hv, delta)))

    # read, from the last layer down: z_l = A (h W) + f (h S) - ((h H^T) * G) Delta
    gz = gy
    for layer in range(depth - 1, 0, -1):
        z_prev, h, hw, hs, raw, scores = saved[layer - 1]
        w, h_k, delta = weights[layer], inputs[layer], deltas[layer]
        gA = _add(gA, _rowdot(gz, hw))
        gza = gz * A
        gW[layer].baddbmm_(h.transpose(-1, -2), gza)
        gh = torch.bmm(gza, w.transpose(-1, -2))
        if has_momentum:
            gf = _add(gf, _rowdot(gz, hs))
            gzf = gz * f
            gS[layer].baddbmm_(h.transpose(-1, -2), gzf)
            gh.baddbmm_(gzf, momentum[layer].transpose(-1, -2))
        g_scores = torch.bmm(gz, delta.transpose(-1, -2)).neg_()  # (N, c, c)
        gD[layer].baddbmm_(scores.transpose(-1, -2), gz, alpha=-1.0)
        gG = _add(gG, g_scores * raw)
        g_raw = g_scores.mul_(G)
        gh.baddbmm_(g_raw, h_k)
        gH[layer].baddbmm_(g_raw.transpose(-1, -2), h)
        gz = act_backward(gh, z_prev, h)
    # first layer: z_0 = qa W + qf S - s0 Delta
    g_qa = torch.bmm(gz, weights[0].transpose(-1, -2))
    gW[0].baddbmm_(qa.transpose(-1, -2), gz)
    g_qf = None
    if has_momentum:
        g_qf = torch.bmm(gz, momentum[0].transpose(-1, -2))
        gS[0].baddbmm_(qf.transpose(-1, -2), gz)
    g_s0 = torch.bmm(gz, deltas[0].transpose(-1, -2)).neg_()
    gD[0].baddbmm_(s0.transpose(-1, -2), gz, alpha=-1.0)
    gq = gy if depth > 1 else None

    grads = [gq, g_qa, g_qf, g_s0, gA, gf, gG, gg, ga, gp, gfr, ge, *gW]
    if has_momentum:
        grads += gS
    grads += gH + gD
    return grads


def read_write_autograd(
    q: Tensor,
    qa: Tensor,
    qf: Tensor | None,
    s0: Tensor,
    A: Tensor,
    f: Tensor | None,
    G: Tensor,
    g: Tensor,
    a: Tensor,
    p: Tensor | None,
    f_r: Tensor | None,
    e: Tensor | None,
    weights: Sequence[Tensor],
    momentum: Sequence[Tensor] | None,
    inputs: Sequence[Tensor],
    deltas: Sequence[Tensor],
    activation: str,
) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """:func:`read_write` (same arguments, no ``inplace``) as one differentiable node."""
    depth = len(weights)
    has_momentum = momentum is not None
    tensors = [q, qa, qf, s0, A, f, G, g, a, p, f_r, e, *weights]
    if has_momentum:
        tensors += list(momentum)
    tensors += list(inputs) + list(deltas)
    out = ReadWrite.apply(activation, depth, has_momentum, *tensors)
    y, new_w = out[0], list(out[1 : 1 + depth])
    new_s = list(out[1 + depth :]) if has_momentum else None
    return y, new_w, new_s
