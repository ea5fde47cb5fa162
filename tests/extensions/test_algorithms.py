"""Learning algorithms registered from outside the package (public API only): Nesterov momentum
with its own look-ahead gate and chunk-parallel coefficients, a Muon-style chunk-end hook on the
momentum, an algorithm without a chunk-parallel form that carries a tensor between calls and
learns its momentum as one value per head, and an Omega-style window rule with a carried tail of
keys and values. Each equals the reference operator, or a literal loop where it only has that."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from titans_memory.core import (
    ALGORITHMS,
    ChunkCoefficients,
    ChunkEnd,
    GateSpec,
    GradientDescent,
    LearningAlgorithm,
    MemoryConfig,
    MemoryState,
    NeuralMemory,
    TokenStep,
    TokenUpdate,
    register_algorithm,
)
from titans_memory.core.algorithms import accumulation_dtype, segment_products
from titans_memory.core.ops import MemoryInputs, fresh_op_state, recurrent_memory
from titans_memory.core.stability import WeightNormBound, force_gates

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-11}


class Nesterov(LearningAlgorithm):
    """Nesterov momentum with a data-dependent look-ahead gate mu_t (not built in)::

        S_t = eta_t S_{t-1} - theta_t u_t
        M_t = (1 - alpha_t) M_{t-1} + mu_t S_t - theta_t u_t

    Unrolled over a segment (D[t, s] = A_t / A_s, P[t, j] = E_t / E_j): the start momentum enters
    M_t with f_t = sum_s D[t, s] mu_s E_s, and u_j with G[t, j] = ((D diag(mu) P)[t, j] + D[t, j]) theta_j.
    """

    name = "nesterov"
    has_chunked_form = True

    def __init__(self, momentum_init: float, forget_init: float) -> None:
        self.specs = (
            GateSpec("momentum", momentum_init),
            GateSpec("forget", forget_init),
            GateSpec("lookahead", 0.5),
        )

    def gates(self):
        return self.specs

    def token_step(self, step: TokenStep) -> TokenUpdate:
        eta, retain, mu = step.log_momentum.exp(), step.log_retention.exp(), step.extra["lookahead"]
        grads = [g[:, 0] for g in step.gradient(step.anchor, step.k, step.v, step.param)]
        momentum = [eta * s - step.lr * g for s, g in zip(step.momentum, grads, strict=True)]
        weights = [retain * w + mu * s - step.lr * g for w, s, g in zip(step.weights, momentum, grads, strict=True)]
        return TokenUpdate(weights, momentum, step.anchor, step.carried)

    def chunk_coefficients(self, lr, log_retention, log_momentum, extra, dtype):
        acc = accumulation_dtype(dtype)
        lr, log_retention, log_momentum, mu = (t.to(acc) for t in (lr, log_retention, log_momentum, extra["lookahead"]))
        decay, D = segment_products(log_retention)
        carry, P = segment_products(log_momentum)
        f = (D @ (mu * carry).unsqueeze(-1)).squeeze(-1)
        G = (D @ (mu.unsqueeze(-1) * P) + D) * lr.unsqueeze(-2)
        return ChunkCoefficients(*(t.to(dtype) for t in (decay, f, carry, G, P)))

    def norm_bound_step(self, bound_s, bound_m, lr, gates, tau):
        bound_s = gates["momentum"] * bound_s + lr * tau
        return bound_s, (1 - gates["forget"]) * bound_m + gates["lookahead"] * bound_s + lr * tau


@dataclass(frozen=True)
class ClippedMomentum(GradientDescent):
    """Titans' rule whose momentum is pulled back into a ball at every chunk end: the shape of a
    Muon-style step (a transform of the momentum at chunk ends), as a hook."""

    radius: float = 0.02

    def chunk_end(self, end: ChunkEnd) -> ChunkEnd:
        clipped = []
        for s in end.momentum:
            norm = s.flatten(1).norm(dim=1)[:, None, None]
            clipped.append(s * torch.clamp(self.radius / norm.clamp_min(1e-30), max=1.0))
        return end._replace(momentum=clipped)


class SurpriseScaled(LearningAlgorithm):
    """Momentum with its own learned decay (one value per head, not data-dependent), whose steps
    shrink with a running average of the surprise, carried between calls. No chunk-parallel form::

        e_t = 0.9 e_{t-1} + 0.1 ||u_t||,   S_t = eta S_{t-1} - theta_t u_t / (1 + e_t),
        M_t = (1 - alpha_t) M_{t-1} + S_t
    """

    name = "surprise_scaled"

    def gates(self):
        return (GateSpec("momentum", 0.8, data_dependent=False), GateSpec("forget", 0.01))

    def carried_shapes(self, layer_shapes, dim):
        return {"surprise_ema": ()}

    def token_step(self, step: TokenStep) -> TokenUpdate:
        grads = [g[:, 0] for g in step.gradient(step.anchor, step.k, step.v, step.param)]
        norm = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (N,)
        ema = 0.9 * step.carried["surprise_ema"] + 0.1 * norm
        rate = step.lr / (1 + ema[:, None, None])
        eta, retain = step.log_momentum.exp(), step.log_retention.exp()
        momentum = [eta * s - rate * g for s, g in zip(step.momentum, grads, strict=True)]
        weights = [retain * w + s for w, s in zip(step.weights, momentum, strict=True)]
        return TokenUpdate(weights, momentum, step.anchor, {"surprise_ema": ema})


class TwoTokenWindow(LearningAlgorithm):
    """An Omega-style rule over a window of two tokens (ATLAS's shape, window c = 2): the step is
    the weighted sum of the gradients of the current and the previous token's loss, both at the
    anchor, with data-dependent weights gamma_t; the previous token's key, value and weight are a
    tail carried between calls (the interface an Omega rule needs: an extra per-token gate and
    carried tensors)::

        u_t = gamma_{t-1} grad l(anchor; k_{t-1}, v_{t-1}) + gamma_t grad l(anchor; k_t, v_t)
        S_t = eta_t S_{t-1} - theta_t u_t,   M_t = (1 - alpha_t) M_{t-1} + S_t

    (a fresh stream's tail has gamma = 0). The attentional bias must have no parameter.
    """

    name = "two_token_window"

    def gates(self):
        return (GateSpec("momentum", 0.5), GateSpec("forget", 0.01), GateSpec("window_weight", 0.5))

    def carried_shapes(self, layer_shapes, dim):
        return {"tail_k": (1, dim), "tail_v": (1, dim), "tail_weight": (1,)}

    def token_step(self, step: TokenStep) -> TokenUpdate:
        keys = torch.cat([step.carried["tail_k"], step.k], dim=1)  # (N, 2, d)
        values = torch.cat([step.carried["tail_v"], step.v], dim=1)
        weight = torch.cat([step.carried["tail_weight"], step.extra["window_weight"][:, :, 0]], dim=1)  # (N, 2)
        grads = step.gradient(step.anchor, keys, values, None)  # (N, 2, d_in, d_out) per layer
        u = [(weight[:, :, None, None] * g).sum(1) for g in grads]
        eta, retain = step.log_momentum.exp(), step.log_retention.exp()
        momentum = [eta * s - step.lr * x for s, x in zip(step.momentum, u, strict=True)]
        weights = [retain * w + s for w, s in zip(step.weights, momentum, strict=True)]
        tail = {"tail_k": step.k, "tail_v": step.v, "tail_weight": step.extra["window_weight"][:, :, 0]}
        return TokenUpdate(weights, momentum, step.anchor, tail)


@pytest.fixture
def registered():
    register_algorithm("nesterov", lambda config: Nesterov(config.momentum_init, config.forget_init))
    register_algorithm("clipped_momentum", lambda config: ClippedMomentum(forget=config.forget))
    register_algorithm("surprise_scaled", lambda config: SurpriseScaled())
    register_algorithm("two_token_window", lambda config: TwoTokenWindow())
    yield
    for name in ("nesterov", "clipped_momentum", "surprise_scaled", "two_token_window"):
        ALGORITHMS.pop(name)


def _memory(algorithm: str, **overrides) -> NeuralMemory:
    torch.manual_seed(0)
    cfg = MemoryConfig(**{"dim": 8, "heads": 2, "expansion": 2.0, "chunk_size": 4, "algorithm": algorithm, **overrides})
    mem = NeuralMemory(cfg).to(DT)
    with torch.no_grad():  # data-dependent gates that really vary, and larger steps
        mem.to_gates.weight.mul_(5.0)
        mem.to_gates.bias.add_(1.0)
    return mem


def _x(T: int = 19, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, T, 8, generator=torch.Generator().manual_seed(seed), dtype=DT)


@pytest.mark.parametrize("backend", ["chunked", "chunked_checkpoint"])
@pytest.mark.parametrize(("depth", "chunk_size"), [(2, 4), (1, 3), (2, 1)])
def test_nesterov_runs_exactly_in_the_fast_path(registered, compare_with_reference, backend, depth, chunk_size):
    mem = _memory("nesterov", depth=depth, chunk_size=chunk_size)
    assert mem._gate_names == ("lr", "momentum", "forget", "lookahead")
    compare_with_reference(mem, _x(), backend)


def test_nesterov_is_what_it_says(registered):
    """The look-ahead really acts: with mu = 0 on every token the rule is plain gradient descent
    on the momentum-free step, which the built-in 'no_momentum' rule computes from the same gates."""
    mem = _memory("nesterov", depth=1, chunk_size=1, max_step_norm=None)
    heads = mem.config.heads
    with torch.no_grad():
        rows = slice(3 * heads, 4 * heads)  # the look-ahead gate's rows: lr, momentum, forget, lookahead
        mem.to_gates.weight[rows] = 0.0
        mem.to_gates.bias[rows] = -60.0  # mu = sigmoid(-60) ~ 1e-26
    plain = _memory("no_momentum", depth=1, chunk_size=1, max_step_norm=None, momentum=False)
    with torch.no_grad():
        for name in ("lr", "forget"):
            i, j = mem._gate_names.index(name), plain._gate_names.index(name)
            plain.to_gates.weight[j * heads : (j + 1) * heads] = mem.to_gates.weight[i * heads : (i + 1) * heads]
            plain.to_gates.bias[j * heads : (j + 1) * heads] = mem.to_gates.bias[i * heads : (i + 1) * heads]
        for a, b in zip(plain.parameters(), mem.parameters(), strict=False):
            if a.shape == b.shape and a is not plain.to_gates.weight and a is not plain.to_gates.bias:
                a.copy_(b)
    x = _x(9)
    y_n, s_n = mem(x, backend="chunked")
    y_p, s_p = plain(x, backend="chunked")
    torch.testing.assert_close(y_n, y_p, **TOL)
    for a, b in zip(s_n.weights, s_p.weights, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_nesterov_declares_a_true_step_bound(registered):
    mem = _memory("nesterov", chunk_size=4)
    force_gates(mem, lr=mem.config.max_lr, momentum=0.99)
    x = _x(64, seed=3) * 10
    state = mem.init_state(2, dtype=DT)
    bound = WeightNormBound(mem, state)
    with torch.no_grad():
        for piece in x.split(16, dim=1):
            _, state = mem(piece, state)
            b = bound.update(piece)
            norms = torch.stack([w.flatten(2).norm(dim=-1) for w in state.weights]).norm(dim=0)
            assert (norms <= b * (1 + 1e-9)).all()
    # the bound is the algorithm's own: after one token, b^M = (1 - alpha) ||M_0|| + (mu + 1) theta tau
    fresh = mem.init_state(2, dtype=DT)
    one = WeightNormBound(mem, fresh).update(x[:, :1])
    g = mem.gates(x[:, :1])
    m0 = torch.stack([w.flatten(2).norm(dim=-1) for w in fresh.weights]).norm(dim=0)
    tau = mem.config.max_step_norm
    want = (1 - g.forget[..., 0]) * m0 + (g.extra["lookahead"][..., 0] + 1) * g.lr[..., 0] * tau
    torch.testing.assert_close(one, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["chunked", "chunked_checkpoint"])
def test_a_chunk_end_hook_on_the_momentum_runs_exactly(registered, compare_with_reference, backend):
    mem = _memory("clipped_momentum", chunk_size=3)
    compare_with_reference(mem, _x(17), backend)
    _, state = mem(_x(12).detach())  # ends on a chunk end: every momentum inside the ball
    assert all((s.flatten(2).norm(dim=-1) <= 0.02 * (1 + 1e-12)).all() for s in state.momentum)
    _, free = _memory("titans", chunk_size=3)(_x(12).detach())
    assert any((s.flatten(2).norm(dim=-1) > 0.021).any() for s in free.momentum)  # the hook really acted


def test_an_algorithm_without_a_chunked_form_runs_on_the_reference(registered, compare_with_reference, tmp_path):
    mem = _memory("surprise_scaled")
    assert mem._gate_names == ("lr", "forget") and set(mem.static_gates) == {"momentum"}
    compare_with_reference(mem, _x(), "recurrent", seeds=(0, 1, 2))
    with pytest.raises(TypeError, match=r"cannot run the learning algorithm 'surprise_scaled'.*'recurrent' backend"):
        mem(_x(), backend="chunked")
    # the carried tensor is in the state, (batch, heads), saved and loaded with it
    _, state = mem(_x(7), backend="recurrent")
    assert set(state.carried) == {"surprise_ema"} and state.carried["surprise_ema"].shape == (2, 2)
    assert (state.carried["surprise_ema"] > 0).all()
    state.detach().save(tmp_path / "s.safetensors")
    loaded = MemoryState.load(tmp_path / "s.safetensors")
    torch.testing.assert_close(loaded.carried["surprise_ema"], state.carried["surprise_ema"], rtol=0, atol=0)
    y1, _ = mem(_x(5, seed=4), loaded, backend="recurrent")
    y2, _ = mem(_x(5, seed=4), state.detach(), backend="recurrent")
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    # a state with a field this memory does not expect, or without one it needs: a clear error
    titans = _memory("titans")
    with pytest.raises(ValueError, match=r"state.carried has the field 'surprise_ema', which this memory does not expect"):
        titans(_x(5), loaded.replace(chunk_size=4))
    with pytest.raises(ValueError, match=r"state.carried\['surprise_ema'\] has shape None"):
        mem(_x(5), titans.init_state(2, dtype=DT), backend="recurrent")


def test_registry_errors(registered):
    # the built-ins first, then whatever the package and this module registered
    with pytest.raises(ValueError, match=r"unknown algorithm 'omega'; registered: titans, no_momentum, decayed_gradient, .*omeganet, atlas.*nesterov"):
        MemoryConfig(algorithm="omega")
    with pytest.raises(ValueError, match=r"register_algorithm: 'titans' is already registered"):
        register_algorithm("titans", lambda config: SurpriseScaled())
    with pytest.raises(ValueError, match=r"algorithm='titans' is gradient descent with momentum: it needs momentum=True"):
        MemoryConfig(algorithm="titans", momentum=False)
    register_algorithm("bad_gate", lambda config: Nesterov(0.9, 1.5))
    try:
        with pytest.raises(ValueError, match=r"algorithm 'bad_gate': gate 'forget' init must lie in \(0.0, 1.0\)"):
            MemoryConfig(algorithm="bad_gate")
    finally:
        ALGORITHMS.pop("bad_gate")


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_a_window_rule_with_a_carried_tail_streams_exactly(registered, compare_with_reference, chunk_size):
    mem = _memory("two_token_window", chunk_size=chunk_size)
    compare_with_reference(mem, _x(), "recurrent", seeds=(0, 1, 2))
    _, state = mem(_x(6), backend="recurrent")
    assert state.carried["tail_k"].shape == (2, 2, 1, 4) and state.carried["tail_weight"].shape == (2, 2, 1)


def test_the_window_rule_is_what_it_says(registered):
    """Matrix memory, token rule, l2 bias, no step bound: the literal recurrence, with the
    gradient 2 k^T (k W - v) of each of the two tokens at M_{t-1}."""
    cfg = MemoryConfig(dim=4, heads=1, depth=1, chunk_size=1, algorithm="two_token_window", max_step_norm=None)
    rule = NeuralMemory(cfg).rule
    g = torch.Generator().manual_seed(7)
    N, T, d = 2, 6, 4
    q, k, v = (torch.randn(N, T, d, generator=g, dtype=DT) for _ in range(3))
    lr, alpha, eta, gamma = (torch.rand(N, T, generator=g, dtype=DT) * 0.5 for _ in range(4))
    w0 = torch.randn(N, d, d, generator=g, dtype=DT) / 2
    state = fresh_op_state([w0], rule)
    assert set(state.carried) == {"tail_k", "tail_v", "tail_weight"}
    inputs = MemoryInputs(q, k, v, lr, torch.log1p(-alpha), eta.log(), extra_gates={"window_weight": gamma})
    y, out = recurrent_memory(inputs, state, rule)

    def grad(w, t):  # d/dW ||k_t W - v_t||^2
        return 2 * k[:, t, :, None] * (torch.einsum("nd,nde->ne", k[:, t], w) - v[:, t])[:, None, :]

    w, s, reads = w0, torch.zeros_like(w0), []
    for t in range(T):
        u = gamma[:, t, None, None] * grad(w, t)
        if t:
            u = u + gamma[:, t - 1, None, None] * grad(w, t - 1)
        s = eta[:, t, None, None] * s - lr[:, t, None, None] * u
        w = (1 - alpha[:, t, None, None]) * w + s
        reads.append(torch.einsum("nd,nde->ne", q[:, t], w))
    torch.testing.assert_close(y, torch.stack(reads, dim=1), **TOL)
    torch.testing.assert_close(out.weights[0], w, **TOL)
    torch.testing.assert_close(out.carried["tail_k"], k[:, -1:], rtol=0, atol=0)
