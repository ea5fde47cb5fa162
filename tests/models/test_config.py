"""ModelConfig: validation with clear messages, and a round trip through a dict."""

from __future__ import annotations

import pytest

from titans_memory import MemoryConfig, preset
from titans_memory.models import ModelConfig, TitansLM
from titans_memory.models.blocks import MACBlock, MAGBlock, SWABlock


def test_defaults_are_valid_and_round_trip():
    cfg = ModelConfig()
    assert cfg.layers_with_memory == (0, 1, 2, 3)
    assert cfg.memory_config == MemoryConfig(dim=256, heads=4)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    custom = ModelConfig(arch="mal", dim=32, heads=2, depth=3, memory_layers=[2, 0], memory=preset("yaad", dim=32))
    assert custom.memory_layers == (2, 0) and custom.layers_with_memory == (0, 2)
    assert ModelConfig.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (dict(arch="rnn"), ValueError, "arch must be one of mac, mag, mal, lmm, swa"),
        (dict(dim=0), ValueError, "dim must be an integer >= 1"),
        (dict(window=2.5), ValueError, "window must be an integer"),
        (dict(dim=30, heads=4), ValueError, "divisible by heads"),
        (dict(dim=12, heads=4), ValueError, "even"),
        (dict(persistent_tokens=-1), ValueError, "persistent_tokens"),
        (dict(memory_layers=(0, 4)), ValueError, r"distinct indices in 0..3"),
        (dict(memory_layers=(1, 1)), ValueError, "distinct"),
        (dict(memory_layers=3), TypeError, "tuple of layer indices"),
        (dict(arch="swa", memory_layers=(0,)), ValueError, "arch='swa'"),
        (dict(memory=MemoryConfig(dim=64)), ValueError, r"memory.dim \(64\) must equal ModelConfig.dim \(256\)"),
        (dict(memory={"dim": 256}), TypeError, "MemoryConfig"),
        (dict(segment=2), ValueError, "conv_kernel - 1"),
        (dict(mlp_expansion=0), ValueError, "mlp_expansion"),
        (dict(rope_base=1.0), ValueError, "rope_base"),
    ],
)
def test_bad_configs(changes, error, match):
    with pytest.raises(error, match=match):
        ModelConfig(**changes)
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({"archh": "mac"})


def test_layers_without_memory_are_swa_blocks():
    model = TitansLM(ModelConfig(arch="mag", dim=16, heads=2, depth=3, memory_layers=(1,), memory=MemoryConfig(dim=16)))
    assert [type(b) for b in model.blocks] == [SWABlock, MAGBlock, SWABlock]
    model = TitansLM(ModelConfig(arch="mac", dim=16, heads=2, depth=2, segment=8, memory=MemoryConfig(dim=16)))
    assert [type(b) for b in model.blocks] == [MACBlock, MACBlock]
    swa = TitansLM(ModelConfig(arch="swa", dim=16, heads=2, depth=2))
    assert all(type(b) is SWABlock for b in swa.blocks)
    assert not any("memory" in name for name, _ in swa.named_parameters())
