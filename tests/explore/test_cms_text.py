"""The CMS view's data: each level writes exactly every C_l bytes; a HOPE model's CMS reads its stream."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from titans_memory.core.hope import HopeConfig
from titans_memory.explore.cms_text import cms_html, cms_signals, fresh_cms, lm_cms_inputs
from titans_memory.models import ModelConfig, TitansLM

TEXT = "The memory writes what surprises it; the slow levels keep what the fast ones forget. " * 2


def test_each_level_writes_every_c_bytes_and_drifts_in_steps():
    signals = cms_signals(TEXT, fresh_cms((3, 8, 32)))
    T = len(TEXT.encode())
    assert signals.writes.shape == signals.drift.shape == (3, T)
    for level, C in enumerate((3, 8, 32)):
        wrote = signals.writes[level] > 0
        np.testing.assert_array_equal(wrote, (np.arange(T) + 1) % C == 0)
        # between two writes the weights do not move: the drift is a staircase
        flat = ~wrote[1:]
        np.testing.assert_array_equal(signals.drift[level, 1:][flat], signals.drift[level, :-1][flat])
    page = cms_html(signals)
    assert page.count('class="cms-level"') == 3
    assert page.count("text-decoration:underline") == sum(T // C for C in (3, 8, 32))


def test_a_hope_models_cms_reads_the_blocks_stream():
    torch.manual_seed(0)
    model = TitansLM(ModelConfig(arch="hope", vocab_size=256, dim=16, heads=2, depth=2,
                                 hope=HopeConfig(chunk_size=4, cms_chunks=(2, 8))))
    ids = torch.tensor([list(TEXT[:40].encode())])
    cms, u = lm_cms_inputs(model, ids, layer=1)
    assert cms is model.blocks[1].cms and u.shape == (1, 40, 16)
    _, cache = model(ids)
    with torch.no_grad():
        _, state = cms(u)
    for a, b in zip(state.weights, cache.layers[1].hope.cms.weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    signals = cms_signals(TEXT[:40], cms, u)
    assert (signals.writes[0] > 0).sum() == 20 and (signals.writes[1] > 0).sum() == 5


def test_a_model_without_hope_is_refused():
    model = TitansLM(ModelConfig(arch="swa", vocab_size=256, dim=16, heads=2, depth=1))
    with pytest.raises(ValueError, match="no HOPE block"):
        lm_cms_inputs(model, torch.zeros(1, 3, dtype=torch.long))


def test_cms_html_colours_and_labels_each_level():
    signals = cms_signals(TEXT[:20], fresh_cms((2, 8)))
    page = cms_html(signals, [(255, 0, 0), (0, 0, 255)], label="mức {level}, C = {chunk}")
    first, second = page.split("\n")
    assert "<b>mức 1, C = 2</b>" in first and "<b>mức 2, C = 8</b>" in second
    # each level's largest drift is drawn in that level's own colour
    first, second = first.replace(" ", ""), second.replace(" ", "")
    assert "rgb(255,0,0)" in first and "rgb(255,0,0)" not in second
    assert "rgb(0,0,255)" in second and "rgb(0,0,255)" not in first
    values = [float(v) for v in re.findall(r'data-value="([^"]+)"', page)]
    assert values == signals.drift.ravel().tolist()
    with pytest.raises(ValueError, match="rgb must be one colour or one per level"):
        cms_html(signals, [(255, 0, 0)] * 3)
