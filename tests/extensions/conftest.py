"""What the outside-registration tests share: a run of a memory under two operators, compared
(outputs, final state, gradients of the input and every parameter, random splits into calls)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from titans_memory.core import MemoryState, NeuralMemory

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-11}


def random_functional(tensors, seed: int = 99) -> Tensor:
    """``sum_i <R_i, t_i>`` with seeded random ``R_i``: a scalar that depends on every entry."""
    g = torch.Generator().manual_seed(seed)
    return sum((torch.randn(t.shape, generator=g, dtype=t.dtype) * t).sum() for t in tensors)


def state_tensors(state: MemoryState) -> dict[str, Tensor]:
    return state.tensors()


def run(mem: NeuralMemory, x: Tensor, backend: str, splits: list[int] | None = None):
    """``mem`` over ``x`` with ``backend``, in one call or in calls of the given lengths; returns
    ``(y, state, grads)``, the gradients of a random functional of y and the final state with
    respect to ``x`` and every parameter."""
    x = x.detach().clone().requires_grad_()
    if splits is None:
        y, state = mem(x, backend=backend)
    else:
        ys, state, start = [], None, 0
        for n in splits:
            y_part, state = mem(x[:, start : start + n], state, backend=backend)
            ys.append(y_part)
            start += n
        y = torch.cat(ys, dim=1)
    tensors = [y, *state.tensors().values()]
    params = [p for p in mem.parameters() if p.requires_grad]
    grads = torch.autograd.grad(random_functional(tensors), [x, *params], allow_unused=True, materialize_grads=True)
    return y.detach(), state.detach(), grads


def random_splits(total: int, generator: torch.Generator) -> list[int]:
    """A random split of ``total`` tokens into calls (empty calls included)."""
    cuts = sorted(torch.randint(0, total + 1, (3,), generator=generator).tolist())
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def assert_same_run(a, b, names: list[str]) -> None:
    """Two results of :func:`run` agree: outputs, state tensors (by name) and gradients."""
    torch.testing.assert_close(a[0], b[0], **TOL, msg=lambda m: f"outputs: {m}")
    ta, tb = a[1].tensors(), b[1].tensors()
    assert ta.keys() == tb.keys()
    assert a[1].position == b[1].position
    for name in ta:
        torch.testing.assert_close(ta[name], tb[name], **TOL, msg=lambda m, n=name: f"state {n}: {m}")
    for name, ga, gb in zip(names, a[2], b[2], strict=True):
        torch.testing.assert_close(ga, gb, **TOL, msg=lambda m, n=name: f"d/d{n}: {m}")


@pytest.fixture
def compare_with_reference() -> Callable[..., None]:
    """``compare(mem, x, backend, seeds)``: ``backend`` equals the reference operator in one call
    and in random splits of the stream into calls (outputs, final state, gradients); and the
    reference itself streams exactly."""

    def compare(mem: NeuralMemory, x: Tensor, backend: str, seeds=(0, 1)) -> None:
        names = ["x", *(n for n, p in mem.named_parameters() if p.requires_grad)]
        reference = run(mem, x, "recurrent")
        if backend != "recurrent":
            assert_same_run(run(mem, x, backend), reference, names)
        for seed in seeds:
            splits = random_splits(x.shape[1], torch.Generator().manual_seed(seed))
            assert_same_run(run(mem, x, backend, splits), reference, names)

    return compare
