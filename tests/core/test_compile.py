"""``torch.compile`` on the user's side and the opt-in compiled chunk step.

Dynamo's own counters decide: graphs compiled, graph breaks. Backends ``eager`` and ``aot_eager``
keep these tests fast (what they check, capture and recompilation, happens in dynamo, before any
code generation); inductor's speed is measured by ``benchmarks/vs_peer.py --compiled``.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

from titans_memory.core import MemoryConfig, NeuralMemory

CFG = MemoryConfig(dim=16, heads=2, depth=2, chunk_size=8, conv_kernel=4)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_module_equals_eager_and_stops_recompiling():
    torch.manual_seed(0)
    mem = NeuralMemory(CFG)
    counter = CompileCounter()
    compiled = torch.compile(mem, backend=counter)

    def call(x, state):
        y, s = compiled(x, state)
        y_ref, s_ref = mem(x, state)
        _close(y, y_ref)
        for name, t in s_ref.tensors().items():
            _close(s.tensors()[name], t)
        assert s.position == s_ref.position
        return s_ref

    # warm-up, each case once: a fresh call, a second length (dynamo turns T dynamic), calls
    # that end on a chunk boundary or inside a chunk (the state's anchor is then its weights, or
    # apart), a stream (the state's position turns dynamic), and the short lengths T <=
    # conv_kernel (dynamo specialises sizes 0 and 1 of the convolution's slices)
    for T in (16, 24, 35):
        call(torch.randn(2, T, 16), None)
    state = None
    for T in (5, 13, 7, 1, 2, 3, 4, 9, 4, 16):  # positions ..., 44, 48, 64
        state = call(torch.randn(2, T, 16), state)
    warm = counter.frame_count
    # any further length above conv_kernel, fresh or streamed, whole chunks or not: no new graph
    for T in (40, 19, 72, 8, 5):
        call(torch.randn(2, T, 16), None)
    for T in (6, 30, 11, 64, 17, 5):
        state = call(torch.randn(2, T, 16), state)
    assert counter.frame_count == warm
    # the only graph break: the chunked operator's loop over chunks stays outside the graph
    breaks = [reason for reason in counters["graph_break"] if "chunked_memory" not in reason]
    assert breaks == [], breaks


@pytest.mark.slow
def test_compiled_module_gradients_equal_eager():
    torch.manual_seed(1)
    mem = NeuralMemory(CFG)
    compiled = torch.compile(mem, backend="aot_eager")
    x = torch.randn(2, 29, 16, requires_grad=True)
    y, s = compiled(x)
    (y.square().sum() + s.weights[0].sum()).backward()
    grads = [x.grad, *(p.grad for p in mem.parameters())]
    x.grad = None
    mem.zero_grad(set_to_none=True)
    y_ref, s_ref = mem(x)
    (y_ref.square().sum() + s_ref.weights[0].sum()).backward()
    _close(y, y_ref)
    for g, g_ref in zip(grads, [x.grad, *(p.grad for p in mem.parameters())], strict=True):
        _close(g, g_ref)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["chunked", "chunked_checkpoint"])
def test_compiled_step_has_no_graph_break_and_no_length_recompiles(backend):
    # compile_step compiles the chunk step with fullgraph=True: a graph break would raise
    torch.manual_seed(2)
    eager = NeuralMemory(CFG).double()
    fast = NeuralMemory(CFG, compile_step="aot_eager", backend=backend).double()
    fast.load_state_dict(eager.state_dict())
    x = torch.randn(2, 21, 16, dtype=torch.float64, requires_grad=True)
    y, s = fast(x)
    (y.sum() + s.momentum[1].sum()).backward()
    grads = [x.grad, *(p.grad for p in fast.parameters())]
    x.grad = None
    y_ref, s_ref = eager(x)
    (y_ref.sum() + s_ref.momentum[1].sum()).backward()
    tol = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(y, y_ref, **tol)
    for name, t in s_ref.tensors().items():
        torch.testing.assert_close(s.tensors()[name], t, **tol)
    for g, g_ref in zip(grads, [x.grad, *(p.grad for p in eager.parameters())], strict=True):
        torch.testing.assert_close(g, g_ref, **tol)
    with torch.no_grad():
        fast(torch.randn(2, 16, 16, dtype=torch.float64))
        graphs = counters["stats"]["unique_graphs"]
        state = None
        for T in (40, 3, 77, 16, 9):  # every body chunk has the same shape: nothing new to compile
            y, state = fast(torch.randn(2, T, 16, dtype=torch.float64), state)
    assert counters["stats"]["unique_graphs"] == graphs
    assert not counters["graph_break"]


def test_compile_step_is_validated():
    with pytest.raises(TypeError, match="compile_step"):
        NeuralMemory(CFG, compile_step=1)
    with pytest.raises(TypeError, match="compile_step"):
        NeuralMemory(CFG, compile_step="")
