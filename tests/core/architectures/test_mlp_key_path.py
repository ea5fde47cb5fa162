"""The hand-written backward of the MLP memory's bounded key path equals autograd through the same
computation (the generic ``DualFormMemory.bounded_key_path``): values and gradients of every input,
for every depth, activation and built-in bias, with and without the decay's row scale, with the
step bound off, idle and binding."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.architectures import DualFormMemory, MatrixMemory, ResidualMLPMemory
from titans_memory.core.architectures.activations import SECOND_DERIVATIVE
from titans_memory.core.architectures.mlp_key_path import BoundedKeyPath
from titans_memory.core.objectives import DotProductBias, HuberBias, L2Bias, LpBias

DT = torch.float64
N, C, D, HIDDEN = 2, 5, 3, 4


def _memory(depth: int, activation: str):
    return MatrixMemory(D) if depth == 1 else ResidualMLPMemory(D, HIDDEN, depth, activation)


def _leaves(memory, bias, row_scale: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=DT) * scale).requires_grad_()

    leaves = {
        "k": rnd(N, C, D), "v": rnd(N, C, D),
        "param": (torch.rand(N, C, 1, generator=g, dtype=DT) + 0.3).requires_grad_() if bias.param_init else None,
        "row_scale": (torch.rand(N, C, 1, generator=g, dtype=DT) * 0.5 + 0.5).requires_grad_() if row_scale else None,
    }
    for i, (a, b) in enumerate(memory.layer_shapes):
        leaves[f"w{i}"] = rnd(N, a, b, scale=a**-0.5)
    return leaves


def _run(memory, bias, leaves, tau, fused: bool):
    anchor = [leaves[name] for name in sorted(leaves) if name.startswith("w")]
    args = (anchor, leaves["k"], leaves["v"], bias, leaves["param"], leaves["row_scale"], tau)
    if fused:
        return memory.bounded_key_path(*args, differentiable=True)
    return DualFormMemory.bounded_key_path(memory, *args)  # plain ops under autograd


BIASES = {"l2": L2Bias(), "lp": LpBias(p=3.0), "huber": HuberBias(delta_init=1.0), "dot": DotProductBias()}


@pytest.mark.parametrize(
    ("depth", "activation"), [(1, "gelu")] + [(d, a) for d in (2, 3) for a in SECOND_DERIVATIVE]
)
@pytest.mark.parametrize("bias", list(BIASES))
@pytest.mark.parametrize("row_scale", [False, True], ids=["plain", "row_scale"])
@pytest.mark.parametrize("tau", [None, 1e3, 0.3], ids=["no_bound", "bound_idle", "bound_binds"])
def test_fused_key_path_equals_autograd(depth, activation, bias, row_scale, tau, random_functional):
    memory = _memory(depth, activation)
    leaves = _leaves(memory, BIASES[bias], row_scale, seed=depth + 3 * row_scale)
    fused = _run(memory, BIASES[bias], leaves, tau, fused=True)
    plain = _run(memory, BIASES[bias], leaves, tau, fused=False)
    assert len(fused.inputs) == len(plain.inputs) == depth
    outs_f, outs_p = [*fused.inputs, *fused.deltas], [*plain.inputs, *plain.deltas]
    for a, b in zip(outs_f, outs_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    names = [n for n, t in leaves.items() if t is not None]
    grads = {}
    for label, outs in (("fused", outs_f), ("plain", outs_p)):
        grads[label] = torch.autograd.grad(
            random_functional(outs), [leaves[n] for n in names], allow_unused=True, materialize_grads=True
        )
    for name, a, b in zip(names, grads["fused"], grads["plain"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=lambda m, n=name: f"d/d{n}: {m}")
    if tau == 0.3:  # the bound really binds here, so its backward is exercised
        norms = torch.stack([h.norm(dim=-1) * d.norm(dim=-1) for h, d in zip(*plain, strict=True)]).norm(dim=0)
        assert (norms > 0.3 - 1e-12).any()


def test_fused_key_path_passes_gradcheck():
    memory = _memory(2, "gelu")
    leaves = _leaves(memory, HuberBias(), row_scale=True, seed=4)
    names = [n for n, t in leaves.items() if t is not None]

    def fn(*flat):
        given = dict(zip(names, flat, strict=True))
        anchor = [given[n] for n in names if n.startswith("w")]
        out = BoundedKeyPath.apply(
            HuberBias(), 0.5, "gelu", memory.skip, 2, given["k"], given["v"], given["param"], given["row_scale"], *anchor
        )
        return tuple(out)

    assert torch.autograd.gradcheck(fn, tuple(leaves[n] for n in names))


def test_second_derivatives_are_derivatives_of_the_first():
    """Central differences of act' (40 points, none on relu's kink at 0)."""
    from titans_memory.core.architectures.activations import ACTIVATIONS

    z, h = torch.linspace(-4, 4, 40, dtype=DT), 1e-6
    for name, second in SECOND_DERIVATIVE.items():
        act, first = ACTIVATIONS[name]
        numeric = (first(z + h) - first(z - h)) / (2 * h)
        torch.testing.assert_close(second(z, act(z)), numeric, rtol=1e-7, atol=1e-8, msg=name)
