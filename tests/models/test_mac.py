"""MAC in the paper's order: retrieve (no write), attend, write the attention output (with its residual), read."""

from __future__ import annotations

import copy

import pytest
import torch

SEGMENT = 12


def _record(block):
    """Record the attention outputs ``y`` and what the memory is written with, in call order."""
    seen = {"y": [], "written": []}
    segment = block.attn.segment

    def recording_segment(*args, **kwargs):
        y, cache = segment(*args, **kwargs)
        seen["y"].append(y.detach().clone())
        return y, cache

    block.attn.segment = recording_segment
    block.memory.register_forward_hook(lambda mod, args, out: seen["written"].append(args[0].detach().clone()))
    return seen


def _one_mac_layer(kit, seed=0):
    return kit.tiny_model("mac", seed=seed, depth=1, segment=SEGMENT)


def _faster_writes(model):
    """A copy whose memory writes with a larger inner learning rate theta (and nothing else differs)."""
    other = copy.deepcopy(model)
    mem = other.blocks[0].memory
    assert mem._gate_names[0] == "lr"
    with torch.no_grad():
        mem.to_gates.bias[: mem.config.heads] += 2.0
    return other


def test_attention_reads_the_memory_before_the_segment_writes_it(kit):
    """Segment 0's attention output cannot depend on how strongly the memory is written, since
    nothing is written before segment 0 is read; segment 1's must (segment 0 wrote it); and
    segment 0's final output must too (eq. 25 reads after the write). A MAC that writes before
    its attention reads (from the layer input, say) fails the first check."""
    model = _one_mac_layer(kit)
    other = _faster_writes(model)
    seen_a, seen_b = _record(model.blocks[0]), _record(other.blocks[0])
    toks = kit.tokens(2, 2 * SEGMENT)
    out_a, _ = model(toks)
    out_b, _ = other(toks)
    y_a, y_b = torch.cat(seen_a["y"], 1), torch.cat(seen_b["y"], 1)
    first, second = slice(0, SEGMENT), slice(SEGMENT, 2 * SEGMENT)
    torch.testing.assert_close(y_a[:, first], y_b[:, first], rtol=0, atol=0)
    assert (y_a[:, second] - y_b[:, second]).abs().max() > 1e-6
    assert (out_a[:, first] - out_b[:, first]).abs().max() > 1e-6


def test_mac_write_y_writes_the_attention_output_alone(kit):
    model = kit.tiny_model("mac", depth=1, segment=SEGMENT, mac_write="y")
    seen = _record(model.blocks[0])
    model(kit.tokens(2, 30))  # segments 12, 12, 6
    assert len(seen["y"]) == len(seen["written"]) == 3
    for y, written in zip(seen["y"], seen["written"], strict=True):
        torch.testing.assert_close(written, y, rtol=0, atol=0)


def test_a_token_retrieves_from_the_memory_as_of_its_segment_start(kit):
    """Fed one token at a time, every retrieval inside a segment uses the same memory state: the
    one the previous segment left, not one that the segment's earlier tokens have written."""
    model = _one_mac_layer(kit)
    mem = model.blocks[0].memory
    states = []
    retrieve = mem.retrieve

    def recording_retrieve(x, state=None):
        states.append(state)
        return retrieve(x, state)

    mem.retrieve = recording_retrieve
    kit.feed(model, kit.tokens(1, 2 * SEGMENT + 3), [1] * (2 * SEGMENT + 3))
    assert all(s is None for s in states[:SEGMENT])  # segment 0: the initial memory
    for seg in (1, 2):
        group = states[seg * SEGMENT : (seg + 1) * SEGMENT]
        assert all(s is group[0] for s in group)
        assert group[0].position == seg * SEGMENT  # written with every token before the segment


def test_a_segment_boundary_inside_a_call_equals_two_calls(kit):
    """One call over 3.5 segments == a call per segment, the pieces ending on the boundaries."""
    model = kit.tiny_model("mac", segment=SEGMENT)
    toks = kit.tokens(2, 42)
    full, _ = model(toks)
    pieces, _ = kit.feed(model, toks, [SEGMENT, SEGMENT, SEGMENT, 6])
    torch.testing.assert_close(pieces, full, rtol=0, atol=1e-10)


def test_mac_write_u_writes_the_segment_input(kit):
    """``mac_write="u"``: the memory is written with the normalised layer input, so after any
    number of segments its state is that of one memory call on the whole input stream."""
    model = kit.tiny_model("mac", depth=1, segment=SEGMENT, mac_write="u")
    block = model.blocks[0]
    toks = kit.tokens(2, 2 * SEGMENT + 5)
    _, cache = model(toks)
    u = block.norm(model.embed(toks))
    _, state = block.memory(u)
    for name, value in state.tensors().items():
        torch.testing.assert_close(cache.layers[0].memory.tensors()[name], value, rtol=0, atol=1e-10)


def test_by_default_mac_writes_y_plus_u_their_sum(kit):
    model = _one_mac_layer(kit)
    assert model.config.mac_write == "y+u"
    block = model.blocks[0]
    seen = _record(block)
    toks = kit.tokens(2, 30)
    model(toks)
    u = block.norm(model.embed(toks)).detach()
    y = torch.cat(seen["y"], 1)
    torch.testing.assert_close(torch.cat(seen["written"], 1), y + u, rtol=0, atol=1e-12)


@pytest.mark.parametrize("write", ["u", "y"])
def test_every_mac_write_streams_and_is_causal(kit, write):
    model = kit.tiny_model("mac", segment=SEGMENT, mac_write=write)
    toks = kit.tokens(2, 31)
    full, _ = model(toks)
    pieces, _ = kit.feed(model, toks, [5, 12, 1, 13])
    torch.testing.assert_close(pieces, full, rtol=0, atol=1e-10)
    changed = toks.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % model.config.vocab_size
    out, _ = model(changed)
    torch.testing.assert_close(out[:, :20], full[:, :20], rtol=0, atol=1e-12)
    assert (out[:, 20:] - full[:, 20:]).abs().max() > 1e-6


def test_mac_write_is_validated():
    from titans_memory.models.config import ModelConfig

    with pytest.raises(ValueError, match="mac_write"):
        ModelConfig(mac_write="x")
    cfg = ModelConfig(mac_write="u")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
