"""NeuralMemory as a sequence layer: backends agree, causal, streaming, save/load, training, errors."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch

import titans_memory
from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.ops import BACKENDS
from titans_memory.core.state import MemoryState

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def make(seed: int = 0, dtype=DT, **kwargs) -> NeuralMemory:
    base = {"dim": 12, "heads": 3, "depth": 2, "expansion": 2.0, "chunk_size": 5}
    torch.manual_seed(seed)
    mem = NeuralMemory(MemoryConfig(**{**base, **kwargs})).to(dtype)
    with torch.no_grad():  # make the gates differ per token and per head (not just the biases)
        if mem.to_gates is not None:
            mem.to_gates.weight.mul_(5.0)
    return mem


def rand_x(B: int, T: int, dim: int = 12, seed: int = 1, dtype=DT) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, dim, generator=g, dtype=DT).to(dtype)


# --------------------------------------------------------------------------------------------------
# backends

CONFIGS = [
    {"heads": 1, "depth": 1, "conv_kernel": 1, "momentum": False, "forget": False, "chunk_size": 1},
    {"heads": 3, "depth": 2, "conv_kernel": 4, "momentum": True, "forget": True, "chunk_size": 5},
    {"heads": 3, "depth": 1, "conv_kernel": 4, "momentum": True, "forget": False, "chunk_size": 16},
    {"heads": 1, "depth": 2, "conv_kernel": 1, "momentum": False, "forget": True, "chunk_size": 16},
    {
        "heads": 3,
        "depth": 2,
        "conv_kernel": 4,
        "momentum": True,
        "forget": True,
        "chunk_size": 16,
        "output_gate": False,
    },
]


@pytest.mark.parametrize("T", [1, 7, 63, 100])
@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: "-".join(f"{k[:4]}{int(v)}" for k, v in c.items())
)
def test_chunked_backend_equals_recurrent_backend(cfg, T, random_functional, assert_states_close):
    mem = make(**cfg)
    x = rand_x(2, T).requires_grad_()
    params = [p for p in mem.parameters()]
    results = []
    for backend in ("recurrent", "chunked"):
        y, state = mem(x, backend=backend)
        grads = torch.autograd.grad(
            random_functional([y, *state.tensors().values()]), [x, *params], allow_unused=True, materialize_grads=True
        )
        results.append((y, state, grads))
    (y_r, s_r, g_r), (y_c, s_c, g_c) = results
    torch.testing.assert_close(y_c, y_r, **TOL)
    assert_states_close(s_c, s_r)
    names = ["x"] + [n for n, _ in mem.named_parameters()]
    for name, a, b in zip(names, g_c, g_r, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, name=name: f"d/d{name}: {m}")
    # the comparison is not vacuous: the memory moved and the gradients reach the memory's parts
    moved = max((w - w0).abs().max() for w, w0 in zip(s_c.weights, mem.memory_init, strict=True))
    assert moved > 1e-4
    grads = dict(zip(names, g_c, strict=True))
    for name in ("x", "to_gates.weight", "memory_init.0", "to_qkv.weight"):
        assert grads[name].abs().max() > 0, name


# --------------------------------------------------------------------------------------------------
# causality and batch independence


@pytest.mark.parametrize("backend", ["chunked", "recurrent"])
@pytest.mark.parametrize("t", [0, 7, 10, 22])
def test_causal(backend, t):
    mem = make(chunk_size=5, conv_kernel=4)
    x = rand_x(2, 23)
    x2 = x.clone()
    x2[:, t] += torch.randn(x.shape[-1], dtype=DT, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y, _ = mem(x, backend=backend)
        y2, _ = mem(x2, backend=backend)
    # exactly: nothing before t may see token t (not even through padding or the conv)
    assert torch.equal(y[:, :t], y2[:, :t])
    assert (y[:, t] - y2[:, t]).abs().max() > 1e-6
    if t < 22:
        assert (y[:, t + 1 :] - y2[:, t + 1 :]).abs().max() > 1e-6


def test_batch_independence():
    mem = make(chunk_size=4)
    x = rand_x(3, 30)
    x2 = x.clone()
    x2[1] = rand_x(1, 30, seed=8)[0]
    with torch.no_grad():
        y, s = mem(x)
        y2, s2 = mem(x2)
        y_alone, s_alone = mem(x[2:3])
    for b in (0, 2):
        torch.testing.assert_close(y[b], y2[b], rtol=1e-13, atol=1e-14)
        for w, w2 in zip(s.weights, s2.weights, strict=True):
            torch.testing.assert_close(w[b], w2[b], rtol=1e-13, atol=1e-14)
    assert (y[1] - y2[1]).abs().max() > 1e-6
    # a sample run on its own gives the same result as inside the batch
    torch.testing.assert_close(y_alone[0], y[2], rtol=1e-12, atol=1e-13)
    for w, w_alone in zip(s.weights, s_alone.weights, strict=True):
        torch.testing.assert_close(w_alone[0], w[2], rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------------------
# streaming


def _stream(mem, x, sizes, backend="chunked", state=None):
    assert sum(sizes) == x.shape[1]
    ys, pos = [], 0
    for n in sizes:
        y, state = mem(x[:, pos : pos + n], state, backend=backend)
        ys.append(y)
        pos += n
    return torch.cat(ys, dim=1), state


def _random_split(T: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    sizes = []
    while sum(sizes) < T:
        n = int(torch.randint(0, 40, (1,), generator=g))  # 0 included: empty calls are allowed
        sizes.append(min(n, T - sum(sizes)))
    return sizes


@pytest.mark.parametrize(
    ("chunk_size", "sizes"),
    [
        (64, [100, 1, 1, 54, 100]),  # ends mid-chunk, single tokens, then crosses boundaries
        (64, [1] * 9 + [247]),
        (64, [64, 64, 128]),  # chunk boundaries exactly
        (5, [1] * 23 + [2, 3, 7, 221]),
        (5, _random_split(256, seed=0)),
        (64, _random_split(256, seed=1)),
        (7, _random_split(256, seed=2)),
    ],
)
def test_streaming_equals_one_call(chunk_size, sizes, assert_states_close):
    mem = make(chunk_size=chunk_size, dim=8, heads=2)
    x = rand_x(2, 256, dim=8)
    with torch.no_grad():
        y, state = mem(x)
        y_s, state_s = _stream(mem, x, sizes)
    torch.testing.assert_close(y_s, y, **TOL)
    assert_states_close(state_s, state)
    assert state.position == 256 and state.offset == 256 % chunk_size


@pytest.mark.parametrize("depth", [1, 2])
def test_streaming_equals_one_call_recurrent_backend_and_gradients(depth, random_functional, assert_states_close):
    """Pieces through the recurrent backend, and backprop across the carried state."""
    mem = make(chunk_size=4, depth=depth)
    x = rand_x(2, 19).requires_grad_()
    params = list(mem.parameters())
    y, state = mem(x)
    y_s, state_s = _stream(mem, x, [3, 1, 6, 9], backend="recurrent")
    torch.testing.assert_close(y_s, y, **TOL)
    assert_states_close(state_s, state)
    g = torch.autograd.grad(
        random_functional([y, *state.tensors().values()]), [x, *params], materialize_grads=True, allow_unused=True
    )
    g_s = torch.autograd.grad(
        random_functional([y_s, *state_s.tensors().values()]), [x, *params], materialize_grads=True, allow_unused=True
    )
    for a, b in zip(g, g_s, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("momentum", [True, False])
def test_a_state_can_be_continued_twice_and_is_never_modified(momentum, assert_states_close):
    """Inference overwrites buffers in place: never the caller's state (forking a stream is safe)."""
    mem = make(chunk_size=8, momentum=momentum)
    x = rand_x(2, 60)
    with torch.no_grad():
        _, state = mem(x[:, :13])  # mid-chunk
        saved = {k: v.clone() for k, v in state.tensors().items()}
        y1, s1 = mem(x[:, 13:], state)
        y2, s2 = mem(x[:, 13:], state)
    for name, t in state.tensors().items():
        assert torch.equal(t, saved[name]), f"state.{name} was modified by a later call"
    torch.testing.assert_close(y2, y1, rtol=0, atol=0)
    assert_states_close(s2, s1, rtol=0, atol=0)


def test_empty_call_returns_state_unchanged(assert_states_close):
    mem = make()
    x = rand_x(2, 8)
    with torch.no_grad():
        _, state = mem(x)
        y0, state0 = mem(x[:, :0], state)
    assert y0.shape == (2, 0, 12)
    assert_states_close(state0, state, rtol=0, atol=0)


def test_sequence_shorter_than_a_chunk_updates_the_memory():
    mem = make(chunk_size=64)
    x, probe = rand_x(2, 3), rand_x(2, 5, seed=4)
    with torch.no_grad():
        _, state = mem(x)
        fresh = mem.init_state(2)
        assert state.position == 3 and state.offset == 3
        for w, w0 in zip(state.weights, fresh.weights, strict=True):
            assert (w - w0).abs().max() > 1e-4
        # the anchor stays at the chunk start: the fresh memory
        for a, w0 in zip(state.anchor, fresh.weights, strict=True):
            torch.testing.assert_close(a, w0, rtol=0, atol=0)
        y_after, _ = mem(probe, state)
        y_fresh, _ = mem(probe)
    assert (y_after - y_fresh).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("conv_kernel", [1, 4])
def test_save_load_mid_stream(tmp_path: Path, conv_kernel, assert_states_close):
    mem = make(chunk_size=16, conv_kernel=conv_kernel)
    x = rand_x(2, 67)
    with torch.no_grad():
        _, state = mem(x[:, :37])
        assert state.offset == 5  # mid-chunk: anchor != weights
        assert any(
            (a - w).abs().max() > 0 for a, w in zip(state.anchor, state.weights, strict=True)
        )
        path = tmp_path / "state.safetensors"
        state.save(path)
        loaded = MemoryState.load(path)
        assert_states_close(loaded, state, rtol=0, atol=0)
        assert loaded.dtype == DT
        y_orig, s_orig = mem(x[:, 37:], state)
        y_load, s_load = mem(x[:, 37:], loaded)
    torch.testing.assert_close(y_load, y_orig, rtol=0, atol=0)
    assert_states_close(s_load, s_orig, rtol=0, atol=0)


def test_save_load_fresh_state_where_anchor_shares_memory(tmp_path: Path, assert_states_close):
    mem = make(chunk_size=16)
    state = mem.init_state(2)  # offset 0: anchor is weights (shared, expanded tensors)
    state.save(tmp_path / "s.safetensors")
    loaded = MemoryState.load(tmp_path / "s.safetensors")
    assert_states_close(loaded, state.detach(), rtol=0, atol=0)


def test_load_rejects_a_foreign_safetensors_file(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weights.0": torch.zeros(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"other.safetensors' is not a MemoryState file \(metadata"):
        MemoryState.load(path)
    path2 = tmp_path / "nometa.safetensors"
    save_file({"a": torch.zeros(1)}, str(path2))
    with pytest.raises(ValueError, match=r"nometa.safetensors' is not a MemoryState file \(metadata"):
        MemoryState.load(path2)


def test_no_unsafe_torch_load_in_the_library():
    src = Path(titans_memory.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        if re.search(r"weights_only\s*=\s*False", text):
            offenders.append(f"{path}: weights_only=False")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start() : match.start() + 300]
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{path}: torch.load without weights_only=True")
        if re.search(r"^\s*import pickle|pickle\.loads?\(", text, re.MULTILINE):
            offenders.append(f"{path}: pickle")
    assert not offenders, offenders


# --------------------------------------------------------------------------------------------------
# closed form: depth 1, no momentum, no forget = DeltaNet (with the factor 2 of d||.||^2); the
# operator-level closed forms (DeltaNet, Gated DeltaNet, TTT, linear attention) are in test_miras.py


def _delta_rule(q, k, v, theta, W0, chunk_size):
    """Row convention: W_t = W_{t-1} - theta_t * 2 k_t^T (k_t W_anchor - v_t); y_t = q_t W_t."""
    W, anchor, ys = W0.clone(), W0.clone(), []
    for t in range(q.shape[1]):
        err = k[:, t : t + 1] @ anchor - v[:, t : t + 1]  # (N, 1, d)
        W = W - theta[:, t, None, None] * 2.0 * k[:, t : t + 1].transpose(-1, -2) @ err
        ys.append(q[:, t : t + 1] @ W)
        if (t + 1) % chunk_size == 0:
            anchor = W.clone()
    return torch.cat(ys, dim=1), W


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_deltanet_closed_form_module(monkeypatch, backend):
    """The module's own q, k, v, theta (captured at the operator call) give DeltaNet's state."""
    captured = {}
    original = BACKENDS[backend]

    def spy(inputs, state, rule):
        captured.update(inputs=inputs, W0=state.weights[0])
        return original(inputs, state, rule)

    monkeypatch.setitem(BACKENDS, backend, spy)
    mem = make(depth=1, momentum=False, forget=False, chunk_size=1, heads=3, max_step_norm=None)
    with torch.no_grad():
        _, state = mem(rand_x(2, 31), backend=backend)
    inputs = captured["inputs"]
    assert inputs.log_retention is None and inputs.log_momentum is None
    _, W_ref = _delta_rule(inputs.q, inputs.k, inputs.v, inputs.lr, captured["W0"], 1)
    torch.testing.assert_close(state.weights[0].reshape(W_ref.shape), W_ref, rtol=1e-12, atol=1e-12)
    assert W_ref.abs().max() > 1e-3  # memory_init of a matrix memory is 0: the writes built it


# --------------------------------------------------------------------------------------------------
# float32 vs float64 over a long stream


@pytest.mark.parametrize("chunk_size", [32, 64])
def test_float32_tracks_float64_over_16k_tokens(chunk_size):
    cfg = MemoryConfig(dim=32, heads=2, depth=2, chunk_size=chunk_size)  # default gates
    torch.manual_seed(0)
    mem64 = NeuralMemory(cfg).double()
    mem32 = NeuralMemory(cfg).float()
    mem32.load_state_dict({k: v.float() for k, v in mem64.state_dict().items()})
    x = torch.randn(1, 16384, 32, generator=torch.Generator().manual_seed(1), dtype=DT)
    with torch.no_grad():
        y64, s64 = mem64(x)
        y32, s32 = mem32(x.float())
    assert torch.isfinite(y64).all(), "float64 itself diverged"
    assert torch.isfinite(y32).all() and all(torch.isfinite(w).all() for w in s32.weights)
    tail64, tail32 = y64[:, -1024:], y32[:, -1024:].double()
    rel = (tail32 - tail64).norm() / tail64.norm()
    assert rel < 1e-3, (
        f"float32 drifted from float64: relative error {rel:.2e} on the last 1k tokens"
    )
    for w64, w32 in zip(s64.weights, s32.weights, strict=True):
        assert (w32.double() - w64).norm() / w64.norm() < 1e-3
    # and the memory is alive at the end (not collapsed to M(x) = x, not exploded)
    assert 0.1 < s64.weights[0].norm() < 1e3


def test_library_default_config_stays_finite_on_unit_gaussian_input():
    # regression: lr_init 0.02 (the first default) diverged to NaN here within ~500 tokens
    torch.manual_seed(0)
    mem = NeuralMemory(MemoryConfig()).double()  # every default: dim 256, chunk 64, depth 2
    x = torch.randn(1, 1024, 256, generator=torch.Generator().manual_seed(1), dtype=DT)
    with torch.no_grad():
        y, state = mem(x)
    assert torch.isfinite(y).all(), "NaN/Inf in the outputs"
    assert max(w.norm() for w in state.weights) < 1e3, "the memory's weights exploded"


# --------------------------------------------------------------------------------------------------
# autograd across calls, and outer-loop training


def test_detach_cuts_the_graph():
    mem = make()
    x1 = rand_x(2, 9).requires_grad_()
    x2 = rand_x(2, 6, seed=2)
    _, s1 = mem(x1)
    y_attached, _ = mem(x2, s1)
    (g_attached,) = torch.autograd.grad(y_attached.square().sum(), [x1])
    assert g_attached.abs().max() > 0

    _, s1 = mem(x1)
    y_detached, _ = mem(x2, s1.detach())
    (g_detached,) = torch.autograd.grad(y_detached.square().sum(), [x1], allow_unused=True)
    assert g_detached is None
    assert all(not t.requires_grad for t in s1.detach().tensors().values())
    torch.testing.assert_close(y_detached, y_attached, rtol=0, atol=0)  # same values, no graph


def test_training_end_to_end_reduces_loss_and_reaches_inner_parameters():
    """Outer loop through the inner updates: recall values written earlier in the sequence."""
    torch.manual_seed(0)
    dim, pairs = 8, 12
    mem = NeuralMemory(
        MemoryConfig(dim=dim, heads=2, depth=2, expansion=2.0, chunk_size=8)
    ).double()
    opt = torch.optim.Adam(mem.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(5)

    def batch():
        # copy task: a random sequence, then the same sequence again; the loss is on the
        # second copy, where the target is the token itself seen `pairs` steps earlier
        seq = torch.randn(4, pairs, dim, generator=g, dtype=DT)
        return torch.cat([seq, seq], dim=1), seq

    def loss_fn():
        x, target = batch()
        y, _ = mem(x)
        return (y[:, pairs:] - target).pow(2).mean()

    fixed = torch.Generator().manual_seed(123)
    x_eval = torch.randn(4, pairs, dim, generator=fixed, dtype=DT)

    def eval_loss():
        with torch.no_grad():
            y, _ = mem(torch.cat([x_eval, x_eval], dim=1))
            return (y[:, pairs:] - x_eval).pow(2).mean().item()

    before = eval_loss()
    first_grads = None
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        if first_grads is None:
            first_grads = {n: p.grad.detach().clone() for n, p in mem.named_parameters()}
        opt.step()
    after = eval_loss()
    assert after < 0.75 * before, (before, after)  # 1.07 -> 0.60 when written
    for name in (
        "memory_init.0",
        "memory_init.1",
        "to_gates.weight",
        "to_gates.bias",
        "conv_weight",
    ):
        assert first_grads[name].abs().max() > 0, f"no gradient reached {name}"


# --------------------------------------------------------------------------------------------------
# bad input: clear errors


def test_keyword_construction_equals_config():
    a = NeuralMemory(dim=12, heads=3, chunk_size=5)
    b = NeuralMemory(MemoryConfig(dim=12, heads=3, chunk_size=5))
    assert a.config == b.config
    assert NeuralMemory(MemoryConfig(dim=12, heads=3), chunk_size=7).config.chunk_size == 7


def test_chunk_size_below_one_in_config():
    with pytest.raises(ValueError, match=r"MemoryConfig\.chunk_size must be an integer >= 1, got 0"):
        NeuralMemory(dim=8, chunk_size=0)
    with pytest.raises(ValueError, match=r"MemoryConfig\.chunk_size must be an integer >= 1, got -3"):
        NeuralMemory(MemoryConfig(dim=8), chunk_size=-3)


@pytest.mark.parametrize(
    ("x", "exc", "pattern"),
    [
        (torch.randn(5, 12, dtype=DT), ValueError, r"shape \(batch, time, dim=12\)"),
        (torch.randn(1, 2, 5, 12, dtype=DT), ValueError, r"shape \(batch, time, dim=12\)"),
        (torch.randn(2, 5, 13, dtype=DT), ValueError, r"dim=12"),
        (torch.zeros(2, 5, 12, dtype=torch.int64), TypeError, "x must be a floating-point tensor, got dtype torch.int64"),
        (torch.zeros(2, 5, 12, dtype=torch.bool), TypeError, "x must be a floating-point tensor, got dtype torch.bool"),
        (torch.randn(0, 5, 12, dtype=DT), ValueError, "x must have batch size >= 1"),
        ([[0.0] * 12], TypeError, "x must be a torch.Tensor, got list"),
    ],
    ids=["rank2", "rank4", "last-dim", "int", "bool", "empty-batch", "list"],
)
def test_bad_input(x, exc, pattern):
    mem = make()
    with pytest.raises(exc, match=pattern):
        mem(x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(bad):
    mem = make()
    x = rand_x(2, 9)
    x[1, 4, 3] = bad
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        mem(x)


def test_bad_backend():
    with pytest.raises(ValueError, match=r"backend must be one of 'chunked', 'recurrent', got 'parallel'"):
        make()(rand_x(1, 3), backend="parallel")


@pytest.mark.parametrize(
    ("other", "pattern"),
    [
        ({"heads": 2}, r"state does not fit this memory: weights \[\(2, 2, "),
        ({"depth": 3}, r"state does not fit this memory: weights .*, expected \[\(2, 3, 4, 8\), \(2, 3, 8, 4\)\]"),
        ({"depth": 1}, r"state does not fit this memory: weights \[\(2, 3, 4, 4\)\]"),
        ({"expansion": 3.0}, r"state does not fit this memory: weights \[\(2, 3, 4, 12\)"),
        ({"chunk_size": 6}, r"state.chunk_size=6 but config.chunk_size=5"),
    ],
)
def test_state_from_another_config(other, pattern):
    mem = make()
    other_mem = make(**other)
    with torch.no_grad():
        _, foreign = other_mem(rand_x(2, 7))
    with pytest.raises(ValueError, match=pattern):
        mem(rand_x(2, 4), foreign)


def test_state_of_another_batch_size_dtype_or_type():
    mem = make()
    with torch.no_grad():
        _, state = mem(rand_x(2, 7))
    with pytest.raises(ValueError, match=r"state does not fit this memory: .*\(a state from a different config or batch size\)"):
        mem(rand_x(3, 4), state)
    with pytest.raises(ValueError, match=r"state dtype torch.float32 does not match x dtype torch.float64"):
        mem(rand_x(2, 4), state.to(torch.float32))
    with pytest.raises(TypeError, match=r"state must be a MemoryState or None, got dict"):
        mem(rand_x(2, 4), state.tensors())


def test_init_state_rejects_bad_batch_size():
    mem = make()
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=rf"batch_size must be an integer >= 1, got {bad!r}"):
            mem.init_state(bad)


def test_state_from_another_conv_kernel():
    """Same memory shapes, different conv_kernel: the carried conv tail does not fit."""
    mem = make(conv_kernel=4)
    with torch.no_grad():
        _, foreign = make(conv_kernel=2)(rand_x(2, 7))
    with pytest.raises(ValueError, match=r"state.query_tail has shape \(2, 1, 12\), expected \(2, 3, 12\) \(a state from a memory with another conv_kernel"):
        mem(rand_x(2, 4), foreign)


# every pair of these configs differs; each runs and each state is consumed by its own module only
@pytest.mark.parametrize(("a", "b"), list(itertools.combinations([1, 2, 3], 2)))
def test_depth_mismatch_pairs(a, b):
    with torch.no_grad():
        _, s = make(depth=a)(rand_x(1, 3))
    with pytest.raises(ValueError, match=r"^state does not fit this memory: weights"):
        make(depth=b)(rand_x(1, 3), s)
