"""The hand-written backward of the dual-form read/write equals autograd through the same ops."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.ops.dual_form import read_write, read_write_autograd

DT = torch.float64


def _args(depth: int, momentum: bool, d_in: int = 3, hidden: int = 5, c: int = 6, n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=DT).requires_grad_()

    shapes = [(d_in, d_in)] if depth == 1 else [(d_in, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, d_in)]
    col = lambda: rnd(n, c, 1)  # noqa: E731
    one = lambda: rnd(n, 1, 1)  # noqa: E731
    args = dict(
        q=rnd(n, c, d_in), qa=rnd(n, c, d_in), qf=rnd(n, c, d_in) if momentum else None, s0=rnd(n, c, c),
        A=col(), f=col() if momentum else None, G=rnd(n, c, c), g=col(), a=one(),
        p=col() if momentum else None, f_r=one() if momentum else None, e=one() if momentum else None,
        weights=[rnd(n, a, b) for a, b in shapes],
        momentum=[rnd(n, a, b) for a, b in shapes] if momentum else None,
        inputs=[rnd(n, c, a) for a, _ in shapes], deltas=[rnd(n, c, b) for _, b in shapes],
    )
    return args


def _leaves(args: dict) -> list[torch.Tensor]:
    out = []
    for val in args.values():
        if isinstance(val, list):
            out.extend(val)
        elif val is not None:
            out.append(val)
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("momentum", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_read_write_backward_equals_autograd(depth, momentum, activation):
    args = _args(depth, momentum, seed=depth * 7 + momentum)
    leaves = _leaves(args)
    ours = read_write_autograd(**args, activation=activation)
    ref = read_write(**args, activation=activation)  # plain ops: autograd differentiates them
    outs_ours = [ours[0], *ours[1], *(ours[2] or [])]
    outs_ref = [ref[0], *ref[1], *(ref[2] or [])]
    g = torch.Generator().manual_seed(1)
    cot = [torch.randn(t.shape, generator=g, dtype=DT) for t in outs_ref]
    for a, b in zip(outs_ours, outs_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    grads_ours = torch.autograd.grad(outs_ours, leaves, cot, allow_unused=True, materialize_grads=True)
    grads_ref = torch.autograd.grad(outs_ref, leaves, cot, allow_unused=True, materialize_grads=True)
    for a, b in zip(grads_ours, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_read_write_passes_gradcheck():
    args = _args(2, True, d_in=2, hidden=3, c=3, n=1, seed=3)
    keys = [k for k, v in args.items() if v is not None]

    def fn(*flat):
        it = iter(flat)
        rebuilt = {}
        for k in keys:
            val = args[k]
            rebuilt[k] = [next(it) for _ in val] if isinstance(val, list) else next(it)
        y, w, s = read_write_autograd(**rebuilt, activation="gelu")
        return (y, *w, *s)

    assert torch.autograd.gradcheck(fn, tuple(_leaves(args)))
