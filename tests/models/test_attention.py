"""Attention: the blocked sliding window and the MAC segment against an explicit masked softmax."""

from __future__ import annotations

import pytest
import torch

from titans_memory.models.attention import (
    Attention,
    KVCache,
    reference_attention,
    rotary,
    window_mask,
)

DIM, HEADS = 16, 2


def _attention(window: int, persistent: int, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(DIM, HEADS, window, persistent, rope_base=10000.0).double()


def _with_persistent(attn: Attention, q, q_raw, k, v, mask):
    """Plain softmax over ``[persistent | tokens]``: raw queries score the persistent keys,
    rotated queries the rotated token keys; the persistent tokens are never masked."""
    if not attn.persistent_tokens:
        return reference_attention(q, k, v, mask)
    pk, pv = attn.persistent_kv(q.shape[0], q.dtype)
    scale = attn.head_dim**-0.5
    scores = torch.cat([q_raw @ pk.transpose(-1, -2), q @ k.transpose(-1, -2)], dim=-1) * scale
    full_mask = torch.cat([torch.ones(mask.shape[0], attn.persistent_tokens, dtype=torch.bool), mask], 1)
    weights = torch.softmax(scores.masked_fill(~full_mask, float("-inf")), dim=-1)
    return weights @ torch.cat([pv, v], dim=2)


def _reference_sliding(attn: Attention, x: torch.Tensor, position: int, history: torch.Tensor | None):
    """Plain attention of ``x`` over ``[persistent | history | x]`` with the window mask written out.

    ``history`` holds the layer inputs before ``position`` (any number of them: the mask, not
    the cache, decides what is visible).
    """
    T = x.shape[1]
    full = x if history is None else torch.cat([history, x], dim=1)
    start = position - (full.shape[1] - T)
    q, k, v, q_raw = attn.project(full, start)
    qpos = torch.arange(position, position + T)
    kpos = torch.arange(start, position + T)
    mask = window_mask(qpos, kpos, attn.window)
    return attn._merge(_with_persistent(attn, q[:, :, -T:], q_raw[:, :, -T:], k, v, mask))


@pytest.mark.parametrize("window", [1, 3, 8])
@pytest.mark.parametrize("T", [1, 5, 8, 21])
@pytest.mark.parametrize("persistent", [0, 2])
def test_sliding_equals_masked_softmax(window, T, persistent):
    attn = _attention(window, persistent)
    x = torch.randn(2, T, DIM, dtype=torch.float64)
    out, cache = attn.sliding(x, None, 0)
    ref = _reference_sliding(attn, x, 0, None)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert cache.length == min(window - 1, T)


@pytest.mark.parametrize("split", [1, 4, 9])
def test_sliding_with_cache_equals_masked_softmax(split):
    """A second call continues the first: its queries see the cached keys, within the window."""
    attn = _attention(6, 2)
    x = torch.randn(2, 17, DIM, dtype=torch.float64)
    _, cache = attn.sliding(x[:, :split], None, 0)
    assert cache.length == min(5, split)
    out, _ = attn.sliding(x[:, split:], cache, split)
    ref = _reference_sliding(attn, x[:, split:], split, x[:, :split])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes", [[19], [1, 18], [7, 5, 7]])
def test_a_window_beyond_the_sequence_is_full_causal_attention(sizes):
    """A window of 65,536 over 19 tokens, in one call or in pieces with the cache: the masked
    softmax over every earlier token (the band is cut to the keys there are, not 65,536 wide)."""
    attn = _attention(1 << 16, 2)
    x = torch.randn(2, sum(sizes), DIM, dtype=torch.float64)
    outs, cache, start = [], None, 0
    for n in sizes:
        out, cache = attn.sliding(x[:, start : start + n], cache, start)
        outs.append(out)
        start += n
    ref = _reference_sliding(attn, x, 0, None)
    torch.testing.assert_close(torch.cat(outs, 1), ref, rtol=0, atol=1e-12)
    assert cache.length == x.shape[1]  # every key kept: none has left the window


def _jacobian_support(fn, x: torch.Tensor) -> torch.Tensor:
    """``(T_out, T_in)`` boolean: does output position t depend on input position s at all."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (B, T, D, B, T, D)
    return jac[0, :, :, 0].abs().sum(dim=(1, 3)) > 0


def test_window_excludes_exactly_what_it_should():
    """Output t depends on input s iff t - window < s <= t: nothing earlier, nothing later."""
    W, T = 4, 11
    attn = _attention(W, 2)
    x = torch.randn(1, T, DIM, dtype=torch.float64)
    support = _jacobian_support(lambda z: attn.sliding(z, None, 0)[0], x)
    t = torch.arange(T)
    expected = window_mask(t, t, W)
    assert torch.equal(support, expected)


def test_window_excludes_exactly_what_it_should_across_calls():
    """The same support when the keys before come from the cache."""
    W, T0, T = 4, 6, 7
    attn = _attention(W, 0)
    x = torch.randn(1, T0 + T, DIM, dtype=torch.float64)

    def second_call(z):
        _, cache = attn.sliding(z[:, :T0], None, 0)
        return attn.sliding(z[:, T0:], cache, T0)[0]

    support = _jacobian_support(second_call, x)  # (T, T0 + T)
    expected = window_mask(torch.arange(T0, T0 + T), torch.arange(T0 + T), W)
    assert torch.equal(support, expected)


@pytest.mark.parametrize("kind", ["sliding", "segment"])
def test_every_query_attends_to_the_persistent_tokens(kind):
    """Every output position depends on every persistent token, even after the window moved on."""
    attn = _attention(3, 2)
    x = torch.randn(1, 12, DIM, dtype=torch.float64)
    if kind == "sliding":
        out = attn.sliding(x, None, 0)[0]
    else:
        out = attn.segment(x, torch.randn_like(x), None, 0)[0]
    for t in range(12):
        (grad,) = torch.autograd.grad(out[0, t].sum(), attn.persistent, retain_graph=True)
        assert (grad.abs().sum(-1) > 0).all(), f"query {t} ignores a persistent token"


def test_persistent_tokens_have_no_position():
    """A query's attention to the persistent tokens is the same wherever the query sits."""
    attn = _attention(1, 1)  # window 1: a query sees itself and the persistent token only
    x = torch.randn(1, 1, DIM, dtype=torch.float64)
    a, _ = attn.sliding(x, None, 0)
    for position in (1, 37, 50_000):  # rotary turns q and its own key alike; p is not turned
        b, _ = attn.sliding(x, None, position)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_rotary_scores_depend_on_relative_position_only():
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(tq, tk):
        return (rotary(q, torch.tensor([tq]), 10000.0) * rotary(k, torch.tensor([tk]), 10000.0)).sum()

    torch.testing.assert_close(score(7, 3), score(1007, 1003), rtol=0, atol=1e-12)
    assert not torch.allclose(score(7, 3), score(7, 4))


def _reference_segment(attn: Attention, x, h, position, seg_start):
    """Plain attention over ``[persistent | h | x]`` of the segment so far, causal on both parts."""
    q, k, v, q_raw = attn.project(x, seg_start)
    hk, hv = attn.project_kv(h, seg_start)
    n = position - seg_start  # queries before the piece are context only
    L = x.shape[1]
    causal = torch.arange(L)[None, :] <= torch.arange(n, L)[:, None]
    mask = torch.cat([causal, causal], dim=1)
    keys, values = torch.cat([hk, k], 2), torch.cat([hv, v], 2)
    return attn._merge(_with_persistent(attn, q[:, :, n:], q_raw[:, :, n:], keys, values, mask))


def test_segment_attention_equals_masked_softmax_in_pieces():
    """A segment cut into pieces: each piece sees the persistent tokens and h, x up to itself."""
    attn = _attention(100, 2)
    x = torch.randn(2, 9, DIM, dtype=torch.float64)
    h = torch.randn(2, 9, DIM, dtype=torch.float64)
    seg_start = 24  # the segment starts at absolute position 24
    cache = None
    for a, b in [(0, 4), (4, 5), (5, 9)]:
        out, cache = attn.segment(x[:, a:b], h[:, a:b], cache, seg_start + a)
        ref = _reference_segment(attn, x[:, :b], h[:, :b], seg_start + a, seg_start)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert isinstance(cache[0], KVCache) and cache[0].length == cache[1].length == 9


def test_segment_memory_token_visible_from_its_own_position_only():
    """Output t depends on h_s iff s <= t: a later memory token carries a later token's query."""
    attn = _attention(100, 1)
    x = torch.randn(1, 6, DIM, dtype=torch.float64)
    h = torch.randn(1, 6, DIM, dtype=torch.float64)
    support = _jacobian_support(lambda z: attn.segment(x, z, None, 0)[0], h)
    assert torch.equal(support, torch.ones(6, 6, dtype=torch.bool).tril())
