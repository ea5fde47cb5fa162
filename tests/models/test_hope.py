"""``ModelConfig(arch="hope")`` in ``TitansLM``: causal, batch-independent, streams exactly, generates."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core.hope import HopeConfig, HopeState
from titans_memory.models import ModelConfig, TitansLM
from titans_memory.models.hope import HopeBlock

TOL = {"rtol": 1e-10, "atol": 1e-10}
HOPE = HopeConfig(chunk_size=4, cms_chunks=(2, 5, 8), lr_init=0.3, retention_init=0.9, cms_lr=0.5)


def _model(kit, seed: int = 0, **changes) -> TitansLM:
    changes.setdefault("hope", HOPE)
    return kit.tiny_model("hope", seed, memory=None, **changes)


def test_every_memory_layer_is_a_hope_block(kit):
    model = _model(kit, memory_layers=(1,))
    assert [type(b).__name__ for b in model.blocks] == ["SWABlock", "HopeBlock"]
    assert isinstance(_model(kit).blocks[0], HopeBlock)


def test_causal_changing_token_t_changes_no_earlier_logit(kit):
    model = _model(kit)
    toks = kit.tokens(2, 21)
    logits, _ = model(toks)
    for t in (0, 7, 20):
        other = toks.clone()
        other[:, t] = (other[:, t] + 1) % kit.VOCAB
        changed, _ = model(other)
        torch.testing.assert_close(changed[:, :t], logits[:, :t], rtol=0, atol=0)
        assert (changed[:, t:] - logits[:, t:]).abs().max() > 1e-8


def test_batch_independence(kit):
    model = _model(kit)
    toks = kit.tokens(3, 17)
    logits, _ = model(toks)
    for b in range(3):
        alone, _ = model(toks[b : b + 1])
        torch.testing.assert_close(alone, logits[b : b + 1], **TOL)


@pytest.mark.parametrize("sizes", [[1] * 23, [3, 4, 1, 9, 6], [8, 15], [22, 1]])
def test_pieces_and_token_by_token_equal_one_call(sizes, kit):
    model = _model(kit)
    toks = kit.tokens(2, 23)
    whole, cache = model(toks)
    pieces, cache2 = kit.feed(model, toks, sizes)
    torch.testing.assert_close(pieces, whole, **TOL)
    for a, b in zip(cache.layers, cache2.layers, strict=True):
        ta, tb = a.hope.tensors(), b.hope.tensors()
        assert ta.keys() == tb.keys()
        for name in ta:
            torch.testing.assert_close(ta[name], tb[name], **TOL)


@pytest.mark.parametrize("self_modifying", [True, False])
@pytest.mark.parametrize("dgd", [True, False])
def test_ablations_stream_exactly(self_modifying, dgd, kit):
    hope = HopeConfig(chunk_size=3, cms_chunks=(4,), self_modifying=self_modifying, dgd=dgd)
    model = _model(kit, hope=hope)
    toks = kit.tokens(1, 14)
    torch.testing.assert_close(kit.feed(model, toks, [5, 2, 7])[0], model(toks)[0], **TOL)


def test_cache_size_does_not_grow_and_detach_cuts_the_graph(kit):
    model = _model(kit)
    _, short = model(kit.tokens(1, 10))
    _, long = model(kit.tokens(1, 50))  # the same phase of every chunk: 10 = 50 (mod 4, 5, 8)
    assert short.nbytes() == long.nbytes() > 0
    assert all(t.grad_fn is None for lc in long.detach().layers for t in lc.tensors())


def test_the_cache_state_saves_and_continues(kit, tmp_path):
    model = _model(kit)
    toks = kit.tokens(1, 19)
    whole, _ = model(toks)
    _, cache = model(toks[:, :11])
    for i, lc in enumerate(cache.layers):
        lc.hope.save(tmp_path / f"{i}.safetensors")
    layers = tuple(type(lc)(hope=HopeState.load(tmp_path / f"{i}.safetensors")) for i, lc in enumerate(cache.layers))
    restored = type(cache)(cache.config, 1, 11, cache.dtype, cache.device, layers)
    rest, _ = model(toks[:, 11:], restored)
    torch.testing.assert_close(rest, whole[:, 11:], **TOL)


def test_gradient_reaches_every_parameter(kit):
    model = _model(kit).float()
    logits, _ = model(kit.tokens(2, 20))
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_generate_continues_greedily_as_one_call(kit):
    model = _model(kit)
    prompt = kit.tokens(2, 6)
    out = model.generate(prompt, max_new_tokens=9, temperature=0)
    assert out.shape == (2, 15)
    logits, _ = model(out[:, :-1])
    torch.testing.assert_close(out[:, 6:], logits[:, 5:].argmax(-1), rtol=0, atol=0)


def test_config_round_trip_and_errors(kit):
    cfg = kit.tiny_config("hope", memory=None, hope=HOPE)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig(arch="hope", dim=16, heads=2).hope_config == HopeConfig()
    with pytest.raises(TypeError, match="ModelConfig.hope must be a HopeConfig"):
        ModelConfig(arch="hope", dim=16, heads=2, hope={"chunk_size": 4})
    with pytest.raises(ValueError, match="strictly increasing"):
        ModelConfig(arch="hope", dim=16, heads=2, hope=HopeConfig(cms_chunks=(8, 2)))
