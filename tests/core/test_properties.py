"""Property: for any rule of the design space and any split of the stream into calls, every fast
path equals the reference in one call: outputs, final state and gradients (float64)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.ops import BACKENDS, REFERENCE

DT = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}
FAST = [name for name in BACKENDS if name != REFERENCE]


@st.composite
def rules_and_splits(draw):
    forget = draw(st.booleans())
    cfg = dict(
        depth=draw(st.integers(1, 3)),
        heads=draw(st.sampled_from([1, 2])),
        objective=draw(st.sampled_from(["l2", "lp", "huber", "dot"])),
        retention=draw(st.sampled_from(["decay", "lq", "kl", "elastic_net"])),
        momentum=draw(st.booleans()),
        forget=forget,
        decayed_gradient=forget and draw(st.booleans()),
        chunk_size=draw(st.integers(1, 8)),
        conv_kernel=draw(st.sampled_from([1, 3])),
    )
    # pieces of 0 to 9 tokens (zero-length calls included): many start and end mid-chunk
    sizes = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(lambda s: sum(s) > 0))
    return cfg, sizes, draw(st.sampled_from(FAST)), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rules_and_splits())
def test_streamed_fast_path_equals_reference_in_one_call(case):
    cfg, sizes, backend, seed = case
    torch.manual_seed(seed)
    mem = NeuralMemory(MemoryConfig(dim=8, expansion=2.0, **cfg)).to(DT)
    with torch.no_grad():
        if mem.to_gates is not None:
            mem.to_gates.weight.mul_(3.0)  # gates that vary from token to token
    x = torch.randn(2, sum(sizes), 8, generator=torch.Generator().manual_seed(seed), dtype=DT)
    x.requires_grad_()
    params = list(mem.parameters())

    y_ref, s_ref = mem(x, backend=REFERENCE)
    ys, state, start = [], None, 0
    for n in sizes:
        y, state = mem(x[:, start : start + n], state, backend=backend)
        ys.append(y)
        start += n
    y_fast = torch.cat(ys, dim=1)

    assert torch.isfinite(y_ref).all()
    torch.testing.assert_close(y_fast, y_ref, **TOL)
    assert state.position == s_ref.position
    ref_tensors, fast_tensors = s_ref.tensors(), state.tensors()
    assert ref_tensors.keys() == fast_tensors.keys()
    for name in ref_tensors:
        torch.testing.assert_close(fast_tensors[name], ref_tensors[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")

    g = torch.Generator().manual_seed(seed + 1)
    probe = [torch.randn(t.shape, generator=g, dtype=DT) for t in (y_ref, *ref_tensors.values())]

    def functional(y, tensors):
        return sum((p * t).sum() for p, t in zip(probe, (y, *tensors.values()), strict=True))

    g_ref = torch.autograd.grad(functional(y_ref, ref_tensors), [x, *params], allow_unused=True, materialize_grads=True)
    g_fast = torch.autograd.grad(functional(y_fast, fast_tensors), [x, *params], allow_unused=True, materialize_grads=True)
    for (name, _), a, b in zip([("x", x), *mem.named_parameters()], g_ref, g_fast, strict=True):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, n=name: f"d/d{n}: {m}")
