"""The task generators: shapes, where the needles are, answers recoverable, determinism, chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from titans_memory.tasks.mqar import MQAR_VOCAB, mqar_answers, mqar_batch
from titans_memory.tasks.needles import KINDS, VOCAB, min_length, needle_answers, needle_batch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", [48, 129, 700])
def test_shapes_and_markers(kind: str, length: int) -> None:
    b = needle_batch(kind, 5, length, seed=3, keys=6, queries=2)
    Q = 2 if kind == "multikey" else 1
    A = 3 if kind == "word" else 2
    N = 6 if kind == "multikey" else 1
    assert b.tokens.shape == (5, length) and b.tokens.dtype == torch.int64
    assert b.positions.shape == b.targets.shape == (5, Q, A)
    assert b.needles.shape == (5, N)
    assert int(b.tokens.min()) >= 0 and int(b.tokens.max()) < VOCAB.size
    # markers appear only as the needles and the questions say
    assert ((b.tokens == VOCAB.NEEDLE).sum(1) == N).all()
    assert ((b.tokens == VOCAB.QUERY).sum(1) == Q).all()
    assert (b.tokens == VOCAB.PAD).sum() == 0
    rows = torch.arange(5)[:, None]
    assert (b.tokens[rows, b.needles] == VOCAB.NEEDLE).all()
    # the answer ends the sequence, each answer token is the target the logits before it predict
    assert int(b.positions[:, -1, -1].min()) == length - 2
    assert torch.equal(b.tokens[rows[:, :, None], b.positions + 1], b.targets)
    # the needle holds the value asked about: the tokens after the marker (and key)
    offset = 2 if kind == "multikey" else 1
    value_at = b.needles[:, :Q, None] + offset + torch.arange(A)  # (B, Q, A)
    assert torch.equal(b.tokens[rows[:, :, None], value_at], b.targets)
    assert set(b.targets.unique().tolist()) <= set(b.alphabet.tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_answers_recoverable_from_the_tokens(kind: str) -> None:
    b = needle_batch(kind, 16, 200, seed=11, keys=8, queries=3)
    assert torch.equal(needle_answers(b.tokens, kind), b.targets)


@pytest.mark.parametrize("kind", ["passkey", "number", "word"])
def test_depth_places_the_needle(kind: str) -> None:
    length, A = 300, (3 if kind == "word" else 2)
    hay = length - (1 + A)  # haystack with the needle: the question takes 1 + A tokens
    starts = [int(needle_batch(kind, 1, length, seed=0, depth=d).needles[0, 0]) for d in (0, 0.25, 0.5, 1)]
    free = hay - (1 + A)  # filler tokens: the needle takes 1 + A
    assert starts[0] == 0
    assert starts[1] == round(0.25 * free) and starts[2] == round(0.5 * free)
    assert starts[3] == free  # depth 1: the needle ends right where the question starts


def test_multikey_depth_is_the_queried_needle() -> None:
    b = needle_batch("multikey", 4, 400, seed=2, depth=0.0, keys=8, queries=1)
    assert (b.needles[:, 0] == 0).all()
    b = needle_batch("multikey", 4, 400, seed=2, depth=1.0, keys=8, queries=1)
    assert (b.needles[:, 0] == b.needles.max(1).values).all()  # the last needle of the haystack


def test_haystacks_differ_as_documented() -> None:
    passkey = needle_batch("passkey", 2, 400, seed=5, depth=1.0).tokens[:, :100]
    phrase = torch.from_numpy(np.resize(VOCAB.filler, 100))
    assert torch.equal(passkey[0], phrase) and torch.equal(passkey[1], phrase)  # a repeated phrase
    noise = needle_batch("number", 1, 2000, seed=5).tokens[0]
    digits = torch.from_numpy(VOCAB.digits)
    assert torch.isin(noise, digits).sum() > 500  # digits in the noise: only the marker tells
    words = needle_batch("word", 1, 2000, seed=5).tokens[0]
    assert (words == VOCAB.SPACE).sum() > 200
    assert torch.isin(words, torch.from_numpy(VOCAB.letters)).sum() > 1000


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_per_seed(kind: str) -> None:
    a = needle_batch(kind, 3, 150, seed=7)
    b = needle_batch(kind, 3, 150, seed=7)
    c = needle_batch(kind, 3, 150, seed=8)
    for name in ("tokens", "positions", "targets", "needles"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("kind", KINDS)
def test_min_length_is_the_shortest_that_fits(kind: str) -> None:
    n = min_length(kind, keys=3, queries=2)
    assert n == {"passkey": 6, "number": 6, "word": 8, "multikey": 5 * 4}[kind]
    batch = needle_batch(kind, 2, n, 0, keys=3, queries=2)  # no filler at all: still answerable
    assert torch.equal(needle_answers(batch.tokens, kind), batch.targets)
    with pytest.raises(ValueError, match="too short"):
        needle_batch(kind, 2, n - 1, 0, keys=3, queries=2)


def test_chance_levels() -> None:
    assert needle_batch("passkey", 1, 64, seed=0).chance == pytest.approx(1 / 100)
    assert needle_batch("number", 1, 64, seed=0, value_length=1).chance == pytest.approx(1 / 10)
    assert needle_batch("word", 1, 64, seed=0).chance == pytest.approx(16**-3)
    assert needle_batch("multikey", 1, 64, seed=0, keys=4).chance == pytest.approx(1 / 100)
    assert mqar_batch(1, 64, 8, seed=0).chance == pytest.approx(1 / 64)


def test_values_are_uniform_over_the_alphabet() -> None:
    # the chance level assumes a uniform value: check the first digit's frequencies
    b = needle_batch("passkey", 4000, 16, seed=1)
    counts = torch.bincount(b.targets[:, 0, 0] - int(VOCAB.digits[0]), minlength=10).float()
    assert counts.min() > 330 and counts.max() < 470  # 400 expected, > 3 sigma either side


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        needle_batch("haystack", 1, 64, seed=0)
    with pytest.raises(ValueError, match="too short"):
        needle_batch("multikey", 1, 30, seed=0, keys=8)
    with pytest.raises(ValueError, match="depth"):
        needle_batch("passkey", 1, 64, seed=0, depth=1.5)
    with pytest.raises(ValueError, match="queries"):
        needle_batch("multikey", 1, 200, seed=0, keys=2, queries=3)
    with pytest.raises(ValueError, match="length"):
        needle_batch("passkey", 1, 0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        needle_batch("passkey", 1, 64, seed="x")
    with pytest.raises(ValueError, match="length"):
        mqar_batch(1, 10, 8, seed=0)
    with pytest.raises(ValueError, match="pairs"):
        mqar_batch(1, 1000, 65, seed=0)


@pytest.mark.parametrize("length,pairs", [(64, 8), (256, 32), (40, 4)])
def test_mqar(length: int, pairs: int) -> None:
    b = mqar_batch(6, length, pairs, seed=4)
    assert b.tokens.shape == (6, length)
    assert b.positions.shape == b.targets.shape == (6, pairs, 1)
    keys, values = b.tokens[:, 0 : 2 * pairs : 2], b.tokens[:, 1 : 2 * pairs : 2]
    assert torch.isin(keys, torch.from_numpy(MQAR_VOCAB.keys)).all()
    assert torch.isin(values, torch.from_numpy(MQAR_VOCAB.values)).all()
    assert all(len(set(row.tolist())) == pairs for row in keys)  # distinct keys
    pos = b.positions[..., 0]
    assert (pos >= 2 * pairs).all() and (pos.diff(dim=1) > 0).all()  # after the pairs, in order
    rows = torch.arange(6)[:, None]
    # the query is a key of the pairs; its target is the value that followed it
    for r in range(6):
        table = dict(zip(keys[r].tolist(), values[r].tolist(), strict=True))
        assert [table[k] for k in b.tokens[r, pos[r]].tolist()] == b.targets[r, :, 0].tolist()
    # after the pairs: only the query keys, the rest filler 0; no value is given away
    rest = b.tokens[:, 2 * pairs :].clone()
    rest[rows, pos - 2 * pairs] = 0
    assert (rest == 0).all()
    assert torch.equal(mqar_answers(b.tokens, pairs), b.targets)
    assert torch.equal(mqar_batch(6, length, pairs, seed=4).tokens, b.tokens)
    assert not torch.equal(mqar_batch(6, length, pairs, seed=5).tokens, b.tokens)
