"""ATLAS' memories (omeganet, atlas presets) through the rest of the library: every model
architecture in pieces (tests/models covers every preset), titans train and its checkpoint, the
HF extra, the explorer's preset menu and its recall curve."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import PRESETS, preset
from titans_memory.explore.core_text import preset_memory, text_signals
from titans_memory.tasks import recall_vs_age


@pytest.mark.parametrize("name", ["omeganet", "atlas"])
def test_explorer_menu_signals_and_recall(name):
    assert name in PRESETS  # the explorer's menu is the preset registry
    signals = text_signals(preset_memory(name, dim=16), "abc abd abc")
    assert signals.surprise.shape == (11,) and bool((signals.surprise >= 0).all())
    curve = recall_vs_age(name, pairs=24, head_dim=8, trials=2)
    assert curve.cosine.shape == (24,)
    assert bool(torch.isfinite(torch.as_tensor(curve.cosine)).all())


def test_omeganet_recalls_at_its_initial_gates():
    """Mean cosine over the 24 ages, untrained, at the initial gates, measured: titans 0.17, omeganet
    0.51, atlas 0.04 (Muon spreads each step over every singular direction: at theta = 0.01 one
    pair's share is small; not asserted)."""
    assert recall_vs_age("omeganet", pairs=24, head_dim=8, trials=2).cosine.mean() > 0.3


def test_train_checkpoint_and_hf_roundtrip(tmp_path):
    transformers = pytest.importorskip("transformers")
    import titans_memory.hf as thf
    from titans_memory.training.checkpoint import load_model
    from titans_memory.training.config import TrainConfig
    from titans_memory.training.loop import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"{i}.txt").write_text(f"key {i} value {i * 7}\n" * 40)
    config = TrainConfig(arch="mal", memory_preset="atlas", dim=16, heads=2, depth=2, window=16, segment=16,
                         memory_chunk=8, seq_len=32, state_segments=2, batch_size=2, steps=2, eval_every=2,
                         eval_tokens=64, eval_context=32, data=str(corpus))
    train(config, tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002"
    model, _, _ = load_model(ckpt)
    assert model.config.memory_config.algorithm == "atlas"
    x = torch.randint(1, 256, (1, 40), generator=torch.Generator().manual_seed(0))
    expected, _ = model(x)
    hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt)
    assert isinstance(hf, thf.TitansForCausalLM)
    torch.testing.assert_close(hf(x).logits, expected, rtol=0, atol=1e-6)


def test_presets_describe_atlas():
    cfg = preset("atlas", dim=32, heads=2)
    assert (cfg.algorithm, cfg.omega_window, cfg.ns_steps, cfg.feature_degree) == ("atlas", 16, 5, None)
    assert preset("omeganet").algorithm == "omeganet"
