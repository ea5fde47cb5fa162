"""Read and write as separate steps: ``retrieve`` and ``store`` compose into what ``forward`` does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from titans_memory.core import MemoryConfig, MemoryState, NeuralMemory, preset
from titans_memory.core.ops import BACKENDS

DT = torch.float64
TOL = {"rtol": 1e-11, "atol": 1e-12}


def make(seed: int = 0, **kwargs) -> NeuralMemory:
    base = {"dim": 12, "heads": 3, "depth": 2, "expansion": 2.0, "chunk_size": 5}
    torch.manual_seed(seed)
    mem = NeuralMemory(MemoryConfig(**{**base, **kwargs})).to(DT)
    with torch.no_grad():  # gates that differ per token and head
        mem.to_gates.weight.mul_(5.0)
    return mem


def rand_x(B: int, T: int, dim: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, dim, generator=torch.Generator().manual_seed(seed), dtype=DT)


def memory_tensors(state: MemoryState) -> list[torch.Tensor]:
    return [*state.weights, *state.momentum, *state.anchor]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize(
    "overrides",
    [
        {"chunk_size": 1},
        {"chunk_size": 4},
        {"chunk_size": 4, "depth": 1, "momentum": False},
        {"chunk_size": 3, "conv_kernel": 1},
        {"chunk_size": 4, "objective": "huber", "retention": "lq"},
    ],
    ids=["c1", "c4", "c4-matrix", "c3-noconv", "c4-huber-lq"],
)
def test_store_then_retrieve_token_by_token_equals_forward(backend, overrides, random_functional):
    """For each token: store it, then retrieve it. The state after t stores holds M_t, so the read
    is M_t(q_t): exactly forward's read-after-write, for any chunk size (chunks stay aligned)."""
    mem = make(**overrides)
    x = rand_x(2, 11).requires_grad_()
    params = list(mem.parameters())
    y, state = mem(x, backend=backend)

    ys, s = [], None
    for t in range(x.shape[1]):
        s = mem.store(x[:, t : t + 1], s, backend=backend)
        y_t, s = mem.retrieve(x[:, t : t + 1], s)
        ys.append(y_t)
    y_hand = torch.cat(ys, dim=1)
    torch.testing.assert_close(y_hand, y, **TOL)
    assert s.position == state.position == 11
    for a, b in zip(state.tensors().values(), s.tensors().values(), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    # and the gradients of every parameter and of the input agree
    g = torch.autograd.grad(random_functional([y, *memory_tensors(state)]), [x, *params],
                            allow_unused=True, materialize_grads=True)
    g_hand = torch.autograd.grad(random_functional([y_hand, *memory_tensors(s)]), [x, *params],
                                 allow_unused=True, materialize_grads=True)
    for (name, _), a, b in zip([("x", x), *mem.named_parameters()], g, g_hand, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"d/d{n}: {m}")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("sizes", [[23], [3, 1, 7, 12], [5, 5, 5, 8]])
def test_store_gives_the_state_of_forward(backend, sizes):
    """A write-only call over T tokens (in any pieces) ends in forward's state; reads change nothing."""
    mem = make(chunk_size=5)
    x = rand_x(2, sum(sizes))
    with torch.no_grad():
        _, full = mem(x, backend=backend)
        state, start = None, 0
        for n in sizes:
            state = mem.store(x[:, start : start + n], state, backend=backend)
            start += n
    for a, b in zip(memory_tensors(full), memory_tensors(state), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(state.kv_tail, full.kv_tail, **TOL)
    assert torch.count_nonzero(state.query_tail) == 0  # nothing was read: the query path never ran
    assert state.position == full.position


def test_retrieve_reads_without_writing():
    mem = make(chunk_size=4)
    x, probe = rand_x(2, 10), rand_x(2, 6, seed=3)
    with torch.no_grad():
        _, state = mem(x[:, :7])  # mid-chunk: anchor != weights
        y, after = mem.retrieve(probe, state)
        y_again, _ = mem.retrieve(probe, state)
    # the memory is untouched; only the query-path tail moved
    for a, b in zip(memory_tensors(after), memory_tensors(state), strict=True):
        assert a is b
    assert after.position == state.position and after.kv_tail is state.kv_tail
    assert not torch.equal(after.query_tail, state.query_tail)
    torch.testing.assert_close(y, y_again, rtol=0, atol=0)  # reading twice reads the same
    # it is M_t(q): the memory's own forward on the queries, through the output path
    probe_n = mem._normalize(probe)  # input_norm: the layer sees each token at unit RMS
    q, _ = mem._queries(probe_n, state.query_tail)
    expect = mem._output(mem.rule.architecture.forward(state.to_op_state().weights, q), probe_n)
    torch.testing.assert_close(y, expect, rtol=0, atol=0)
    # and a fresh memory reads differently from one that was written
    y_fresh, _ = mem.retrieve(probe)
    assert (y_fresh - y).abs().max() > 1e-4


def test_retrieve_and_store_take_different_inputs():
    """MAC's pattern: read with one input, write another; the two tails stay apart."""
    mem = make(chunk_size=4)
    a, b = rand_x(2, 9), rand_x(2, 9, seed=5)
    with torch.no_grad():
        h, s = mem.retrieve(a)
        s = mem.store(b, s)
        s_store_only = mem.store(b)
    for u, w in zip(memory_tensors(s), memory_tensors(s_store_only), strict=True):
        torch.testing.assert_close(u, w, rtol=0, atol=0)  # the read did not touch the memory
    torch.testing.assert_close(s.kv_tail, s_store_only.kv_tail, rtol=0, atol=0)
    # the query tail holds the last conv_kernel - 1 query-path inputs silu(x W_Q) of a
    w_q = mem.to_qkv.weight[: mem.inner]
    a_n = mem._normalize(a)
    torch.testing.assert_close(s.query_tail, torch.nn.functional.silu(a_n[:, -3:] @ w_q.T), rtol=1e-12, atol=1e-12)
    assert h.shape == a.shape


def test_empty_calls():
    mem = make()
    with torch.no_grad():
        s = mem.store(rand_x(2, 6))
        assert mem.store(rand_x(2, 0), s) is s
        y, s2 = mem.retrieve(rand_x(2, 0), s)
    assert y.shape == (2, 0, 12) and s2 is s


def test_gates_at_initialisation_are_the_configured_ones():
    cfg = preset("yaad", dim=16, heads=4, lr_init=0.03, huber_delta_init=2.5, forget_init=0.01)
    mem = NeuralMemory(cfg).to(DT)
    with torch.no_grad():
        mem.to_gates.weight.zero_()  # only the biases: every token gets the initial value
        g = mem.gates(rand_x(2, 5, dim=16))
    assert g.lr.shape == (2, 4, 5) and g.momentum is None
    torch.testing.assert_close(g.lr, torch.full_like(g.lr, 0.03), rtol=1e-6, atol=0)  # biases were set in float32
    torch.testing.assert_close(g.forget, torch.full_like(g.forget, 0.01), rtol=1e-6, atol=0)  # biases were set in float32
    torch.testing.assert_close(g.bias_param, torch.full_like(g.bias_param, 2.5), rtol=1e-6, atol=0)  # biases were set in float32
    titans = NeuralMemory(MemoryConfig(dim=8, heads=2)).to(DT)
    with torch.no_grad():
        titans.to_gates.weight.zero_()
        g = titans.gates(rand_x(1, 3, dim=8))
    torch.testing.assert_close(g.momentum, torch.full_like(g.momentum, 0.9), rtol=1e-6, atol=0)  # biases were set in float32
    assert g.bias_param is None


def test_state_format_1_still_loads(tmp_path: Path):
    """A state saved by format 1 (one conv tail for q, k, v) loads into the two tails."""
    from safetensors.torch import save_file

    mem = make(chunk_size=16)
    x = rand_x(2, 37)
    with torch.no_grad():
        _, state = mem(x[:, :21])
        old = {f"{g}.{i}": t.contiguous().clone() for g in ("weights", "momentum", "anchor")
               for i, t in enumerate(getattr(state, g))}
        old["conv_tail"] = torch.cat([state.query_tail, state.kv_tail], dim=-1).contiguous()
        meta = {"format": "titans-miras/MemoryState/1", "position": "21", "chunk_size": "16", "layers": "2"}
        save_file(old, str(tmp_path / "v1.safetensors"), metadata=meta)
        loaded = MemoryState.load(tmp_path / "v1.safetensors")
        y, _ = mem(x[:, 21:], state)
        y_loaded, _ = mem(x[:, 21:], loaded)
    torch.testing.assert_close(loaded.query_tail, state.query_tail, rtol=0, atol=0)
    torch.testing.assert_close(loaded.kv_tail, state.kv_tail, rtol=0, atol=0)
    torch.testing.assert_close(y_loaded, y, rtol=0, atol=0)


@pytest.mark.parametrize(
    "overrides",
    [{"chunk_size": 4}, {"chunk_size": 1, "depth": 1}, {"chunk_size": 3, "decayed_gradient": True, "objective": "huber"}],
    ids=["c4", "c1-matrix", "c3-decayed-huber"],
)
def test_surprise_is_the_size_of_the_reference_step(overrides):
    """theta_t ||u_t||_F with u_t the gradient the reference operator takes, token by token."""
    from titans_memory.core.ops import recurrent_memory

    mem = make(**overrides)
    x = rand_x(2, 10)
    with torch.no_grad():
        _, start = mem(x[:, :3])  # begin mid-chunk
        sizes, state = mem.surprise(x[:, 3:], start)
        _, expect_state = mem(x[:, 3:], start)
    assert sizes.shape == (2, 3, 7)
    for a, b in zip(memory_tensors(state), memory_tensors(expect_state), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    # the reference: feed one token at a time; with momentum 0 and no decay, the first token's
    # step S_1 = -theta u_1 is the state's momentum after one token
    mem_plain = make(**{**overrides, "momentum": False, "forget": overrides.get("decayed_gradient", False)})
    with torch.no_grad():
        _, s = mem_plain(x[:, :3])
        sizes_plain, _ = mem_plain.surprise(x[:, 3:], s)
        for t in range(3, 10):
            s_next = mem_plain.store(x[:, t : t + 1], s)
            step = torch.stack([m.pow(2).sum((-2, -1)) for m in s_next.momentum]).sum(0).sqrt()  # (B, H)
            torch.testing.assert_close(sizes_plain[:, :, t - 3], step, **TOL)
            s = s_next
    assert recurrent_memory is BACKENDS["recurrent"]


def test_the_state_holds_no_view_of_a_long_input():
    """The convolution tails are copies: a state must not keep a whole long call's projections alive."""
    mem = make(chunk_size=4)
    with torch.no_grad():
        _, state = mem(rand_x(1, 2000))
        _, state = mem.retrieve(rand_x(1, 2000), state)
    for name in ("query_tail", "kv_tail"):
        tail = getattr(state, name)
        assert tail.untyped_storage().nbytes() <= 3 * tail.nelement() * tail.element_size(), name
