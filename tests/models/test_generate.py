"""Generation: the cached token-by-token path agrees with one forward; sampling keeps its support."""

from __future__ import annotations

import pytest
import torch

from titans_memory.models import sample_logits

ALL = ["mac", "mag", "mal", "lmm", "swa"]


@pytest.mark.parametrize("arch", ALL)
def test_greedy_generation_agrees_with_one_forward(arch, kit):
    """Each greedy token is the argmax of one forward pass over everything before it."""
    model = kit.tiny_model(arch)
    prompt = kit.tokens(2, 7)
    out = model.generate(prompt, max_new_tokens=20, temperature=0)
    assert out.shape == (2, 27) and torch.equal(out[:, :7], prompt)
    logits, _ = model(out[:, :-1])
    torch.testing.assert_close(logits[:, 6:].argmax(-1), out[:, 7:], rtol=0, atol=0)


def test_generation_with_a_cache_continues_the_stream(kit):
    model = kit.tiny_model("mag")
    text = kit.tokens(1, 15)
    _, cache = model(text[:, :10])
    a = model.generate(text[:, 10:], 6, temperature=0, cache=cache)
    b = model.generate(text, 6, temperature=0)
    torch.testing.assert_close(a[:, 5:], b[:, 15:], rtol=0, atol=0)


def test_sampling_is_reproducible_with_a_generator(kit):
    model = kit.tiny_model("lmm")
    prompt = kit.tokens(1, 4)
    a = model.generate(prompt, 12, top_k=5, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 12, top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def _support(logits, n=3000, **kwargs):
    g = torch.Generator().manual_seed(0)
    rows = logits.expand(n, -1)
    return set(sample_logits(rows, generator=g, **kwargs).tolist())


def test_top_k_and_top_p_keep_exactly_their_tokens():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]], dtype=torch.float64)
    logits = probs.log()
    assert _support(logits) == {0, 1, 2, 3}
    assert _support(logits, top_k=2) == {1, 3}
    assert _support(logits, top_k=1) == {1}
    assert _support(logits, top_p=0.5) == {1}  # the first token alone reaches 0.5
    assert _support(logits, top_p=0.79) == {1, 3}  # 0.5 + 0.3 reaches 0.79
    assert _support(logits, top_p=0.81) == {1, 3, 2}
    assert _support(logits, top_k=3, top_p=0.99) == {1, 3, 2}


def test_greedy_and_temperature():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    assert sample_logits(logits, temperature=0).tolist() == [1, 0]
    # a tiny temperature concentrates all mass on the argmax
    g = torch.Generator().manual_seed(0)
    assert sample_logits(logits, temperature=1e-3, generator=g).tolist() == [1, 0]
