"""Evaluation on hand-built models (perfect: accuracy 1; guessing: chance), the task models, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from titans_memory.core.config import MemoryConfig
from titans_memory.models.blocks import ConvSWABlock
from titans_memory.tasks.longcontext import (
    MODELS,
    TaskModelConfig,
    TrainSettings,
    answer_logits,
    build_model,
    evaluate,
    learning_rate,
    memory_config,
    train_on_answers,
)
from titans_memory.tasks.mqar import MQAR_VOCAB, mqar_batch
from titans_memory.tasks.needles import KINDS, VOCAB, needle_batch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("piece", [7, 2048])
def test_perfect_model_scores_one(kind: str, piece: int, oracle) -> None:
    b = needle_batch(kind, 6, 120, seed=1, keys=5, queries=2)
    model = oracle(VOCAB.size, kind, value_length=b.targets.shape[-1])
    assert evaluate(model, b, piece=piece) == 1.0


def test_perfect_model_scores_one_on_mqar(oracle) -> None:
    b = mqar_batch(4, 96, 12, seed=2)
    assert evaluate(oracle(MQAR_VOCAB.size, "mqar", pairs=12), b, piece=10) == 1.0


def test_a_wrong_token_fails_the_whole_answer(oracle) -> None:
    b = needle_batch("word", 8, 60, seed=3)
    logits = answer_logits(oracle(VOCAB.size, "word", value_length=3), b.tokens, b.positions)  # (B, 1, 3, V)
    from titans_memory.tasks.longcontext import score

    logits[0, 0, 2] = logits[0, 0, 2].roll(1)  # the third letter of the first answer goes wrong
    right = score(logits, b)
    assert right.shape == (8, 1) and not right[0, 0] and right[1:].all()


@pytest.mark.parametrize(
    "make,chance",
    [
        (lambda: needle_batch("number", 3000, 24, seed=4, value_length=1), 1 / 10),
        (lambda: needle_batch("passkey", 3000, 24, seed=4), 1 / 100),
        (lambda: needle_batch("multikey", 500, 80, seed=4, keys=6, queries=6, value_length=1), 1 / 10),
        (lambda: mqar_batch(100, 64, 20, seed=4), 1 / 64),
    ],
)
def test_guessing_model_scores_chance(make, chance: float, guesser) -> None:
    b = make()
    assert b.chance == pytest.approx(chance)
    n = b.targets.shape[0] * b.targets.shape[1]
    acc = evaluate(guesser(max(VOCAB.size, MQAR_VOCAB.size)), b)
    assert abs(acc - chance) < 4 * math.sqrt(chance * (1 - chance) / n)


@pytest.mark.parametrize("name", ["swa", "lmm", "mac", "mal"])
def test_answer_logits_in_pieces_equal_one_call(name: str) -> None:
    cfg = TaskModelConfig(dim=16, heads=2, window=8, chunk_size=4, persistent_tokens=2)
    model = build_model(name, cfg, seed=0).double().eval()
    b = needle_batch("multikey", 2, 90, seed=5, keys=4, queries=3)
    with torch.no_grad():
        full, _ = model(b.tokens)
        pieces = answer_logits(model, b.tokens, b.positions, piece=13)
    rows = torch.arange(2)[:, None, None]
    torch.testing.assert_close(pieces, full[rows, b.positions], rtol=1e-10, atol=1e-10)


def test_conv_swa_is_causal_and_streams() -> None:
    cfg = TaskModelConfig(dim=16, heads=2, window=6, persistent_tokens=1)
    model = build_model("swa", cfg, seed=1).double()
    assert all(isinstance(b, ConvSWABlock) for b in model.blocks)
    x = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    full, _ = model(x)
    cache, outs = None, []
    for a, z in [(0, 1), (1, 4), (4, 17), (17, 40)]:
        y, cache = model(x[:, a:z], cache)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-10)
    x2 = x.clone()
    x2[:, 25:] = (x2[:, 25:] + 1) % cfg.vocab_size
    torch.testing.assert_close(model(x2)[0][:, :25], full[:, :25], rtol=0, atol=0)
    # the convolution reaches kernel - 1 tokens back beyond the window: token 3 sees token 0
    # through the keys of tokens 1..3, which a window of 1 could not
    single = build_model("swa", TaskModelConfig(dim=16, heads=2, window=1, depth=1), seed=1).double()
    x3 = x.clone()
    x3[:, 0] = (x3[:, 0] + 1) % cfg.vocab_size
    diff = (single(x3)[0] - single(x)[0]).abs().amax(dim=(0, 2))
    assert (diff[:4] > 0).all() and (diff[4:] == 0).all()


def test_models_differ_as_named() -> None:
    cfg = TaskModelConfig()
    assert memory_config(MODELS["lmm-nomom"], cfg).momentum is False
    assert memory_config(MODELS["lmm-noforget"], cfg).forget is False
    assert memory_config(MODELS["lmm-matrix"], cfg).depth == 1
    base = memory_config(MODELS["lmm"], cfg)
    assert (base.depth, base.momentum, base.forget) == (2, True, True)
    assert base.forget_init == cfg.forget_init and base.chunk_size == cfg.chunk_size
    dn = memory_config(MODELS["lmm-deltanet"], cfg)
    assert (dn.depth, dn.momentum, dn.forget, dn.lr_init) == (1, False, False, 0.25)
    assert memory_config(MODELS["lmm-moneta"], cfg).objective == "lp"
    for name, spec in MODELS.items():
        model = build_model(name, TaskModelConfig(dim=16, heads=2))
        assert model.config.arch == spec.arch
    # the same seed builds the same weights
    a, b = build_model("mal", seed=3), build_model("mal", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("gpt")


def test_training_learns_a_needle_inside_the_window() -> None:
    cfg = TaskModelConfig(dim=32, heads=2, window=32, chunk_size=8)
    model = build_model("swa", cfg, seed=0)
    rng = np.random.default_rng(0)

    def batches():
        while True:
            yield needle_batch("number", 16, 16, rng, value_length=1)

    test = needle_batch("number", 200, 16, seed=99, value_length=1)
    before = evaluate(model, test)
    result = train_on_answers(model, batches(), TrainSettings(steps=120, lr=1e-2, warmup=10))
    after = evaluate(model, test)
    assert result.steps == 120 and not result.stopped_early
    assert np.mean(result.losses[-10:]) < 0.5 * np.mean(result.losses[:10])
    assert before < 0.3 and after > 0.9  # chance is 0.1; the needle is always in the window


def test_training_stops_at_the_time_limit() -> None:
    model = build_model("swa", TaskModelConfig(dim=16, heads=2), seed=0)
    batches = iter(lambda: needle_batch("passkey", 2, 16, 0), None)
    result = train_on_answers(model, batches, TrainSettings(steps=10_000, time_limit=0.0))
    assert result.stopped_early and result.steps == 0


def test_learning_rate_schedule():
    s = TrainSettings(steps=100, lr=1.0, warmup=10)
    assert learning_rate(s, 0, 0.0) == pytest.approx(0.1) and learning_rate(s, 9, 0.0) == 1.0
    assert learning_rate(s, 55, 0.0) == pytest.approx(0.5)  # halfway through the cosine
    assert learning_rate(s, 100, 0.0) == pytest.approx(0.0, abs=1e-12)
    # with a time limit, the schedule follows whichever is further along: steps or time
    timed = TrainSettings(steps=100, lr=1.0, warmup=10, time_limit=60.0)
    assert learning_rate(timed, 20, 30.0) == pytest.approx(0.5)
    assert learning_rate(timed, 20, 60.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(timed, 55, 1.0) == pytest.approx(0.5)


class _Broken(torch.nn.Module):
    """A model whose output is NaN, or whose forward raises ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.error = error

    def forward(self, tokens, cache=None):
        if self.error is not None:
            raise self.error
        return self.w * torch.full((*tokens.shape, VOCAB.size), float("nan")), None


def test_training_that_diverges_stops_and_says_so():
    batches = iter(lambda: needle_batch("passkey", 2, 16, 0), None)
    for model in (_Broken(), _Broken(ValueError("x contains NaN or Inf"))):
        result = train_on_answers(model, batches, TrainSettings(steps=5))
        assert result.diverged and result.steps == 0 and not result.stopped_early
    with pytest.raises(ValueError, match="shape"):  # other errors are not swallowed
        train_on_answers(_Broken(ValueError("x must have shape")), batches, TrainSettings(steps=5))


def test_forget_rate_default_and_the_library_ablation():
    assert TaskModelConfig().forget_init == 5e-5
    assert memory_config(MODELS["lmm"], TaskModelConfig()).forget_init == 5e-5
    lib = memory_config(MODELS["lmm-libforget"], TaskModelConfig())
    assert lib.forget_init == MemoryConfig().forget_init == 0.005 and lib.forget


def test_attn_is_full_causal_attention_and_mac_variants_set_their_option():
    from titans_memory.tasks.longcontext import FULL_WINDOW, MODELS, build_model

    cfg = TaskModelConfig(dim=16, heads=2, window=8, chunk_size=4, persistent_tokens=1)
    attn = build_model("attn", cfg)
    assert attn.config.arch == "swa" and attn.config.window == FULL_WINDOW
    # a token far beyond the task's window still reaches the last position
    toks = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    changed = toks.clone()
    changed[0, 0] = (changed[0, 0] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, _ = attn(toks)
        b, _ = attn(changed)
    assert (a[0, -1] - b[0, -1]).abs().max() > 1e-6
    for name, write in (("mac", "y+u"), ("mac-u", "u"), ("mac-y", "y")):
        model = build_model(name, cfg)
        assert model.config.mac_write == write and model.config.segment == cfg.window
        assert MODELS[name].arch == "mac"
