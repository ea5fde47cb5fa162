"""The convolved SWA block (the long-context control) and the one list of architecture names."""

from __future__ import annotations

import typing

import pytest
import torch

from titans_memory.models import (
    ARCHS,
    BLOCKS,
    ConvSWABlock,
    ModelConfig,
    SWABlock,
    TitansLM,
    conv_swa_blocks,
)
from titans_memory.models.config import Arch

CFG = ModelConfig(arch="swa", vocab_size=32, dim=16, depth=2, heads=2, window=5, persistent_tokens=2)


def test_architecture_names_are_written_once():
    assert ARCHS == typing.get_args(Arch)
    assert set(BLOCKS) == set(ARCHS)


def test_the_factory_builds_conv_blocks_at_construction():
    model = TitansLM(CFG, block_factory=conv_swa_blocks(3))
    assert [type(b) for b in model.blocks] == [ConvSWABlock, ConvSWABlock]
    assert all(b.kernel == 3 for b in model.blocks)
    plain = TitansLM(CFG, block_factory=conv_swa_blocks(1))
    assert [type(b) for b in plain.blocks] == [SWABlock, SWABlock]


def test_identity_convolution_is_the_plain_swa_block():
    torch.manual_seed(0)
    conv = TitansLM(CFG, block_factory=conv_swa_blocks(4)).double()
    plain = TitansLM(CFG).double()
    state = {k: v for k, v in conv.state_dict().items() if "conv_weight" not in k}
    plain.load_state_dict(state)
    with torch.no_grad():
        for block in conv.blocks:
            block.conv_weight.zero_()
            block.conv_weight[:, -1] = 1.0  # the current token only
    x = torch.randint(0, CFG.vocab_size, (2, 23), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(conv(x)[0], plain(x)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("splits", [[23], [1, 22], [3, 4, 16], [7, 7, 9]])
def test_conv_swa_streams_exactly_for_any_split(splits):
    torch.manual_seed(2)
    model = TitansLM(CFG, block_factory=conv_swa_blocks(4)).double()
    x = torch.randint(0, CFG.vocab_size, (2, 23), generator=torch.Generator().manual_seed(3))
    full, _ = model(x)
    cache, outs, start = None, [], 0
    for n in splits:
        y, cache = model(x[:, start : start + n], cache)
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-10)


def test_gradients_reach_the_convolution():
    torch.manual_seed(4)
    model = TitansLM(CFG, block_factory=conv_swa_blocks(3)).double()
    x = torch.randint(0, CFG.vocab_size, (1, 11), generator=torch.Generator().manual_seed(5))
    model(x)[0].square().sum().backward()
    assert all(b.conv_weight.grad is not None and b.conv_weight.grad.abs().sum() > 0 for b in model.blocks)


@pytest.mark.parametrize("kernel", [0, -1, 2.0, True])
def test_bad_kernel_is_a_value_error(kernel):
    with pytest.raises(ValueError, match="kernel must be an integer >= 1"):
        conv_swa_blocks(kernel)
    with pytest.raises(ValueError, match="kernel must be an integer >= 1"):
        ConvSWABlock(CFG, kernel)


def test_conv_swa_blocks_are_for_swa_models_only():
    with pytest.raises(ValueError, match="arch='swa' models, got arch='mag'"):
        TitansLM(CFG.replace(arch="mag"), block_factory=conv_swa_blocks(3))


def test_benchmark_groups_come_from_the_model_table():
    from titans_memory.tasks.bench import ABLATIONS, ARCHITECTURES, ATLAS, MIRAS
    from titans_memory.tasks.longcontext import MODELS

    assert ARCHITECTURES == ("swa", "lmm", "mac", "mag", "mal", "hope")
    assert set(ARCHITECTURES) == set(ARCHS)
    # the rest are run when named: the full-attention baseline, MAC's options and ATLAS' memories
    others = {name for name in MODELS if name not in ARCHITECTURES + MIRAS + ABLATIONS}
    assert {MODELS[name].group for name in others} == {"baseline", "variant", "atlas"}
    assert set(ATLAS) == {name for name in others if MODELS[name].group == "atlas"}
    assert all(MODELS[name].arch in ARCHS for name in MODELS)
