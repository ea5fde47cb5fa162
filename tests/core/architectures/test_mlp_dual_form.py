"""The hand-written backward of the MLP memory's dual-form read/write equals autograd through the
same ops; the write-only path equals the write of read/write."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.architectures import KeyPath, ReadCoefficients, WriteCoefficients
from titans_memory.core.architectures.mlp_dual_form import (
    read_write,
    read_write_autograd,
    write_state,
)

DT = torch.float64


def _args(depth: int, momentum: bool, d_in: int = 3, hidden: int = 5, c: int = 6, n: int = 2, seed: int = 0):
    """Random leaves for every argument (None where the momentum terms are off)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=DT).requires_grad_()

    shapes = [(d_in, d_in)] if depth == 1 else [(d_in, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, d_in)]
    col = lambda: rnd(n, c, 1)  # noqa: E731
    one = lambda: rnd(n, 1, 1)  # noqa: E731
    read = ReadCoefficients(
        decay=col(), momentum_in=col() if momentum else None, mix=rnd(n, c, c),
        q_decay=rnd(n, c, d_in), q_momentum=rnd(n, c, d_in) if momentum else None, scores=rnd(n, c, c),
    )
    write = WriteCoefficients(
        grad_weights=col(), decay=one(), momentum_grad_weights=col() if momentum else None,
        momentum_in=one() if momentum else None, momentum_decay=one() if momentum else None,
    )
    return dict(
        q=rnd(n, c, d_in), read=read, write=write,
        weights=[rnd(n, a, b) for a, b in shapes],
        momentum=[rnd(n, a, b) for a, b in shapes] if momentum else None,
        key_path=KeyPath(tuple(rnd(n, c, a) for a, _ in shapes), tuple(rnd(n, c, b) for _, b in shapes)),
    )


def _leaves(args: dict) -> list[torch.Tensor]:
    out = []
    for val in args.values():
        if isinstance(val, torch.Tensor):
            out.append(val)
        elif isinstance(val, KeyPath):
            out.extend([*val.inputs, *val.deltas])
        elif val is not None:
            out.extend(t for t in val if t is not None)
    return out


def _outputs(result) -> list[torch.Tensor]:
    y, w, s = result
    return [y, *w, *(s or [])]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("momentum", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_read_write_backward_equals_autograd(depth, momentum, activation):
    args = _args(depth, momentum, seed=depth * 7 + momentum)
    leaves = _leaves(args)
    skip = 0 if depth > 1 else None  # the residual memory's skip connection: + q
    outs_ours = _outputs(read_write_autograd(**args, activation=activation, skip=skip))
    outs_ref = _outputs(read_write(**args, activation=activation, skip=skip))  # plain ops: autograd differentiates them
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
    leaves = _leaves(args)

    def fn(*flat):
        it = iter(flat)

        def take(val):
            if isinstance(val, torch.Tensor):
                return next(it)
            if isinstance(val, KeyPath):
                return KeyPath(tuple(next(it) for _ in val.inputs), tuple(next(it) for _ in val.deltas))
            if isinstance(val, list):
                return [next(it) for _ in val]
            return type(val)(*(None if t is None else next(it) for t in val))

        rebuilt = {key: take(val) for key, val in args.items()}
        return tuple(_outputs(read_write_autograd(**rebuilt, activation="gelu", skip=0)))

    assert torch.autograd.gradcheck(fn, tuple(leaves))


@pytest.mark.parametrize("momentum", [True, False])
def test_write_only_is_the_write_of_read_write(momentum):
    args = _args(2, momentum, seed=5)
    _, w_rw, s_rw = read_write(**args, activation="gelu", skip=0)
    w, s = write_state(args["write"], args["weights"], args["momentum"], args["key_path"])
    for a, b in zip(w + (s or []), w_rw + (s_rw or []), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
