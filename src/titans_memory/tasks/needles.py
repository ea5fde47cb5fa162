"""Needle-in-a-haystack tasks (Titans' S-NIAH, after RULER) as seeded token sequences of any length.

Four kinds, one vocabulary (:data:`VOCAB`):

* ``"passkey"`` (S-NIAH-1): a number of ``value_length`` digits, ``[NEEDLE d1 d2 ..]``, inside
  a fixed filler phrase repeated over and over (a haystack with nothing to learn);
* ``"number"`` (S-NIAH-2): the same needle among uniformly random noise tokens, digits included,
  so only the ``NEEDLE`` marker tells the number from the noise;
* ``"word"`` (S-NIAH-3): a word of ``value_length`` letters, ``[NEEDLE l1 l2 l3]``, inside
  distractor text made of random words over the same letters, separated by ``SPACE``;
* ``"multikey"`` (multi-key needles): ``keys`` needles ``[NEEDLE key d1 ..]`` with distinct keys,
  then ``queries`` questions ``[QUERY key d1 ..]`` about some of them.

Every sequence is ``haystack (with the needles) | QUERY (key) answer``, of exactly ``length``
tokens: the answer ends the sequence, so a model fed the tokens predicts each answer token from
the one before it (teacher forcing; the argmax being right at every answer token is the same as
greedy decoding producing the answer). ``depth`` in [0, 1] places the (first queried) needle:
0 at the start of the haystack, 1 right before the query; None draws it uniformly.

Scoring (:class:`TaskBatch`): a question is right when the argmax over the answer's alphabet
(digits or letters) is right at every one of its answer tokens; the chance level is that of a
uniform guess, ``alphabet ** -value_length``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

KINDS: tuple[str, ...] = ("passkey", "number", "word", "multikey")


@dataclass(frozen=True)
class NeedleVocab:
    """Token ids of the needle tasks (one vocabulary for the four kinds, so one model learns all).

    ``PAD`` is never produced by the generators; it keeps id 0 free.
    """

    PAD: int = 0
    NEEDLE: int = 1  # "the pass key is"
    QUERY: int = 2  # "what is the pass key?"
    SPACE: int = 3  # between the words of the distractor text
    n_digits: int = 10  # values of passkey, number and multikey
    n_letters: int = 16  # values of word, and the distractor text
    n_keys: int = 16  # the keys of multikey
    n_filler: int = 8  # words of the repeated filler phrase (also in the noise of "number")

    @property
    def digits(self) -> np.ndarray:
        return np.arange(4, 4 + self.n_digits)

    @property
    def letters(self) -> np.ndarray:
        start = 4 + self.n_digits
        return np.arange(start, start + self.n_letters)

    @property
    def keys(self) -> np.ndarray:
        start = 4 + self.n_digits + self.n_letters
        return np.arange(start, start + self.n_keys)

    @property
    def filler(self) -> np.ndarray:
        start = 4 + self.n_digits + self.n_letters + self.n_keys
        return np.arange(start, start + self.n_filler)

    @property
    def size(self) -> int:
        """Number of token ids used (a model's ``vocab_size`` must be at least this)."""
        return 4 + self.n_digits + self.n_letters + self.n_keys + self.n_filler


VOCAB = NeedleVocab()


@dataclass(frozen=True)
class TaskBatch:
    """A batch of sequences with questions whose answers are scored.

    Attributes:
        tokens: ``(B, T)`` int64, what the model reads.
        positions: ``(B, Q, A)`` int64: the logits at ``positions[b, q, a]`` predict answer token
            ``a`` of question ``q`` (``Q`` questions of ``A`` tokens each per sequence).
        targets: ``(B, Q, A)`` int64: the right tokens.
        alphabet: ``(n,)`` int64: the tokens an answer is chosen among (the argmax is taken over
            these only), so a uniform guess is right with probability :attr:`chance`.
        needles: ``(B, N)`` int64: the position of each needle's first token (its marker);
            needles of multikey in the order of their keys' questions first, then the others.
            Empty ``(B, 0)`` for tasks without needles (MQAR).
        kind: the task's name.
    """

    tokens: Tensor
    positions: Tensor
    targets: Tensor
    alphabet: Tensor
    needles: Tensor
    kind: str

    @property
    def chance(self) -> float:
        """Probability that a uniform guess over ``alphabet`` gets a whole question right."""
        return float(len(self.alphabet)) ** -self.targets.shape[-1]

    def __post_init__(self) -> None:
        B, T = self.tokens.shape
        if self.positions.shape != self.targets.shape or self.positions.shape[0] != B:
            raise ValueError("TaskBatch: positions and targets must both be (B, Q, A)")
        if self.positions.numel() and not (0 <= int(self.positions.min()) and int(self.positions.max()) < T):
            raise ValueError("TaskBatch: positions must index tokens")


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _haystack(kind: str, length: int, rng: np.random.Generator, vocab: NeedleVocab) -> np.ndarray:
    """``length`` tokens of the kind's haystack."""
    if kind == "passkey":  # one fixed phrase, repeated ("The grass is green. The sky is blue. ...")
        return np.resize(vocab.filler, length)
    if kind == "number":  # noise: filler words and digits, uniformly at random
        return rng.choice(np.concatenate([vocab.filler, vocab.digits]), size=length)
    # word and multikey: distractor text, random words of 2 to 5 letters separated by SPACE
    out = np.empty(length, dtype=np.int64)
    i = 0
    while i < length:
        n = int(rng.integers(2, 6))
        word = rng.choice(vocab.letters, size=n)
        piece = np.append(word, vocab.SPACE)[: length - i]
        out[i : i + len(piece)] = piece
        i += len(piece)
    return out


def _offsets(n: int, free: int, fixed: float | None, rng: np.random.Generator) -> np.ndarray:
    """Where ``n`` needles go in a haystack with ``free`` filler tokens: the number of filler
    tokens before each needle (non-decreasing). Needle 0 is put at relative depth ``fixed``
    (None: uniform); the others uniformly. Returns offsets in the order of the needles."""
    first = rng.integers(0, free + 1) if fixed is None else int(round(fixed * free))
    rest = rng.integers(0, free + 1, size=n - 1)
    return np.concatenate([[first], rest]).astype(np.int64)


def min_length(kind: str, *, value_length: int | None = None, keys: int = 8, queries: int = 1) -> int:
    """The shortest sequence of ``kind`` (:func:`needle_batch`'s arguments): its needles and
    questions with no filler, ``N (1 + [key] + value) + Q (1 + [key] + value)``."""
    multi = kind == "multikey"
    if value_length is None:
        value_length = 3 if kind == "word" else 2
    n_needles, n_queries = (keys, queries) if multi else (1, 1)
    return (n_needles + n_queries) * (1 + multi + value_length)  # NEEDLE (key) value; QUERY (key) answer


def needle_batch(
    kind: str,
    batch: int,
    length: int,
    seed: int | np.random.Generator,
    *,
    depth: float | None = None,
    value_length: int | None = None,
    keys: int = 8,
    queries: int = 1,
    vocab: NeedleVocab = VOCAB,
) -> TaskBatch:
    """``batch`` sequences of ``length`` tokens of needle task ``kind`` (see the module docstring).

    Args:
        kind: ``"passkey"``, ``"number"``, ``"word"`` or ``"multikey"``.
        batch: number of sequences.
        length: tokens per sequence, the query and the answer included.
        seed: an integer (the same seed gives the same batch) or a numpy ``Generator``.
        depth: relative position of the (first queried) needle in the haystack, in [0, 1];
            None draws it uniformly per sequence.
        value_length: tokens of a value (default: 2 digits, or 3 letters for ``"word"``).
        keys: multikey only: needles per sequence (distinct keys, at most ``vocab.n_keys``).
        queries: multikey only: how many of them are asked about (needles ``0 .. queries - 1``,
            whose places in the haystack are random, so the questions come in random order).
        vocab: the token layout.

    Returns:
        a :class:`TaskBatch`; its ``needles`` are ``(B, N)`` with ``N = 1``, or ``keys``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    batch = _check_int("batch", batch, 1)
    length = _check_int("length", length, 1)
    if value_length is None:
        value_length = 3 if kind == "word" else 2
    value_length = _check_int("value_length", value_length, 1)
    if depth is not None and not (isinstance(depth, int | float) and 0.0 <= depth <= 1.0):
        raise ValueError(f"depth must be a number in [0, 1] or None, got {depth!r}")
    multi = kind == "multikey"
    n_needles = _check_int("keys", keys, 1) if multi else 1
    n_queries = _check_int("queries", queries, 1) if multi else 1
    if n_needles > vocab.n_keys:
        raise ValueError(f"keys must be <= {vocab.n_keys} (distinct key tokens), got {keys}")
    if n_queries > n_needles:
        raise ValueError(f"queries must be <= keys ({n_needles}), got {queries}")
    needle_len = question_len = 1 + multi + value_length  # NEEDLE (key) value; QUERY (key) answer
    free = length - min_length(kind, value_length=value_length, keys=n_needles, queries=n_queries)  # filler
    if free < 0:
        raise ValueError(
            f"length {length} is too short for {kind}: needles and questions take "
            f"{length - free} tokens"
        )
    rng = _rng(seed)
    alphabet = vocab.letters if kind == "word" else vocab.digits
    tokens = np.empty((batch, length), dtype=np.int64)
    positions = np.empty((batch, n_queries, value_length), dtype=np.int64)
    targets = np.empty_like(positions)
    needles = np.empty((batch, n_needles), dtype=np.int64)
    hay_len = length - n_queries * question_len
    for b in range(batch):
        filler = _haystack(kind, free, rng, vocab)
        values = rng.choice(alphabet, size=(n_needles, value_length))
        key_ids = rng.choice(vocab.keys, size=n_needles, replace=False)
        offsets = _offsets(n_needles, free, depth, rng)
        order = np.argsort(offsets, kind="stable")  # needles in the order they appear
        pieces, start, pos = [], 0, 0
        for i in order:
            pieces.append(filler[start : offsets[i]])
            pos += offsets[i] - start
            start = offsets[i]
            needles[b, i] = pos
            needle = [vocab.NEEDLE] + ([key_ids[i]] if multi else []) + list(values[i])
            pieces.append(np.asarray(needle, dtype=np.int64))
            pos += needle_len
        pieces.append(filler[start:])
        hay = np.concatenate(pieces)
        assert len(hay) == hay_len
        tail = []
        for q in range(n_queries):  # needle q (q < n_queries) is asked about, in that order
            tail.append(vocab.QUERY)
            if multi:
                tail.append(key_ids[q])
            first = hay_len + len(tail)  # position of the answer's first token
            tail.extend(values[q])
            positions[b, q] = np.arange(first - 1, first - 1 + value_length)
            targets[b, q] = values[q]
        tokens[b] = np.concatenate([hay, np.asarray(tail, dtype=np.int64)])
    return TaskBatch(
        tokens=torch.from_numpy(tokens),
        positions=torch.from_numpy(positions),
        targets=torch.from_numpy(targets),
        alphabet=torch.from_numpy(alphabet.astype(np.int64)),
        needles=torch.from_numpy(needles),
        kind=kind,
    )


def needle_answers(tokens: Tensor, kind: str, *, value_length: int | None = None, vocab: NeedleVocab = VOCAB) -> Tensor:
    """The answers recovered from the sequences alone: ``(B, Q, A)``, like ``TaskBatch.targets``.

    For each ``QUERY`` (with its key, for multikey) the value that follows the matching
    ``NEEDLE`` in the haystack. What a model that reads perfectly would answer.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if value_length is None:
        value_length = 3 if kind == "word" else 2
    multi = kind == "multikey"
    out = []
    for row in tokens.tolist():
        marks = [i for i, t in enumerate(row) if t == vocab.NEEDLE]
        answers = []
        for i, t in enumerate(row):
            if t != vocab.QUERY:
                continue
            if multi:
                key = row[i + 1]
                hit = next(m for m in marks if row[m + 1] == key)
                answers.append(row[hit + 2 : hit + 2 + value_length])
            else:
                answers.append(row[marks[0] + 1 : marks[0] + 1 + value_length])
        out.append(answers)
    return torch.tensor(out, dtype=torch.int64)


def render(tokens: Tensor | list[int], vocab: NeedleVocab = VOCAB) -> str:
    """A needle sequence as text, to read it: ``NEEDLE`` as ``[pass key:``, ``QUERY`` as
    ``[what is it?]``, digits ``0-9``, letters ``a..``, keys ``K0..``, the filler phrase's words
    (``w0..w7``), ``SPACE`` as ``_``."""
    names = {
        vocab.PAD: "<pad>", vocab.NEEDLE: "[pass key:", vocab.QUERY: "[what is it?]", vocab.SPACE: "_",
    }
    names.update({int(t): str(i) for i, t in enumerate(vocab.digits)})
    names.update({int(t): chr(ord("a") + i) for i, t in enumerate(vocab.letters)})
    names.update({int(t): f"K{i}" for i, t in enumerate(vocab.keys)})
    names.update({int(t): f"w{i}" for i, t in enumerate(vocab.filler)})
    ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    return " ".join(names.get(int(t), f"<{t}>") for t in ids)
