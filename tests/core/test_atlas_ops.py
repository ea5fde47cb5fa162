"""ATLAS pieces at the operator level (arXiv 2505.23735): the registered omeganet / atlas
algorithms run by the reference operator against closed forms and the Titans rule, the
chunk-parallel operator against the reference, Newton-Schulz, phi_p."""

from __future__ import annotations

import math

import pytest
import torch

from titans_memory.core.config import MemoryConfig
from titans_memory.core.features import exp_kernel_taylor, feature_dim, polynomial_features
from titans_memory.core.newton_schulz import MUON_COEFFICIENTS, newton_schulz
from titans_memory.core.omega import omega_chunked
from titans_memory.core.ops import MemoryInputs, chunked_memory, fresh_op_state, recurrent_memory
from titans_memory.core.rule import UpdateRule

D = torch.float64


def _rule(muon=False, **kw) -> UpdateRule:
    base = dict(dim=6, heads=1, depth=2, expansion=2.0, max_step_norm=None, input_norm=False)
    base["algorithm"] = "atlas" if muon else "omeganet"
    return UpdateRule.from_config(MemoryConfig(**{**base, **kw}))


def omega_recurrent(inputs, state, rule):
    """The reference: the library's token-by-token operator running the algorithm's token_step."""
    return recurrent_memory(inputs, state, rule)


def _case(rule: UpdateRule, n=2, T=13, seed=0, reads=True, grad=False):
    g = torch.Generator().manual_seed(seed)
    d_k, d_v = rule.architecture.layer_shapes[0][0], rule.architecture.layer_shapes[-1][1]

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=D) * scale).requires_grad_(grad)

    k = torch.nn.functional.normalize(torch.randn(n, T, d_k, generator=g, dtype=D), dim=-1).requires_grad_(grad)
    q = torch.nn.functional.normalize(torch.randn(n, T, d_k, generator=g, dtype=D), dim=-1) if reads else None
    v = r(n, T, d_v)
    # theta / c: a window of c tokens makes steps up to c times larger (and unbounded here)
    lr = ((0.05 + 0.1 * torch.rand(n, T, generator=g, dtype=D)) / rule.algorithm.window).requires_grad_(grad)
    log_ret = torch.log(1 - 0.05 * torch.rand(n, T, generator=g, dtype=D)).requires_grad_(grad) if rule.forget else None
    log_mom = torch.log(0.5 + 0.4 * torch.rand(n, T, generator=g, dtype=D)).requires_grad_(grad) if rule.momentum else None
    gamma = torch.rand(n, T, generator=g, dtype=D).requires_grad_(grad) if rule.algorithm.window > 1 else None
    param = None
    if rule.bias.param_init is not None:
        param = (0.5 + torch.rand(n, T, generator=g, dtype=D)).requires_grad_(grad)
    weights = [
        (w.to(D).expand(n, *w.shape[1:]).clone() + 0.1 * torch.randn(n, *w.shape[1:], generator=g, dtype=D)).requires_grad_(grad)
        for w in rule.architecture.init_weights(1, torch.Generator().manual_seed(seed + 1))
    ]
    state = fresh_op_state(weights, rule)
    extra = None if gamma is None else {"omega_gamma": gamma}
    return MemoryInputs(q, k, v, lr, log_ret, log_mom, param, None, extra), state


def _leaves(inputs: MemoryInputs):
    return [*inputs[:7], *(inputs.extra_gates or {}).values()]


def _cut(inputs: MemoryInputs, lo: int, hi: int) -> MemoryInputs:
    fields = [None if x is None else x[:, lo:hi] for x in inputs[:7]]
    extra = None if inputs.extra_gates is None else {k: g[:, lo:hi] for k, g in inputs.extra_gates.items()}
    return MemoryInputs(*fields, None, extra)


def _split(op, inputs: MemoryInputs, state, rule, cuts):
    ys, lo = [], 0
    for hi in [*cuts, inputs.k.shape[1]]:
        part = _cut(inputs, lo, hi)
        y, state = op(part, state, rule)
        ys.append(y)
        lo = hi
    return (None if ys[0] is None else torch.cat(ys, dim=1)), state


def _flat(y, state):
    carried = [state.carried[name] for name in sorted(state.carried)]
    return [t for t in (y, *state.weights, *state.momentum, *state.anchor, *carried) if t is not None]


def _assert_close(a, b, tol):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        if x.numel():
            assert (x - y).abs().max().item() <= tol, (x - y).abs().max().item()


@pytest.mark.parametrize("muon", [False, True])
@pytest.mark.parametrize(
    ("window", "chunk", "depth"),
    [(1, 4, 2), (3, 4, 2), (3, 5, 1), (16, 4, 2), (11, 4, 1), (4, 1, 2)],
)
def test_chunked_equals_reference(window, chunk, depth, muon):
    """Outputs, final state (window tail included) and gradients, float64, random splits."""
    rule = _rule(omega_window=window, chunk_size=chunk, depth=depth, muon=muon, ns_steps=3)
    inputs, state = _case(rule, T=13, grad=True)
    y_ref, s_ref = omega_recurrent(inputs, state, rule)
    gen = torch.Generator().manual_seed(window * 7 + chunk)
    cuts = sorted(torch.randperm(12, generator=gen)[:3].add(1).tolist())
    y_chk, s_chk = _split(omega_chunked, inputs, state, rule, cuts)
    ref, chk = _flat(y_ref, s_ref), _flat(y_chk, s_chk)
    _assert_close(ref, chk, 1e-10)
    # gradients of one scalar of everything, w.r.t. every input and the initial state
    leaves = [x for x in (*_leaves(inputs), *state.weights) if x is not None and x.requires_grad]
    probe = [torch.randn(t.shape, generator=gen, dtype=D) for t in ref]
    g_ref = torch.autograd.grad(sum((p * t).sum() for p, t in zip(probe, ref, strict=True)), leaves, allow_unused=True)
    g_chk = torch.autograd.grad(sum((p * t).sum() for p, t in zip(probe, chk, strict=True)), leaves, allow_unused=True)
    _assert_close([g for g in g_ref if g is not None], [g for g in g_chk if g is not None], 1e-10)


@pytest.mark.parametrize("op", [omega_recurrent, omega_chunked])
def test_streaming_equals_one_call(op):
    rule = _rule(omega_window=5, chunk_size=4, muon=True)
    inputs, state = _case(rule, T=17)
    one = _flat(*op(inputs, state, rule))
    for cuts in ([1], [3, 4, 11], list(range(1, 17))):
        _assert_close(one, _flat(*_split(op, inputs, state, rule, cuts)), 1e-12)


def test_write_only_equals_read_write_state():
    rule = _rule(omega_window=3, chunk_size=4)
    inputs, state = _case(rule, T=10)
    _, s_full = omega_chunked(inputs, state, rule)
    _, s_write = omega_chunked(inputs._replace(q=None), state, rule)
    _assert_close(_flat(None, s_full), _flat(None, s_write), 1e-13)
    rule = _rule(omega_window=3, chunk_size=4, muon=True)
    _, s_full = omega_chunked(inputs, state, rule)
    _, s_write = omega_chunked(inputs._replace(q=None), state, rule)
    _assert_close(_flat(None, s_full), _flat(None, s_write), 1e-13)


@pytest.mark.parametrize(("chunk", "objective"), [(1, "l2"), (4, "l2"), (3, "huber"), (5, "lp")])
def test_window_one_is_the_titans_rule(chunk, objective):
    """c = 1, no Muon, no features: the Omega operators reproduce the Titans operators (1e-12)."""
    rule = _rule(omega_window=1, chunk_size=chunk, objective=objective, max_step_norm=2.0)
    inputs, state = _case(rule, T=11)
    titans_rule = UpdateRule.from_config(
        MemoryConfig(dim=6, heads=1, depth=2, expansion=2.0, input_norm=False, chunk_size=chunk, objective=objective, max_step_norm=2.0)
    )
    assert type(titans_rule.algorithm).__name__ == "GradientDescent"
    for omega_op, titans_op in ((omega_recurrent, recurrent_memory), (omega_chunked, chunked_memory)):
        y_o, s_o = omega_op(inputs, state, rule)
        y_t, s_t = titans_op(inputs, state, titans_rule)
        _assert_close([y_o, *s_o.weights, *s_o.momentum], [y_t, *s_t.weights, *s_t.momentum], 1e-12)


def test_linear_memory_window_two_by_hand():
    """Matrix memory, c = 2, no momentum, no forgetting, chunk 1: by hand,
    W_t = W_{t-1} - theta_t sum_{i in {t-1, t}} gamma_i 2 k_i^T (k_i W_{t-1} - v_i), y_t = q_t W_t."""
    rule = _rule(depth=1, omega_window=2, chunk_size=1, momentum=False, forget=False)
    inputs, state = _case(rule, n=1, T=4)
    q, k, v, lr = inputs[:4]
    gamma = inputs.extra_gates["omega_gamma"]
    W = state.weights[0][0].clone()
    ys = []
    for t in range(4):
        step = torch.zeros_like(W)
        for i in (t - 1, t):
            if i >= 0:
                ki, vi = k[0, i : i + 1], v[0, i : i + 1]
                step += gamma[0, i] * 2 * ki.T @ (ki @ W - vi)
        W = W - lr[0, t] * step
        ys.append(q[0, t : t + 1] @ W)
    for op in (omega_recurrent, omega_chunked):
        y, s = op(inputs, state, rule)
        _assert_close([y[0], s.weights[0][0]], [torch.cat(ys), W], 1e-14)


def test_linear_memory_atlas_by_hand():
    """Matrix memory, c = 2, momentum, Muon with 2 steps, chunk 1, by hand:
    S_t = eta_t S - g_t, W_t = (1 - alpha_t) W + theta_t NS_2(S_t), NS_2 written out with the coefficients."""
    rule = _rule(depth=1, omega_window=2, chunk_size=1, muon=True, ns_steps=2)
    inputs, state = _case(rule, n=1, T=3)
    q, k, v, lr, log_ret, log_mom = inputs[:6]
    gamma = inputs.extra_gates["omega_gamma"]
    a, b, c = MUON_COEFFICIENTS
    W, S = state.weights[0][0].clone(), torch.zeros_like(state.weights[0][0])
    for t in range(3):
        g = sum(
            gamma[0, i] * 2 * k[0, i : i + 1].T @ (k[0, i : i + 1] @ W - v[0, i : i + 1]) for i in (t - 1, t) if i >= 0
        )
        S = log_mom[0, t].exp() * S - g
        X = S / (torch.linalg.matrix_norm(S) + 1e-7)  # 6 x 6: square, no transpose
        for _ in range(2):
            A = X @ X.T
            X = a * X + b * A @ X + c * A @ A @ X
        W = log_ret[0, t].exp() * W + lr[0, t] * X
    for op in (omega_recurrent, omega_chunked):
        _, s = op(inputs, state, rule)
        _assert_close([s.weights[0][0], s.momentum[0][0]], [W, S], 1e-13)


def test_newton_schulz_diagonal_closed_form():
    """On a diagonal matrix NS acts on each entry: s <- a s + b s^3 + c s^5 after s / ||s||_2."""
    s = torch.tensor([3.0, 1.0, 0.2, 0.01], dtype=D)
    out = newton_schulz(torch.diag(s), 5, eps=0.0)
    x = s / s.norm()
    a, b, c = MUON_COEFFICIENTS
    for _ in range(5):
        x = a * x + b * x**3 + c * x**5
    assert torch.allclose(out, torch.diag(x), atol=1e-14, rtol=0)
    assert 0.6 < x.min() and x.max() < 1.25  # the quintic's band, not exactly 1


def test_newton_schulz_scale_transpose_zero():
    g = torch.randn(3, 5, 8, dtype=D, generator=torch.Generator().manual_seed(0))
    out = newton_schulz(g, 5)
    assert torch.allclose(newton_schulz(7.5 * g, 5), out, atol=1e-6)  # scale invariant (up to eps)
    assert torch.allclose(newton_schulz(g.transpose(-1, -2), 5), out.transpose(-1, -2), atol=1e-14)
    sv = torch.linalg.svdvals(out)
    assert sv.min() > 0.5 and sv.max() < 1.3
    assert torch.equal(newton_schulz(torch.zeros(4, 4, dtype=D), 5), torch.zeros(4, 4, dtype=D))
    with pytest.raises(ValueError, match="steps"):
        newton_schulz(g, -1)


@pytest.mark.parametrize(("d", "p"), [(3, 1), (4, 2), (5, 3), (16, 2)])
def test_polynomial_features_are_the_taylor_exp_kernel(d, p):
    g = torch.Generator().manual_seed(d + p)
    q, k = torch.randn(2, 7, d, dtype=D, generator=g).unbind(0)
    fq, fk = polynomial_features(q, p), polynomial_features(k, p)
    assert fq.shape == (7, feature_dim(d, p)) == (7, sum(math.comb(d + i - 1, i) for i in range(p + 1)))
    assert torch.allclose((fq * fk).sum(-1), exp_kernel_taylor(q, k, p), atol=1e-12, rtol=1e-12)
    assert torch.equal(fq[:, 1 : 1 + d], q)  # the degree-1 block is x itself (a_1 = 1)


def test_bad_input_one_clear_error_each():
    with pytest.raises(ValueError, match="omega_window must be an integer >= 1"):
        MemoryConfig(omega_window=0)
    with pytest.raises(ValueError, match="feature_degree .* integer >= 1"):
        MemoryConfig(feature_degree=0)
    with pytest.raises(ValueError, match="ns_steps .* integer >= 0"):
        MemoryConfig(ns_steps=-1)
    with pytest.raises(ValueError, match="feature degree p must be an integer >= 1"):
        polynomial_features(torch.zeros(2, 3), 0)
    with pytest.raises(ValueError, match="retention='decay'"):
        MemoryConfig(algorithm="omeganet", omega_window=2, retention="lq")
    with pytest.raises(ValueError, match="need algorithm='omeganet' or 'atlas'"):
        MemoryConfig(omega_window=2)
    with pytest.raises(ValueError, match="need algorithm='omeganet' or 'atlas'"):
        MemoryConfig(feature_degree=2)


@pytest.mark.parametrize("chunk", [1, 3])
def test_attention_is_a_special_case(chunk):
    """ATLAS' claim that attention is a special case, as an identity we can check: a matrix
    memory on phi_p features, dot-product bias, no momentum, a forget gate that erases the memory
    every token (retention e^-60), window c. Then M_t = theta_t sum_{i in window} gamma_i
    phi(k_i)^T v_i, so y_t = phi(q_t) M_t is sliding-window attention with the degree-p Taylor
    exponential kernel, unnormalised (no softmax denominator):
    y_t = theta_t sum_{i=t-c+1}^{t} gamma_i (sum_{j<=p} (q_t . k_i)^j / j!) v_i."""
    p, c, T = 2, 4, 9
    rule = _rule(depth=1, dim=4, objective="dot", momentum=False, omega_window=c, chunk_size=chunk, feature_degree=p)
    g = torch.Generator().manual_seed(3)
    n, d = 2, 4
    q0 = torch.nn.functional.normalize(torch.randn(n, T, d, generator=g, dtype=D), dim=-1)
    k0 = torch.nn.functional.normalize(torch.randn(n, T, d, generator=g, dtype=D), dim=-1)
    v = torch.randn(n, T, d, generator=g, dtype=D)
    lr = torch.rand(n, T, generator=g, dtype=D)
    gamma = torch.rand(n, T, generator=g, dtype=D)
    inputs = MemoryInputs(
        polynomial_features(q0, p), polynomial_features(k0, p), v, lr, torch.full((n, T), -60.0, dtype=D), None, None,
        None, {"omega_gamma": gamma},
    )
    w0 = torch.randn(n, feature_dim(d, p), d, generator=g, dtype=D)
    state = fresh_op_state([w0], rule)
    kernel = exp_kernel_taylor(q0[:, :, None], k0[:, None, :], p)  # (n, T, T): kappa(q_t, k_i)
    t_idx, i_idx = torch.arange(T)[:, None], torch.arange(T)[None, :]
    mask = ((i_idx <= t_idx) & (i_idx > t_idx - c)).to(D)
    expected = lr[..., None] * torch.einsum("nti,ni,nid->ntd", kernel * mask, gamma, v)
    for op in (omega_recurrent, omega_chunked):
        y, _ = op(inputs, state, rule)
        torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)
