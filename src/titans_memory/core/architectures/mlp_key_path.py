"""The MLP memory's key path with the per-token step bound, and its hand-written backward.

For the keys of one chunk, at the anchor weights ``W_0 .. W_{L-1}`` (row vectors, ``h @ W``; an
optional per-token ``r``, the decay of a ``decayed_gradient`` rule, scales every product)::

    forward:    H_0 = k,   Z_i = r (H_i W_i),   H_{i+1} = act(Z_i)           i < L - 1
                P = r (H_{L-1} W_{L-1}) (+ k[..., s : s + d] for a residual memory, skip s)
    error:      Delta_{L-1} = err(P, v, param)                               (the attentional bias)
    backward:   B_i = r (Delta_{i+1} W_{i+1}^T),   Delta_i = act'(Z_i) * B_i   i = L-2 .. 0
    step bound: n = sqrt(sum_l ||H_l||^2 ||Delta_l||^2) = ||u_t||_F,   s = tau / max(tau, n)
                D_l = s Delta_l                                               (docs/design.md, sec. 5)

Token t's gradient of layer l is ``H_l[t]^T D_l[t]``. Under autograd these are some 25 small ops
per chunk, each a graph node with its saved tensors; :class:`BoundedKeyPath` is one node whose
backward is the same chain rule written out (docs/design.md, "The backward"), in this file's
notation: with ``gD_l``, ``gH_l`` the output gradients,

    gDelta_l = s gD_l + c a_l Delta_l       gH_l += c b_l H_l       c = -[n >= tau] s <gD, Delta> / n^2
    (a_l = ||H_l||^2, b_l = ||Delta_l||^2, <gD, Delta> = sum_l gD_l . Delta_l per token)
    Delta_i = act'(Z_i) B_i:   gB_i = act'(Z_i) gDelta_i,   gZ_i = act''(Z_i) B_i gDelta_i
    B_i = r Delta_{i+1} W_{i+1}^T:   gDelta_{i+1} += r gB_i W_{i+1},   gW_{i+1} += (r gB_i)^T Delta_{i+1}
    err:  (gP, gv, gparam) = err's vector-Jacobian product at gDelta_{L-1}
    then the forward chain backwards (gZ_i += act'(Z_i) gH_{i+1}, gH_i += r gZ_i W_i^T, ...),
    and ``gr`` sums ``<g(product), product / r>`` over every scaled product.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from titans_memory.core.architectures.activations import (
    ACTIVATIONS,
    FUSED_BACKWARD,
    SECOND_DERIVATIVE,
)
from titans_memory.core.architectures.base import bound_scale
from titans_memory.core.architectures.mlp_dual_form import add_skip, skip_grad
from titans_memory.core.objectives import AttentionalBias


def _rowdot(x: Tensor, y: Tensor) -> Tensor:
    """``sum_d x[..., t, d] y[..., t, d]`` as ``(..., t, 1)``."""
    return (x * y).sum(-1, keepdim=True)


def _add(acc: Tensor | None, x: Tensor) -> Tensor:
    """``acc + x``, in place where ``acc`` is this backward's own tensor (never an incoming gradient)."""
    return x if acc is None else acc.add_(x)


def _plus(acc: Tensor | None, x: Tensor) -> Tensor:
    """``acc + x`` out of place (``acc`` may be an incoming gradient)."""
    return x if acc is None else acc + x


def key_path_forward(
    anchor: Sequence[Tensor],
    k: Tensor,
    v: Tensor,
    bias: AttentionalBias,
    param: Tensor | None,
    row_scale: Tensor | None,
    tau: float | None,
    activation: str,
    skip: int | None,
    saved: dict | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """The key path of one chunk (module docstring), without autograd's help.

    Args:
        anchor: ``(N, d_in, d_out)`` per layer. k, v: ``(N, c, d)``. param: ``(N, c, 1)`` or None.
        row_scale: ``(N, c, 1)`` or None. tau: the step bound or None.
        saved: if a dict, receives what :func:`key_path_backward` needs.

    Returns:
        ``(inputs, deltas)``: ``H_0 = k .. H_{L-1}`` and the bounded error signals ``D_l``.
    """
    act = ACTIVATIONS[activation][0]
    act_backward = FUSED_BACKWARD[activation]
    depth = len(anchor)
    inputs, preacts, raw_fwd = [k], [], []
    h = k
    for w in anchor[:-1]:
        z = torch.bmm(h, w)  # (N, c, d_out)
        if row_scale is not None:
            raw_fwd.append(z)
            z = z * row_scale
        preacts.append(z)
        h = act(z)
        inputs.append(h)
    pred = torch.bmm(h, anchor[-1])
    if row_scale is not None:
        raw_fwd.append(pred)
        pred = pred * row_scale
    pred = add_skip(pred, k, skip)
    deltas: list[Tensor] = [bias.error(pred, v, param)]
    backs, raw_back = [], []
    for layer in range(depth - 1, 0, -1):
        back = torch.bmm(deltas[0], anchor[layer].transpose(-1, -2))  # (N, c, d_in)
        if row_scale is not None:
            raw_back.insert(0, back)
            back = back * row_scale
        backs.insert(0, back)
        deltas.insert(0, act_backward(back, preacts[layer - 1], inputs[layer]))  # back * act'(z)
    scale = norm = sq_h = sq_d = None
    bounded = deltas
    if tau is not None:  # ||u_t||_F^2 = sum_l ||H_l[t]||^2 ||Delta_l[t]||^2
        # (N, c, 1) each; vector_norm is one pass with no temporary: ~1.5-6x faster than (h * h).sum
        sq_h = [torch.linalg.vector_norm(h, dim=-1, keepdim=True).square_() for h in inputs]
        sq_d = [torch.linalg.vector_norm(d, dim=-1, keepdim=True).square_() for d in deltas]
        total = sq_h[0] * sq_d[0]
        for a, b in zip(sq_h[1:], sq_d[1:], strict=True):
            total = total.addcmul_(a, b)
        if total.device.type != "cpu" or torch.compiler.is_compiling() or not bool(total.max() < tau * tau):
            norm = total.sqrt_()
            scale = bound_scale(norm, tau)
            bounded = [d * scale for d in deltas]
        else:  # every token strictly under the bound: the scale is exactly 1 and its derivative
            # 0, so the scaling is skipped (on the CPU reading the flag costs no device sync; the
            # scaling cost ~5% of a four-head forward + backward). The backward sees scale None.
            sq_h = sq_d = None
    if saved is not None:
        saved.update(
            inputs=inputs, preacts=preacts, deltas=deltas, backs=backs, pred=pred, raw_fwd=raw_fwd,
            raw_back=raw_back, scale=scale, norm=norm, sq_h=sq_h, sq_d=sq_d,
        )
    return inputs, bounded


def key_path_backward(
    anchor: Sequence[Tensor],
    v: Tensor,
    bias: AttentionalBias,
    param: Tensor | None,
    row_scale: Tensor | None,
    tau: float | None,
    activation: str,
    skip: int | None,
    saved: dict,
    g_hidden: Sequence[Tensor | None],
    g_bounded: Sequence[Tensor | None],
) -> tuple[list[Tensor], Tensor, Tensor, Tensor | None, Tensor | None]:
    """Gradients of :func:`key_path_forward`'s inputs (module docstring).

    Args:
        saved: what :func:`key_path_forward` put in ``saved``.
        g_hidden: output gradients of ``H_1 .. H_{L-1}`` (None: zero).
        g_bounded: output gradients of ``D_0 .. D_{L-1}`` (None: zero).

    Returns:
        ``(g_anchor, g_k, g_v, g_param, g_row_scale)``.
    """
    act_backward = FUSED_BACKWARD[activation]
    second = SECOND_DERIVATIVE[activation]
    depth = len(anchor)
    inputs, preacts, deltas, backs = saved["inputs"], saved["preacts"], saved["deltas"], saved["backs"]
    raw_fwd, raw_back = saved["raw_fwd"], saved["raw_back"]
    # incoming gradients are never written in place: they are only ever added to out of place
    g_in: list[Tensor | None] = [None, *g_hidden]  # gH_0 is g_k
    g_d: list[Tensor | None] = list(g_bounded)
    g_w: list[Tensor | None] = [None] * depth
    g_r: Tensor | None = None

    # the step bound: D_l = s Delta_l, s = tau / max(tau, n)
    if tau is not None and saved["scale"] is not None:  # None: every token was under the bound
        scale, norm, sq_h, sq_d = saved["scale"], saved["norm"], saved["sq_h"], saved["sq_d"]
        g_s = None
        for layer in range(depth):
            if g_d[layer] is not None:
                g_s = _add(g_s, _rowdot(g_d[layer], deltas[layer]))
                g_d[layer] = g_d[layer] * scale
        if g_s is not None:
            # ds/dn = -tau / n^2 = -s / n where n >= tau (clamp's gradient mask), else 0; then
            # dn/dH_l = b_l H_l / n and dn/dDelta_l = a_l Delta_l / n
            safe = torch.clamp(norm, min=tau)
            c = torch.where(norm >= tau, -g_s * scale / (safe * safe), 0.0)  # (N, c, 1)
            for layer in range(depth):
                g_in[layer] = _plus(g_in[layer], (c * sq_d[layer]) * inputs[layer])
                g_d[layer] = _plus(g_d[layer], (c * sq_h[layer]) * deltas[layer])

    # the error's backward chain: Delta_i = act'(Z_i) B_i, B_i = r Delta_{i+1} W_{i+1}^T
    g_z: list[Tensor | None] = [None] * (depth - 1)
    for i in range(depth - 1):
        if g_d[i] is None:
            continue
        g_b = act_backward(g_d[i], preacts[i], inputs[i + 1])  # gDelta_i * act'(Z_i)
        g_z[i] = g_d[i] * backs[i] * second(preacts[i], inputs[i + 1])
        if row_scale is not None:
            g_r = _add(g_r, _rowdot(g_b, raw_back[i]))
            g_b = g_b * row_scale
        g_d[i + 1] = _plus(g_d[i + 1], torch.bmm(g_b, anchor[i + 1]))
        g_w[i + 1] = torch.bmm(g_b.transpose(-1, -2), deltas[i + 1])

    # the attentional bias: Delta_{L-1} = err(P, v, param)
    g_pred = g_v = g_param = None
    if g_d[-1] is not None:
        g_pred, g_v, g_param = bias.error_vjp(saved["pred"], v, param, g_d[-1])
    g_k = None
    if g_pred is not None:
        g_k = skip_grad(g_pred, inputs[0], skip)
        if row_scale is not None:
            g_r = _add(g_r, _rowdot(g_pred, raw_fwd[-1]))
            g_pred = g_pred * row_scale
        h_last = inputs[-1]
        g_w[-1] = _add(g_w[-1], torch.bmm(h_last.transpose(-1, -2), g_pred))
        g_in[-1] = _plus(g_in[-1], torch.bmm(g_pred, anchor[-1].transpose(-1, -2)))

    # the forward chain, backwards: H_{i+1} = act(Z_i), Z_i = r H_i W_i
    for i in range(depth - 2, -1, -1):
        if g_in[i + 1] is not None:
            g_z[i] = _add(g_z[i], act_backward(g_in[i + 1], preacts[i], inputs[i + 1]))
        if g_z[i] is None:
            continue
        g_zi = g_z[i]
        if row_scale is not None:
            g_r = _add(g_r, _rowdot(g_zi, raw_fwd[i]))
            g_zi = g_zi * row_scale
        g_w[i] = _add(g_w[i], torch.bmm(inputs[i].transpose(-1, -2), g_zi))
        g_in[i] = _plus(g_in[i], torch.bmm(g_zi, anchor[i].transpose(-1, -2)))

    g_k = g_in[0] if g_k is None else _plus(g_in[0], g_k)
    g_w = [torch.zeros_like(w) if g is None else g for g, w in zip(g_w, anchor, strict=True)]
    return g_w, g_k, g_v, g_param, g_r


class BoundedKeyPath(torch.autograd.Function):
    """:func:`key_path_forward` as one autograd node (see :func:`bounded_key_path`)."""

    @staticmethod
    def forward(ctx, bias, tau, activation, skip, depth, k, v, param, row_scale, *anchor):  # noqa: D102
        saved: dict = {}
        inputs, bounded = key_path_forward(anchor, k, v, bias, param, row_scale, tau, activation, skip, saved)
        ctx.bias, ctx.tau, ctx.activation, ctx.skip, ctx.depth = bias, tau, activation, skip, depth
        lists = [saved[name] or [] for name in _SAVED_LISTS]
        ctx.lengths = [len(x) for x in lists]
        singles = [saved[name] for name in _SAVED_SINGLES]
        ctx.save_for_backward(v, param, row_scale, *anchor, *singles, *(t for x in lists for t in x))
        return (*inputs[1:], *bounded)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # noqa: D102
        depth = ctx.depth
        stored = ctx.saved_tensors
        v, param, row_scale = stored[:3]
        anchor = stored[3 : 3 + depth]
        rest = stored[3 + depth :]
        saved = dict(zip(_SAVED_SINGLES, rest[: len(_SAVED_SINGLES)], strict=True))
        rest = rest[len(_SAVED_SINGLES) :]
        for name, length in zip(_SAVED_LISTS, ctx.lengths, strict=True):
            saved[name], rest = list(rest[:length]), rest[length:]
        g_hidden, g_bounded = grads[: depth - 1], grads[depth - 1 :]
        g_w, g_k, g_v, g_param, g_r = key_path_backward(
            anchor, v, ctx.bias, param, row_scale, ctx.tau, ctx.activation, ctx.skip, saved, g_hidden, g_bounded
        )
        return (None, None, None, None, None, g_k, g_v, g_param, g_r, *g_w)


_SAVED_SINGLES = ("pred", "scale", "norm")
_SAVED_LISTS = ("inputs", "preacts", "deltas", "backs", "raw_fwd", "raw_back", "sq_h", "sq_d")


def bounded_key_path(
    anchor: Sequence[Tensor],
    k: Tensor,
    v: Tensor,
    bias: AttentionalBias,
    param: Tensor | None,
    row_scale: Tensor | None,
    tau: float | None,
    activation: str,
    skip: int | None,
    *,
    differentiable: bool,
) -> tuple[list[Tensor], list[Tensor]]:
    """``(inputs, bounded deltas)`` of :func:`key_path_forward`; one autograd node when
    ``differentiable``."""
    if not differentiable:
        return key_path_forward(anchor, k, v, bias, param, row_scale, tau, activation, skip)
    depth = len(anchor)
    out = BoundedKeyPath.apply(bias, tau, activation, skip, depth, k, v, param, row_scale, *anchor)
    return [k, *out[: depth - 1]], list(out[depth - 1 :])
