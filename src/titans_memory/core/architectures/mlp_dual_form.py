"""The MLP memory's dual form: read and write of one chunk, and the hand-written backward.

Given the key path's layer inputs ``H_l`` and error signals ``Delta_l`` (taken at the anchor by
:meth:`MLPMemory.key_path`, differentiated by autograd), one chunk of c tokens of N memories
computes (docs/design.md, "The dual form"; coefficients in :mod:`titans_memory.core.ops.chunked`)::

    read:   z_l = A (h_l W_l) + f (h_l S_l) - ((h_l H_l^T) * G) Delta_l       h_0 = q
            h_{l+1} = act(z_l);  y = z_{L-1} (+ q[..., s : s + d] for a residual memory, skip s)
    write:  W_l' = a W_l + f_r S_l - (g H_l)^T Delta_l      S_l' = e S_l - (p H_l)^T Delta_l

(row scalings ``A_t``, ``f_t``, ``g_t``, ``p_t`` per token; ``a``, ``f_r``, ``e`` per memory). The
first layer's terms ``A q``, ``f q`` and ``(q k^T) * G`` come precomputed in
:class:`ReadCoefficients`. Autograd would record some 30 small ops per chunk here, each with its
own graph node and gradient buffers; :class:`ReadWrite` is one node whose backward is the same
linear algebra written out (docs/design.md, "The backward"), with per-token scalings on the
narrower side. Without momentum the ``S``, ``f`` and ``p`` terms are absent (None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from titans_memory.core.architectures.activations import ACTIVATIONS, FUSED_BACKWARD
from titans_memory.core.architectures.base import KeyPath, ReadCoefficients, WriteCoefficients


def add_skip(out: Tensor, x: Tensor, skip: int | None) -> Tensor:
    """``out + x[..., skip : skip + d]`` (d = ``out``'s width): a residual memory's skip connection.
    ``skip = 0`` with ``x`` as wide as ``out`` is the plain ``out + x``; the feature memory
    (``core/features.py``) skips its degree-1 block, ``skip = 1``. None: no residual."""
    if skip is None:
        return out
    d = out.shape[-1]
    return out + (x if skip == 0 and x.shape[-1] == d else x[..., skip : skip + d])


def skip_grad(g: Tensor, x: Tensor, skip: int | None) -> Tensor | None:
    """The gradient :func:`add_skip` sends to ``x`` from ``g`` (the gradient of its output)."""
    if skip is None:
        return None
    if skip == 0 and x.shape[-1] == g.shape[-1]:
        return g
    out = g.new_zeros(x.shape)
    out[..., skip : skip + g.shape[-1]] = g
    return out


def _scaled_outer(scale: Tensor, h: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """The factors of ``(scale * h)^T delta``, scaling whichever of h, delta is narrower."""
    if h.shape[-1] <= delta.shape[-1]:
        return (scale * h).transpose(-1, -2), delta
    return h.transpose(-1, -2), scale * delta


def write_state(
    write: WriteCoefficients,
    weights: Sequence[Tensor],
    momentum: Sequence[Tensor] | None,
    key_path: KeyPath,
    *,
    inplace: bool = False,
) -> tuple[list[Tensor], list[Tensor] | None]:
    """The state after the chunk's token r (module docstring, "write"); plain differentiable ops.

    Args:
        inplace: overwrite ``weights`` and ``momentum`` (nobody else holds them, no autograd).
    """
    g, a = write.grad_weights, write.decay
    p, f_r, e = write.momentum_grad_weights, write.momentum_in, write.momentum_decay
    has_momentum = momentum is not None
    new_weights, new_momentum = [], []
    for layer, (w, h_k, delta) in enumerate(zip(weights, key_path.inputs, key_path.deltas, strict=True)):
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
    return new_weights, (new_momentum if has_momentum else None)


def read_write(
    q: Tensor,
    read: ReadCoefficients,
    write: WriteCoefficients,
    weights: Sequence[Tensor],
    momentum: Sequence[Tensor] | None,
    key_path: KeyPath,
    activation: str,
    skip: int | None,
    *,
    inplace: bool = False,
    saved: list | None = None,
) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """The dual-form read and the chunk-end write (module docstring), without autograd's help.

    Args:
        q: ``(N, c, d_in)`` queries (for the residual).
        skip: the residual's first query channel, ``y = z + q[..., skip : skip + d]`` (None: no residual).
        read, write: the chunk's coefficients. weights, momentum: per layer ``(N, d_in, d_out)``.
        key_path: the key path's ``(N, c, d_in)`` inputs and ``(N, c, d_out)`` error signals.
        inplace: overwrite ``weights`` and ``momentum`` with the new state.
        saved: if a list, receives the intermediates :class:`ReadWrite` needs for its backward.

    Returns:
        ``(y, new_weights, new_momentum)``: reads ``(N, c, d)`` and the state after token r.
    """
    act = ACTIVATIONS[activation][0]
    inputs, deltas = key_path
    depth = len(weights)
    has_momentum = momentum is not None
    # read: layer by layer along the query path
    z = torch.bmm(read.q_decay, weights[0])
    if has_momentum:
        z.baddbmm_(read.q_momentum, momentum[0])
    z.baddbmm_(read.scores, deltas[0], alpha=-1.0)
    for layer in range(1, depth):
        z_prev = z
        h = act(z)
        hw = torch.bmm(h, weights[layer])  # (N, c, d_out)
        hs = torch.bmm(h, momentum[layer]) if has_momentum else None
        raw = torch.bmm(h, inputs[layer].transpose(-1, -2))  # (N, c, c) before the causal mask G
        scores = raw * read.mix
        z = hw * read.decay
        if has_momentum:
            z.addcmul_(hs, read.momentum_in)
        z.baddbmm_(scores, deltas[layer], alpha=-1.0)
        if saved is not None:
            saved.append((z_prev, h, hw, hs, raw, scores))
    y = add_skip(z, q, skip)

    new_weights, new_momentum = write_state(write, weights, momentum, key_path, inplace=inplace)
    return y, new_weights, new_momentum


class ReadWriteGrads(NamedTuple):
    """The gradients of :func:`read_write`'s inputs, shaped like them (None: no gradient).

    Attributes:
        q: ``(N, c, d_in)`` (residual memories only). read: per field of :class:`ReadCoefficients`.
        write: per field of :class:`WriteCoefficients`. weights, momentum: per layer
        (``momentum`` None without momentum). key_path: per layer, of ``H_l`` and ``Delta_l``.
    """

    q: Tensor | None
    read: ReadCoefficients
    write: WriteCoefficients
    weights: list[Tensor]
    momentum: list[Tensor] | None
    key_path: KeyPath


# --- one autograd node: flat tensors in, flat tensors out ------------------------------------------
def _flatten(q, read, write, weights, momentum, key_path) -> list[Tensor | None]:
    flat = [q, *read, *write, *weights]
    if momentum is not None:
        flat += list(momentum)
    return flat + list(key_path.inputs) + list(key_path.deltas)


def _unflatten(flat: Sequence[Tensor | None], depth: int, has_momentum: bool):
    """:func:`_flatten`'s list back as ``(q, read, write, weights, momentum, key_path)``."""
    n_read, n_write = len(ReadCoefficients._fields), len(WriteCoefficients._fields)
    q = flat[0]
    read = ReadCoefficients(*flat[1 : 1 + n_read])
    write = WriteCoefficients(*flat[1 + n_read : 1 + n_read + n_write])
    rest = list(flat[1 + n_read + n_write :])
    weights = rest[:depth]
    momentum = rest[depth : 2 * depth] if has_momentum else None
    off = 2 * depth if has_momentum else depth
    key_path = KeyPath(tuple(rest[off : off + depth]), tuple(rest[off + depth : off + 2 * depth]))
    return q, read, write, weights, momentum, key_path


class ReadWrite(torch.autograd.Function):
    """:func:`read_write` as one autograd node (see :func:`read_write_autograd`)."""

    @staticmethod
    def forward(ctx, activation: str, skip: int | None, depth: int, has_momentum: bool, *flat: Tensor):  # noqa: D102
        saved: list = []
        y, new_w, new_s = read_write(
            *_unflatten(flat, depth, has_momentum), activation, skip, saved=saved
        )
        ctx.activation, ctx.skip, ctx.depth, ctx.has_momentum = activation, skip, depth, has_momentum
        ctx.n_inputs = len(flat)
        ctx.save_for_backward(*flat, *[t for group in saved for t in group])  # None is allowed
        return tuple([y, *new_w] + (list(new_s) if has_momentum else []))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor, *grad_state: Tensor):  # noqa: D102
        depth = ctx.depth
        stored = ctx.saved_tensors
        flat, rest = stored[: ctx.n_inputs], stored[ctx.n_inputs :]
        saved = [rest[i : i + 6] for i in range(0, len(rest), 6)]  # per layer >= 1, as read_write saves
        gW_out = grad_state[:depth]
        gS_out = grad_state[depth:] if ctx.has_momentum else None
        grads = read_write_backward(
            flat, saved, gy, gW_out, gS_out, ctx.activation, ctx.skip, depth, ctx.has_momentum
        )
        return (None, None, None, None, *_flatten(*grads))


def _rowdot(x: Tensor, y: Tensor) -> Tensor:
    """``sum_d x[..., t, d] y[..., t, d]`` as ``(..., t, 1)``."""
    return (x * y).sum(-1, keepdim=True)


def _matdot(x: Tensor, y: Tensor) -> Tensor:
    """``<x_n, y_n>`` per memory as ``(N, 1, 1)`` (as fast as it gets: a bmm here is ~20x slower)."""
    return (x * y).sum((-2, -1), keepdim=True)


def _add(acc: Tensor | None, x: Tensor) -> Tensor:
    return x if acc is None else acc.add_(x)


def read_write_backward(
    flat: Sequence[Tensor | None],
    saved: Sequence[Sequence[Tensor | None]],
    gy: Tensor,
    gW_out: Sequence[Tensor],
    gS_out: Sequence[Tensor] | None,
    activation: str,
    skip: int | None,
    depth: int,
    has_momentum: bool,
) -> ReadWriteGrads:
    """Gradients of :func:`read_write`'s inputs, as a :class:`ReadWriteGrads` (docs/design.md,
    "The backward").

    Args:
        flat: the inputs, as :func:`_flatten` lists them.
        saved: what :func:`read_write` put in ``saved``; gy, gW_out, gS_out: output gradients.
    """
    q, read, write, weights, momentum, (inputs, deltas) = _unflatten(flat, depth, has_momentum)
    A, f, G = read.decay, read.momentum_in, read.mix
    g, a = write.grad_weights, write.decay
    p, f_r, e = write.momentum_grad_weights, write.momentum_in, write.momentum_decay
    act_backward = FUSED_BACKWARD[activation]

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
    # first layer: z_0 = (A q) W + (f q) S - scores Delta
    g_qa = torch.bmm(gz, weights[0].transpose(-1, -2))
    gW[0].baddbmm_(read.q_decay.transpose(-1, -2), gz)
    g_qf = None
    if has_momentum:
        g_qf = torch.bmm(gz, momentum[0].transpose(-1, -2))
        gS[0].baddbmm_(read.q_momentum.transpose(-1, -2), gz)
    g_s0 = torch.bmm(gz, deltas[0].transpose(-1, -2)).neg_()
    gD[0].baddbmm_(read.scores.transpose(-1, -2), gz, alpha=-1.0)
    gq = skip_grad(gy, flat[0], skip)

    return ReadWriteGrads(
        q=gq,
        read=ReadCoefficients(gA, gf, gG, g_qa, g_qf, g_s0),
        write=WriteCoefficients(gg, ga, gp, gfr, ge),
        weights=gW,
        momentum=gS if has_momentum else None,
        key_path=KeyPath(tuple(gH), tuple(gD)),
    )


def read_write_autograd(
    q: Tensor,
    read: ReadCoefficients,
    write: WriteCoefficients,
    weights: Sequence[Tensor],
    momentum: Sequence[Tensor] | None,
    key_path: KeyPath,
    activation: str,
    skip: int | None,
) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """:func:`read_write` (same arguments, no ``inplace``) as one differentiable node."""
    depth = len(weights)
    has_momentum = momentum is not None
    flat = _flatten(q, read, write, weights, momentum, key_path)
    out = ReadWrite.apply(activation, skip, depth, has_momentum, *flat)
    y, new_w = out[0], list(out[1 : 1 + depth])
    new_s = list(out[1 + depth :]) if has_momentum else None
    return y, new_w, new_s
