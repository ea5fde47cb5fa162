"""``titans bench lm``: bits per byte against position on long held-out documents.

The needle benchmarks show that a memory can carry one fact far beyond the attention window.
This one asks the language-modelling question: on real long documents, does the memory lower
the loss of the bytes that come late, where a sliding window no longer sees the beginning?

**Training.** Every model of :data:`~titans_memory.tasks.longcontext.MODELS` asked for (plus
``"full"``, full causal attention) trains with AdamW on next-byte prediction over the same
stream of training sequences: for one seed, every model reads the very same batches (the
training documents of the corpus, shuffled by the seed, cut into ``train_length``-byte
sequences), so the tokens seen are equal as long as the step counts are (both are recorded).

**Equal size.** Each model's SwiGLU width is chosen so that its parameter count is as close as
the width allows to that of the largest base model (``param_reference``, MAC/MAG at the default
sizes): see :func:`matched_hidden`. Models without memory get wider MLPs. HOPE has no MLP (its
continuum memory system takes the MLP's place): its CMS levels' hidden width is matched instead.

**Full attention** (``"full"``, the Transformer++ of the papers: RoPE, SwiGLU, RMSNorm, no
convolution) is trained at ``train_length`` (its window covers the whole training sequence) and
evaluated twice with the same weights: with an attention window of ``train_length`` sliding
over the document (``full @512``: every attention meets only the relative distances of
training; through its ``depth`` layers a byte can still be reached by bytes up to
``depth * (train_length - 1)`` back, as in any sliding-window stack) and with a window of the
whole document (``full @8,192``: RoPE's length extrapolation, distances never trained).

**Evaluation.** The first ``eval_length`` bytes of held-out documents at least that long go
through each model in one causal pass (fed in pieces with the cache carried, which equals one
call), the first byte predicted from the document separator. The loss of every byte is
summed into position buckets (``buckets``: bytes ``[start, end)`` of the document), and each
bucket's bits per byte is its summed loss over its byte count. Every document has every
bucket (they are all cut to the same length), so each bucket averages the same documents.

With ``carry=True`` the documents of one folder of the corpus (a "file group") are also read
one after the other without resetting the state between them (separator between documents);
those records carry ``carry: True``.

Records (one per model, evaluation window, seed, carry and bucket)::

    {"model", "task": "lm", "eval_window", "carry", "bucket_start", "bucket_end",
     "bits_per_byte", "bytes", "documents", "parameters", "train_steps", "tokens_seen",
     "train_seconds", "eval_seconds", "final_loss", "diverged", "seed"}

``eval_window`` is None except for ``"full"`` (its attention window at evaluation).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from titans_memory.models.blocks import conv_swa_blocks
from titans_memory.models.config import ModelConfig
from titans_memory.models.lm import TitansLM
from titans_memory.tasks.bench import run_jobs
from titans_memory.tasks.longcontext import (
    MODELS,
    TaskModelConfig,
    TrainSettings,
    spec_model_config,
    train_on_answers,
)
from titans_memory.training.data import ByteTokenizer, Corpus, TokenStream, open_corpus
from titans_memory.training.evaluate import at_least_float32

FULL = "full"  # full causal attention (Transformer++): not an entry of MODELS
# the default comparison (its budget is planned for these nine); any other name of MODELS (hope,
# hope-cms1, hope-static, mac-u, the ATLAS memories) runs when asked for with --models
DEFAULT_MODELS: tuple[str, ...] = (FULL, "swa", "lmm", "mac", "mag", "mal", "lmm-moneta", "lmm-yaad", "lmm-memora")
MODEL_TEXT = {FULL: "full causal attention (Transformer++: RoPE, SwiGLU, RMSNorm), trained at train_length"}


def lm_model_names() -> list[str]:
    """Every model ``titans bench lm`` can train: ``"full"`` and the names of ``MODELS``."""
    return [FULL, *MODELS]


@dataclass(frozen=True)
class LMSettings:
    """``titans bench lm``: train each model on the corpus, score held-out bytes by position.

    The defaults are sized for about 50 minutes on two idle cores (two worker processes of one
    thread each): 340 steps x 2 seeds x the nine models' summed step cost (8.3 s, see
    ``STEP_SECONDS``) / 2 workers = 47 min of training, plus ~3 min of scoring (24 documents of
    8 KiB per model; full attention over the whole document is 90 s of it per seed).
    ``budget_minutes`` caps the run on a slow or busy machine: each model's training is then
    cut at its share (the steps and tokens it got are in the records).
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: tuple[int, ...] = (0, 1)
    model: TaskModelConfig = field(
        default_factory=lambda: TaskModelConfig(vocab_size=256, dim=64, depth=2, heads=2, window=64)
    )
    param_reference: str = "mac"  # every model is matched to this one's parameter count (see matched_hidden)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(steps=340, lr=3e-3, warmup=30))
    train_length: int = 512  # bytes per training sequence (full attention's training context)
    batch_size: int = 16  # sequences per step: tokens per step = batch_size * train_length
    data: str = "stdlib"  # the corpus (training/data.open_corpus): "stdlib", a file or a folder
    held_out_fraction: float = 0.05  # documents held out by a hash of their name
    eval_length: int = 8192  # bytes scored per document (documents at least this long)
    eval_documents: int = 24  # held-out documents scored (fewer if fewer are long enough)
    buckets: tuple[int, ...] = (0, 64, 256, 512, 1024, 2048, 4096, 8192)  # bucket edges, bytes
    carry: bool = False  # also score each file group's documents with the state carried
    eval_batch: int = 8  # documents per forward call
    eval_piece: int = 1024  # bytes per forward call (the cache carries the rest)
    workers: int = 2  # processes of one thread each
    budget_minutes: float | None = 58.0  # cap; the defaults are planned for ~50 minutes
    train_share: float = 0.9  # of the budget spent training (the rest: evaluation)

    @property
    def task(self) -> str:
        return "lm"

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.train_length

    def check(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        names = lm_model_names()
        unknown = [m for m in self.models if m not in names]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose among {', '.join(names)}")
        if not self.models or not self.seeds:
            raise ValueError("at least one model and one seed are needed")
        if self.param_reference not in names:
            raise ValueError(f"param_reference {self.param_reference!r} is not a model; choose among {', '.join(names)}")
        for name in ("train_length", "batch_size", "eval_length", "eval_documents", "eval_batch", "eval_piece", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        b = self.buckets
        if len(b) < 2 or b[0] != 0 or any(x >= y for x, y in zip(b, b[1:], strict=False)) or b[-1] > self.eval_length:
            raise ValueError(
                f"buckets must be increasing edges from 0 to at most eval_length ({self.eval_length}), got {b!r}"
            )


def quick(settings: LMSettings) -> LMSettings:
    """A small version (``--quick``, a few minutes): fewer steps, shorter and fewer documents;
    the models and seeds asked for are kept."""
    return replace(
        settings,
        train=replace(settings.train, steps=min(settings.train.steps, 30), warmup=5),
        batch_size=min(settings.batch_size, 8),
        train_length=min(settings.train_length, 256),
        eval_length=min(settings.eval_length, 2048),
        eval_documents=min(settings.eval_documents, 4),
        buckets=tuple(e for e in settings.buckets if e < min(settings.eval_length, 2048)) + (min(settings.eval_length, 2048),),
        budget_minutes=min(settings.budget_minutes or 4.0, 4.0),
    )


# --- the models -----------------------------------------------------------------------------------


def _model_config(name: str, cfg: TaskModelConfig, train_length: int, hidden: int | None) -> ModelConfig:
    """Model ``name``'s config with its matched width ``hidden`` (None: the default width).

    ``hidden`` is the SwiGLU MLP's hidden width, or for ``arch="hope"`` (no MLP: the CMS takes
    its place) the hidden width of each CMS level. The spec's own options (``MODELS[name].hope``,
    ``.model``) are applied as :func:`~titans_memory.tasks.longcontext.build_model` does.
    """
    expansion = 4.0 if hidden is None else 3 * hidden / (2 * cfg.dim)  # ModelConfig.mlp_hidden inverts this
    if name == FULL:
        return ModelConfig(
            arch="swa", vocab_size=cfg.vocab_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
            window=train_length, segment=train_length, persistent_tokens=0, mlp_expansion=expansion,
        )
    spec = MODELS[name]
    if spec.arch != "hope":
        return spec_model_config(spec, cfg, mlp_expansion=expansion)
    mcfg = spec_model_config(spec, cfg)
    if hidden is None:
        return mcfg
    hope = mcfg.hope_config
    # ContinuumMemory's level width round(cms_expansion * dim / levels) inverts this to `hidden`
    return mcfg.replace(hope=replace(hope, cms_expansion=len(hope.cms_chunks) * hidden / cfg.dim))


def _width(mcfg: ModelConfig) -> tuple[int, int]:
    """``(width, weights per unit of width)``: the width :func:`matched_hidden` sets and how many
    parameters one more unit of it adds, over the whole model.

    A SwiGLU MLP of hidden width ``h`` holds ``3 * dim * h`` weights per block (gate, up, down);
    HOPE's CMS of ``L`` levels, each ``x + act(x W_1) W_2`` of hidden width ``h``, holds
    ``2 * dim * h`` per level and block (its value projections and gates do not depend on ``h``).
    """
    if mcfg.arch == "hope":
        hope = mcfg.hope_config
        levels = len(hope.cms_chunks)
        return max(1, int(round(hope.cms_expansion * mcfg.dim / levels))), 2 * mcfg.dim * levels * mcfg.depth
    return mcfg.mlp_hidden, 3 * mcfg.dim * mcfg.depth


def _make(name: str, mcfg: ModelConfig, cfg: TaskModelConfig) -> TitansLM:
    # the benchmarks' SWA baseline has the memory's short convolution on q, k, v (as build_model)
    convolved = name != FULL and mcfg.arch == "swa" and cfg.conv_kernel > 1
    return TitansLM(mcfg, block_factory=conv_swa_blocks(cfg.conv_kernel) if convolved else None)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(name: str, settings: LMSettings) -> int:
    """The width that brings model ``name`` closest to the reference's parameter count.

    The reference (``settings.param_reference``) keeps the default width. Every model's count
    is linear in one width ``h`` (:func:`_width`), so one count at the default width gives the
    ``h`` to aim at:

    * full attention, SWA and the Titans/MIRAS/ATLAS memories: ``h`` is the SwiGLU MLP's hidden
      width (``3 * dim * depth`` parameters per unit);
    * HOPE (``arch="hope"``: no MLP, the CMS in its place): ``h`` is the hidden width of each
      CMS level (``HopeConfig.cms_expansion``), ``2 * dim * levels * depth`` parameters per unit,
      so a model with more levels is matched more coarsely.

    The count then lies within half a unit of the target (the tests check this and the 10%
    bound on every model; the records store each model's count).
    """
    cfg = settings.model
    with torch.device("meta"):  # counts only: no memory, no initialisation
        target = parameter_count(_make(settings.param_reference, _model_config(settings.param_reference, cfg, settings.train_length, None), cfg))
        base_cfg = _model_config(name, cfg, settings.train_length, None)
        base = parameter_count(_make(name, base_cfg, cfg))
    width, per_unit = _width(base_cfg)
    return max(1, width + round((target - base) / per_unit))


def build_lm_model(name: str, settings: LMSettings, *, seed: int = 0) -> TitansLM:
    """Model ``name`` at the benchmark's sizes, its MLP width matched (:func:`matched_hidden`),
    its weights drawn with ``seed``."""
    if name not in lm_model_names():
        raise ValueError(f"unknown model {name!r}; choose among {', '.join(lm_model_names())}")
    cfg = settings.model
    mcfg = _model_config(name, cfg, settings.train_length, matched_hidden(name, settings))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _make(name, mcfg, cfg)


def with_window(model: TitansLM, window: int) -> TitansLM:
    """The same weights with another attention window (full attention's two evaluations).

    Rotary positions are relative, so a window of ``C`` gives exactly the sliding evaluation at
    context ``C``: each query sees itself and the ``C - 1`` tokens before it.
    """
    other = TitansLM(model.config.replace(window=window, segment=window))
    other.load_state_dict(model.state_dict())
    return other.eval()


# --- the data -------------------------------------------------------------------------------------


def training_batches(corpus: Corpus, settings: LMSettings, seed: int) -> Iterator[torch.Tensor]:
    """``(batch_size, train_length + 1)`` byte sequences, one per step; the same for every model.

    Stream ``i`` of ``batch_size`` walks its share of the training documents (shuffled by
    ``seed``), separators between documents; each sequence continues its stream's text.
    """
    tok = ByteTokenizer()
    streams = [TokenStream(corpus, tok, i, settings.batch_size, seed) for i in range(settings.batch_size)]
    while True:
        yield torch.as_tensor(np.stack([s.segment(settings.train_length) for s in streams]), dtype=torch.long)


@dataclass(frozen=True)
class EvalDocuments:
    """The scored documents: ``tokens`` ``(N, eval_length)`` (the first bytes of each), and for
    each its corpus name and file group (the folder it lies in)."""

    tokens: np.ndarray
    names: tuple[str, ...]
    groups: tuple[str, ...]


def evaluation_documents(corpus: Corpus, length: int, count: int) -> EvalDocuments:
    """The first ``length`` bytes of the first ``count`` held-out documents at least that long."""
    tok = ByteTokenizer()
    rows, names = [], []
    longest = 0
    for doc in corpus.held_out:
        size = doc.end - doc.start
        longest = max(longest, size)
        if size < length:
            continue
        body = tok.encode(corpus.read(doc))
        if len(body) < length:
            continue
        rows.append(body[:length])
        names.append(doc.key)
        if len(rows) == count:
            break
    if not rows:
        raise ValueError(
            f"no held-out document of {corpus.name!r} has {length} bytes or more (the longest has {longest}); "
            "lower eval_length (--eval-length)"
        )
    return EvalDocuments(np.stack(rows), tuple(names), tuple(_group(n) for n in names))


def _group(key: str) -> str:
    source = key.rsplit(":", 1)[0]
    return source.rsplit("/", 1)[0] if "/" in source else ""


def unigram_bits(corpus: Corpus, docs: EvalDocuments, max_tokens: int = 4_000_000) -> np.ndarray:
    """``(N, L)`` bits of each scored byte under the training split's byte frequencies (add-one)."""
    counts = np.zeros(256, dtype=np.int64)
    seen = 0
    tok = ByteTokenizer()
    for doc in corpus.train:
        body = tok.encode(corpus.read(doc))
        counts += np.bincount(body, minlength=256)
        seen += len(body)
        if seen >= max_tokens:
            break
    probs = (counts + 1.0) / (counts.sum() + 256)
    return -np.log2(probs[docs.tokens])


# --- scoring by position --------------------------------------------------------------------------


@torch.no_grad()
def position_nll(
    model: Callable, tokens: torch.Tensor, *, separator: int = 0, piece: int = 1024, cache=None
) -> tuple[torch.Tensor, object]:
    """``(B, L)`` negative log-likelihood (nats, float64) of every byte of ``tokens`` ``(B, L)``.

    One causal pass: the inputs are ``[separator, tokens[:, :-1]]`` (the first byte is predicted
    from the separator, as after a document boundary in training), fed in pieces of ``piece``
    tokens with the cache carried. ``cache`` continues earlier streams; the final cache is
    returned with the losses.
    """
    B, L = tokens.shape
    inputs = torch.cat([tokens.new_full((B, 1), separator), tokens[:, :-1]], dim=1)  # (B, L)
    out = torch.empty(B, L, dtype=torch.float64)
    for start in range(0, L, piece):
        logits, cache = model(inputs[:, start : start + piece], cache)  # (B, n, V)
        n = logits.shape[1]
        nll = F.cross_entropy(at_least_float32(logits).flatten(0, 1), tokens[:, start : start + n].flatten(), reduction="none")
        out[:, start : start + n] = nll.view(B, n).double()
    return out, cache


def bucket_sums(nll: np.ndarray | torch.Tensor, edges: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Summed loss and byte count of each position bucket ``[edges[i], edges[i + 1])``.

    ``nll`` is ``(N, L)``: one row per document, column = position in the document.
    """
    a = np.asarray(nll, dtype=np.float64)
    sums = np.array([a[:, lo:hi].sum() for lo, hi in zip(edges, edges[1:], strict=False)])
    counts = np.array([a[:, lo:hi].size for lo, hi in zip(edges, edges[1:], strict=False)])
    return sums, counts


def bucket_bits_per_byte(nll: np.ndarray | torch.Tensor, edges: Sequence[int]) -> np.ndarray:
    """Bits per byte of each position bucket: summed nats / ln 2 / bytes."""
    sums, counts = bucket_sums(nll, edges)
    return sums / math.log(2) / counts


def score_documents(model: Callable, docs: EvalDocuments, settings: LMSettings, *, carry: bool = False) -> np.ndarray:
    """``(N, eval_length)`` nll of every scored byte; with ``carry`` the documents of one file
    group are read in order, the state carried from one to the next (one stream per group)."""
    tokens = torch.as_tensor(docs.tokens, dtype=torch.long)
    out = np.empty(docs.tokens.shape, dtype=np.float64)
    if not carry:
        for i in range(0, len(tokens), settings.eval_batch):
            nll, _ = position_nll(model, tokens[i : i + settings.eval_batch], piece=settings.eval_piece)
            out[i : i + settings.eval_batch] = nll.numpy()
        return out
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(docs.groups):
        by_group[g].append(i)
    for members in by_group.values():
        cache = None
        for i in members:
            nll, cache = position_nll(model, tokens[i : i + 1], piece=settings.eval_piece, cache=cache)
            out[i] = nll[0].numpy()
    return out


# --- one job: train one model with one seed, then score it ------------------------------------------


@dataclass(frozen=True)
class Job:
    settings: LMSettings
    model: str
    seed: int
    train_time_limit: float | None


def next_byte_loss(model: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """The next-byte cross-entropy of every position of ``seq`` ``(B, T + 1)``."""
    logits, _ = model(seq[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten())


def train_lm(model: nn.Module, batches: Iterator[torch.Tensor], settings: TrainSettings, progress=None) -> dict:
    """AdamW on the next-byte cross-entropy of every position; warm-up then cosine decay
    (the long-context benchmarks' loop, :func:`~titans_memory.tasks.longcontext.train_on_answers`).

    Returns ``{"steps", "seconds", "losses", "diverged"}``; a non-finite loss (or the memory's
    finiteness check) stops the run with ``diverged=True``. ``progress(1)`` after each step.
    """
    result = train_on_answers(model, batches, settings, loss_fn=next_byte_loss,
                              progress=None if progress is None else (lambda _loss: progress(1)))
    return dict(steps=result.steps, seconds=result.seconds, losses=result.losses, diverged=result.diverged)


def eval_variants(name: str, model: TitansLM, settings: LMSettings) -> list[tuple[int | None, TitansLM]]:
    """``(eval_window, model)`` pairs to score: full attention at its training context and on
    the whole document; every other model once, as trained (``eval_window`` None)."""
    if name != FULL:
        return [(None, model)]
    return [(settings.train_length, with_window(model, settings.train_length)),
            (settings.eval_length, with_window(model, settings.eval_length))]


def run_job(job: Job, progress: Callable[[str, int], None] | None = None, corpus: Corpus | None = None) -> list[dict]:
    """Train ``job.model`` with ``job.seed``, score it on the held-out documents: its records."""
    s = job.settings
    corpus = corpus or open_corpus(s.data, s.held_out_fraction)
    docs = evaluation_documents(corpus, s.eval_length, s.eval_documents)
    torch.manual_seed(job.seed)
    model = build_lm_model(job.model, s, seed=job.seed)
    train = replace(s.train, time_limit=job.train_time_limit)
    tick = (lambda n: progress("train", n)) if progress else None
    result = train_lm(model, training_batches(corpus, s, job.seed), train, tick)
    if progress and result["steps"] < s.train.steps:
        progress("train", s.train.steps - result["steps"])
    common = dict(
        task="lm", parameters=parameter_count(model), train_steps=result["steps"],
        tokens_seen=result["steps"] * s.tokens_per_step, train_seconds=round(result["seconds"], 2),
        final_loss=float(np.mean(result["losses"][-20:])) if result["losses"] else None,
        diverged=result["diverged"], seed=job.seed, documents=len(docs.names),
    )
    records = []
    for carry in (False, True) if s.carry else (False,):
        for window, variant in eval_variants(job.model, model, s):
            start = time.perf_counter()
            bits = np.full(len(s.buckets) - 1, np.nan)
            if not result["diverged"]:
                try:
                    bits = bucket_bits_per_byte(score_documents(variant, docs, s, carry=carry), s.buckets)
                except ValueError as exc:  # the memory's finiteness check on a long document
                    if "finite" not in str(exc).lower() and "nan" not in str(exc).lower():
                        raise
            seconds = round(time.perf_counter() - start, 2)
            for i, (lo, hi) in enumerate(zip(s.buckets, s.buckets[1:], strict=False)):
                value = float(bits[i])
                records.append(dict(
                    model=job.model, eval_window=window, carry=carry, bucket_start=lo, bucket_end=hi,
                    bits_per_byte=value if math.isfinite(value) else None, bytes=len(docs.names) * (hi - lo),
                    eval_seconds=seconds, **common,
                ))
            if progress:
                progress("eval", 1)
    return records


# CPU seconds of one training step (one thread; 16 x 512 bytes, dim 64, depth 2, widths matched),
# measured with OMP_NUM_THREADS=1 nice -n 10 as process time over 8 steps after 2 (the machine was
# shared: process time stands for an idle core's wall time). Plans the budget and orders the
# jobs; a model not listed counts as the LMM, or as HOPE if it is a HOPE (its step measured
# 2.82 s against the LMM's 0.72 s in one process, scaled to the LMM's 0.84). Scoring: ~0.15-0.8 s
# per 8 KiB document per model, 3.5 s for full attention over the whole document.
STEP_SECONDS = {FULL: 0.84, "swa": 0.40, "lmm": 0.84, "mac": 1.37, "mag": 1.09, "mal": 1.09,
                "lmm-moneta": 0.98, "lmm-yaad": 0.76, "lmm-memora": 0.96, "hope": 3.3}


def step_seconds(name: str) -> float:
    """The planned CPU seconds of one training step of model ``name`` (:data:`STEP_SECONDS`)."""
    if name in STEP_SECONDS:
        return STEP_SECONDS[name]
    return STEP_SECONDS["hope" if MODELS[name].arch == "hope" else "lmm"]


def plan(settings: LMSettings) -> list[Job]:
    """The jobs, the most expensive first, each with a training time limit: ``budget_minutes``
    (its ``train_share``, over the workers) shared in proportion to the models' step costs, so
    that on a machine as fast as planned every model takes its steps, and on a slower one every
    model is cut at about the same fraction of them."""
    settings.check()
    pairs = [(m, s) for m in settings.models for s in settings.seeds]
    cost = {m: step_seconds(m) for m in settings.models}
    pairs.sort(key=lambda p: -cost[p[0]])
    limits: dict[str, float | None] = {m: None for m in settings.models}
    if settings.budget_minutes is not None:
        total = settings.budget_minutes * 60 * settings.train_share * settings.workers
        unit = total / sum(cost[m] for m, _ in pairs)
        limits = {m: unit * cost[m] for m in settings.models}
    return [Job(settings, m, s, limits[m]) for m, s in pairs]


_EVENTS = None
_CORPUS: Corpus | None = None


def _init_worker(events) -> None:
    global _EVENTS
    _EVENTS = events
    torch.set_num_threads(1)


def _worker(job: Job) -> list[dict]:
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = open_corpus(job.settings.data, job.settings.held_out_fraction)
    return run_job(job, lambda kind, n: _EVENTS.put((kind, n)), _CORPUS)


def run_benchmark(settings: LMSettings, *, progress: bool = True) -> dict:
    """Train and score every model and seed: ``{"records", "unigram", "documents"}``.

    ``unigram`` holds the unigram model's bits per byte per bucket (the floor any model must
    beat); ``documents`` the names of the scored documents.
    """
    from tqdm.auto import tqdm

    jobs = plan(settings)
    corpus = open_corpus(settings.data, settings.held_out_fraction)
    docs = evaluation_documents(corpus, settings.eval_length, settings.eval_documents)
    evals = sum(len(eval_variants_names(j.model)) for j in jobs) * (2 if settings.carry else 1)
    bars = {
        "train": tqdm(total=settings.train.steps * len(jobs), desc="lm: train", unit="step", disable=not progress),
        "eval": tqdm(total=evals, desc="lm: eval", unit="model", disable=not progress),
    }
    records = run_jobs(
        jobs, bars, settings.workers,
        run_here=lambda job: run_job(job, lambda kind, n: bars[kind].update(n), corpus),
        worker=_worker, init_worker=_init_worker,
    )
    order = {m: i for i, m in enumerate(settings.models)}
    records.sort(key=lambda r: (r["carry"], order[r["model"]], r["eval_window"] or 0, r["seed"], r["bucket_start"]))
    unigram = bucket_bits_per_byte(unigram_bits(corpus, docs) * math.log(2), settings.buckets)
    return dict(records=records, unigram=[float(u) for u in unigram], documents=list(docs.names))


def eval_variants_names(name: str) -> list[str]:
    return ["train", "document"] if name == FULL else ["model"]


def settings_to_dict(settings: LMSettings) -> dict:
    out = asdict(settings)
    out["task"] = settings.task
    out["cpu_count"] = os.cpu_count()
    out["python"] = sys.version.split()[0]  # the stdlib corpus is this Python's
    out["parameters_matched_to"] = settings.param_reference
    return out


# --- tables ---------------------------------------------------------------------------------------


def row_label(record: dict) -> str:
    """``"full @512"`` for full attention's evaluation windows, the model's name otherwise."""
    w = record["eval_window"]
    return record["model"] if w is None else f"{record['model']} @{w:,}"


def _bytes(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def bucket_header(lo: int, hi: int, window: int, train_length: int) -> str:
    """``"64-256"``, marked ``(> window)`` when the whole bucket is beyond the attention window,
    ``(> train)`` when it is beyond the training length."""
    text = f"{_bytes(lo)}-{_bytes(hi)}"
    if lo >= train_length:
        return text + " (> train)"
    if lo >= window:
        return text + " (> window)"
    return text


def bits_text(values: Sequence[float]) -> str:
    """``"2.134 [2.120-2.148]"``: mean over seeds and their range; ``"-"`` if none."""
    vals = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    bad = len(values) - len(vals)
    if not len(vals):
        return "diverged" if values else "-"
    text = f"{vals.mean():.3f}" if len(vals) == 1 else f"{vals.mean():.3f} [{vals.min():.3f}-{vals.max():.3f}]"
    return text + (f" ({bad} div.)" if bad else "")


def per_seed(records: Sequence[dict], *, carry: bool = False) -> dict:
    """``{(row label, bucket_start): {seed: bits_per_byte}}`` (None for a diverged model)."""
    out: dict = defaultdict(dict)
    for r in records:
        if r["carry"] == carry:
            out[(row_label(r), r["bucket_start"])][r["seed"]] = r["bits_per_byte"]
    return out


def _rows(records: Sequence[dict], models: Sequence[str] | None) -> list[str]:
    order = {m: i for i, m in enumerate(models or dict.fromkeys(r["model"] for r in records))}
    seen = {row_label(r): (order.get(r["model"], len(order)), r["eval_window"] or 0) for r in records}
    return sorted(seen, key=seen.__getitem__)


def position_table(
    records: Sequence[dict], settings: LMSettings, unigram: Sequence[float] | None = None, *, carry: bool = False
) -> str:
    """Bits per byte of each model (rows) in each position bucket (columns), mean over seeds
    ``[min-max]``; the unigram model's in the last row."""
    data = per_seed(records, carry=carry)
    edges = settings.buckets
    head = ["model"] + [bucket_header(lo, hi, settings.model.window, settings.train_length)
                        for lo, hi in zip(edges, edges[1:], strict=False)]
    rows = [[label] + [bits_text(list(data.get((label, lo), {}).values())) for lo in edges[:-1]]
            for label in _rows([r for r in records if r["carry"] == carry], settings.models)]
    if unigram is not None:
        rows.append(["unigram"] + [f"{u:.3f}" for u in unigram])
    return _markdown(head, rows)


def training_table(records: Sequence[dict], models: Sequence[str] | None = None) -> str:
    """Per model: parameters, steps and tokens seen (each seed's; a range if they differ),
    training minutes, and the final training loss in bits per byte."""
    by: dict = defaultdict(dict)
    for r in records:
        by[r["model"]][r["seed"]] = r
    rows = []
    for m in [m for m in (models or by) if m in by]:
        seeds = list(by[m].values())

        def span(key: str, fmt: Callable[[float], str], seeds=seeds) -> str:
            lo, hi = fmt(min(r[key] for r in seeds)), fmt(max(r[key] for r in seeds))
            return lo if lo == hi else f"{lo}-{hi}"

        losses = [r["final_loss"] / math.log(2) for r in seeds if r["final_loss"] is not None]
        rows.append([
            m, span("parameters", lambda v: f"{v:,}"), span("train_steps", lambda v: f"{v:,}"),
            span("tokens_seen", lambda v: f"{v / 1e6:.2f}M"), span("train_seconds", lambda v: f"{v / 60:.1f}"),
            bits_text(losses),
        ])
    return _markdown(["model", "parameters", "steps", "tokens seen", "train min", "final train bits/byte"], rows)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def tables(result: dict, settings: LMSettings) -> str:
    """All tables of a run (Markdown): by position, (carried state), training."""
    records = result["records"]
    parts = [
        f"### Bits per byte by position in the document ({len(result['documents'])} held-out documents, "
        f"first {settings.eval_length:,} bytes; window {settings.model.window}, training length {settings.train_length})\n\n"
        + position_table(records, settings, result.get("unigram")),
    ]
    if any(r["carry"] for r in records):
        parts.append("### The same, state carried across the documents of a folder\n\n"
                     + position_table(records, settings, result.get("unigram"), carry=True))
    parts.append("### Training\n\n" + training_table([r for r in records if not r["carry"]], settings.models))
    return "\n\n".join(parts)


__all__ = [
    "DEFAULT_MODELS", "FULL", "EvalDocuments", "Job", "LMSettings", "STEP_SECONDS", "bucket_bits_per_byte",
    "bucket_sums", "build_lm_model", "evaluation_documents", "matched_hidden", "parameter_count", "plan",
    "position_nll", "position_table", "quick", "run_benchmark", "run_job", "score_documents", "step_seconds", "tables",
    "training_batches", "training_table", "with_window",
]
