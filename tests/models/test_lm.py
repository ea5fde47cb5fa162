"""TitansLM: causality, batch independence, streaming == one call, gradients, the cache, bad input."""

from __future__ import annotations

import pytest
import torch

from titans_memory import PRESETS, preset
from titans_memory.models import ModelCache, TitansLM

ALL = ["mac", "mag", "mal", "lmm", "swa"]
MEMORY = ["mac", "mag", "mal", "lmm"]
TOL = dict(rtol=0, atol=1e-10)


# --- causality and batch independence ---------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_causal_changing_token_t_changes_no_earlier_logit(arch, kit):
    model = kit.tiny_model(arch)
    toks = kit.tokens(2, 40)
    base, _ = model(toks)
    for t in (0, 13, 25, 39):  # inside and at the edges of segments (12) and chunks (8)
        changed = toks.clone()
        changed[:, t] = (changed[:, t] + 1) % kit.VOCAB
        logits, _ = model(changed)
        torch.testing.assert_close(logits[:, :t], base[:, :t], rtol=0, atol=0)
        assert (logits[:, t] - base[:, t]).abs().max() > 1e-6  # the change itself is seen


@pytest.mark.parametrize("arch", ALL)
def test_batch_independence(arch, kit):
    model = kit.tiny_model(arch)
    toks = kit.tokens(3, 30)
    together, _ = model(toks)
    for b in range(3):
        alone, _ = model(toks[b : b + 1])
        torch.testing.assert_close(together[b : b + 1], alone, **TOL)


# --- streaming: one call == uneven pieces == token by token ------------------------------------
@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("layers", [None, (1,)], ids=["all_layers", "layer_1"])
def test_pieces_and_token_by_token_equal_one_call(arch, layers, kit):
    """Pieces of 100, 1, 1, 54, 100 cut segments (12), chunks (8) and the window (16) in the middle."""
    model = kit.tiny_model(arch, memory_layers=layers)
    toks = kit.tokens(2, 256)
    full, cache_full = model(toks)
    pieces, cache_pieces = kit.feed(model, toks, [100, 1, 1, 54, 100])
    torch.testing.assert_close(pieces, full, **TOL)
    steps, _ = kit.feed(model, toks[:, :64], [1] * 64)
    torch.testing.assert_close(steps, full[:, :64], **TOL)
    # the caches agree too: the next piece gives the same logits from either
    nxt = kit.tokens(2, 5, seed=7)
    a, _ = model(nxt, cache_full)
    b, _ = model(nxt, cache_pieces)
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("arch", MEMORY)
def test_sequence_shorter_than_a_chunk_streams_and_writes(arch, kit):
    """5 tokens, chunk 8, segment 12: pieces agree with one call, and the memory was written."""
    model = kit.tiny_model(arch)
    toks = kit.tokens(2, 5)
    full, cache = model(toks)
    pieces, _ = kit.feed(model, toks, [2, 1, 2])
    torch.testing.assert_close(pieces, full, **TOL)
    for block, lc in zip(model.blocks, cache.layers, strict=True):
        fresh = block.memory.init_state(2, dtype=torch.float64)
        assert lc.memory.position == 5
        moved = max((w - w0).abs().max().item() for w, w0 in zip(lc.memory.weights, fresh.weights, strict=True))
        assert moved > 1e-8, "a piece shorter than a chunk must still write the memory"


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("arch", MEMORY)
def test_every_preset_in_every_architecture_streams(arch, name, kit):
    memory = preset(name, dim=16, heads=2, chunk_size=4)
    model = kit.tiny_model(arch, memory=memory, segment=6, window=5)
    toks = kit.tokens(1, 20)
    full, _ = model(toks)
    pieces, _ = kit.feed(model, toks, [7, 1, 12])
    torch.testing.assert_close(pieces, full, **TOL)


# --- the cache ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_cache_size_does_not_grow_with_length(arch, kit):
    model = kit.tiny_model(arch)
    toks = kit.tokens(1, 146)
    with torch.no_grad():
        _, c1 = model(toks[:, :50])
        _, c2 = model(toks, None)
    # 50 and 146 tokens: both past the window (16), at the same offset in segment (12) and chunk (8)
    assert c1.nbytes() == c2.nbytes() > 0
    assert c2.position == 146


@pytest.mark.parametrize("arch", ALL)
def test_cache_detach(arch, kit):
    model = kit.tiny_model(arch)
    toks = kit.tokens(2, 30)
    _, cache = model(toks[:, :20])
    held = [t for lc in cache.layers for t in lc.tensors()]
    assert any(t.requires_grad for t in held)
    detached = cache.detach()
    assert not any(t.requires_grad for lc in detached.layers for t in lc.tensors())
    a, _ = model(toks[:, 20:], cache)
    b, _ = model(toks[:, 20:], detached)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert detached.position == cache.position == 20


# --- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_gradient_reaches_every_parameter(arch, kit):
    model = kit.tiny_model(arch)
    toks = kit.tokens(2, 40)
    logits, _ = model(toks[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, kit.VOCAB), toks[:, 1:].reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().max() > 0, f"{name} has an all-zero gradient"


# --- bad input ------------------------------------------------------------------------------------
def test_bad_tokens(kit):
    model = kit.tiny_model("mag")
    with pytest.raises(ValueError, match="token ids must lie in 0..22"):
        model(torch.tensor([[1, 23]]))
    with pytest.raises(ValueError, match="token ids must lie"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1, 2, 3]])


def test_bad_cache(kit):
    model = kit.tiny_model("mal")
    _, cache = model(kit.tokens(2, 10))
    with pytest.raises(ValueError, match="batch size 3"):
        model(kit.tokens(3, 4), cache)
    other = kit.tiny_model("mal", window=8)
    with pytest.raises(ValueError, match="another config"):
        other(kit.tokens(2, 4), cache)
    with pytest.raises(TypeError, match="ModelCache"):
        model(kit.tokens(2, 4), {"position": 10})
    with pytest.raises(ValueError, match="dtype"):
        model(kit.tokens(2, 4), cache.to(dtype=torch.float32))


def test_generate_bad_arguments(kit):
    model = kit.tiny_model("lmm")
    with pytest.raises(ValueError, match="prompt must hold at least one token"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(kit.tokens(1, 3), -1)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(kit.tokens(1, 3), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(kit.tokens(1, 3), 2, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(kit.tokens(1, 3), 2, top_p=1.5)
    with pytest.raises(ValueError, match="token ids"):
        model.generate(torch.tensor([[99]]), 2)


def test_init_cache_is_what_forward_starts_from(kit):
    model = kit.tiny_model("mag")
    toks = kit.tokens(2, 9)
    a, _ = model(toks)
    b, _ = model(toks, model.init_cache(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert isinstance(model.init_cache(2), ModelCache)
    with pytest.raises(ValueError, match="batch_size"):
        model.init_cache(0)


def test_empty_piece_changes_nothing(kit):
    model = kit.tiny_model("mag")
    toks = kit.tokens(1, 12)
    _, cache = model(toks[:, :7])
    logits, same = model(toks[:, :0], cache)
    assert logits.shape == (1, 0, kit.VOCAB) and same.position == 7
    a, _ = model(toks[:, 7:], same)
    b, _ = model(toks[:, 7:], cache)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_config_type_is_checked():
    with pytest.raises(TypeError, match="ModelConfig"):
        TitansLM({"arch": "mac"})


@pytest.mark.parametrize("arch", ["mac", "mag", "mal", "swa"])  # the ones with attention
def test_cache_keeps_no_view_of_a_long_call(arch, kit):
    """The attention caches and MAC's last inputs own small storages, not views into the whole
    call's keys (which would keep every token of a long prompt alive)."""

    def storage_bytes(cache):
        seen = {}
        for lc in cache.layers:
            held = [lc.retrieve_inputs]
            for kv in (lc.attention, lc.memory_tokens):
                if kv is not None:
                    held += [kv.keys, kv.values]
            for t in held:
                if t is not None:
                    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return sum(seen.values())

    model = kit.tiny_model(arch)
    with torch.no_grad():
        _, short = model(kit.tokens(1, 100))
        _, long = model(kit.tokens(1, 388))  # 288 more: the same offset in window, segment, chunk
    assert storage_bytes(short) == storage_bytes(long) > 0


@pytest.mark.parametrize("arch", ALL)
def test_gradient_flows_through_the_cache_until_detached(arch, kit):
    """A loss on the second call reaches the first call's tokens through the cache (the window,
    the memory), and no longer once the cache is detached."""
    model = kit.tiny_model(arch)
    first = torch.full((1, 10), 3)  # token 3 appears only in the first call
    second = torch.full((1, 6), 5)
    _, cache = model(first)
    for detach, reached in ((False, True), (True, False)):
        model.zero_grad(set_to_none=True)
        logits, _ = model(second, cache.detach() if detach else cache)
        logits.sum().backward(retain_graph=True)
        grad_first = model.embed.weight.grad[3].abs().max().item()
        assert (grad_first > 0) == reached, (detach, grad_first)
