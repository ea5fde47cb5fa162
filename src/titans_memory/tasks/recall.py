"""Key-value recall streams that compare the MIRAS update rules (arXiv 2504.13173) head to head.

Everything here works at the **operator level**: the keys, values and queries are fed straight to
a memory operator (a name in :data:`~titans_memory.core.ops.BACKENDS`, ``"chunked"`` by
default), with no projections, convolutions or learned gates,
so the comparison isolates the *update rules* (attentional bias, retention, learning algorithm and
memory architecture). Each preset runs with constant gates taken from its config's initial values:

* inner learning rate ``theta = lr_init``;
* retention ``1 - alpha = 1 - forget_init`` where the preset forgets, else no decay;
* momentum ``eta = momentum_init`` where the preset uses momentum, else none;
* Huber threshold ``delta = huber_delta_init`` (Yaad).

That is what a freshly built :class:`~titans_memory.core.NeuralMemory` of the preset does before
any outer-loop training; a trained model would learn other gates, so these numbers compare the
rules at their starting point, not trained models.

Memories run token by token (``chunk_size = 1``: the paper's per-token rules, non-linear retentions
applied after every token), except the TTT presets, whose mini-batch of gradients taken at the
batch start is part of the algorithm: they keep their config's ``chunk_size``.

Streams: ``trials`` independent memories (the operator's N axis) of one head of ``head_dim``
channels; keys are random unit vectors (the operators expect l2-normalised keys), values random
vectors of norm ~1 (entries N(0, 1/d)). Recall of a pair is the cosine similarity between the
memory's read at its key, ``M(k)``, and its value ``v``, after the whole stream was written.

Two tasks:

* :func:`recall_vs_age`: write ``pairs`` pairs, then query each one; recall as a function of age
  (how many pairs were written after it: 0 = the last one);
* :func:`outlier_burst`: ``before`` clean pairs, then ``burst`` pairs whose values have a huge
  norm (``burst_scale``), then ``after`` clean pairs. The recall of the ``before`` pairs is
  measured just before the burst, at the end of the stream, and at the end of a *control* stream
  with the same keys whose burst values are clean, so that ordinary interference and forgetting
  are told apart from the damage the outliers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from titans_memory.core.algorithms import FORGET, MOMENTUM
from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.ops import MemoryInputs, MemoryOpState, get_backend, operator_for
from titans_memory.core.presets import preset
from titans_memory.core.rule import UpdateRule

# presets whose mini-batch (gradients at the batch start) is part of the rule itself
MINIBATCH_PRESETS = ("ttt_linear", "ttt_mlp")


@dataclass(frozen=True)
class OperatorSetup:
    """A preset turned into fixed operator arguments.

    Attributes:
        name: preset name.
        config: the preset's :class:`MemoryConfig` (``dim = head_dim``, one head).
        rule: its update rule (built from the config, with the chunk size chosen here).
        theta: constant inner learning rate.
        retention: constant ``1 - alpha`` (None: no forgetting).
        momentum: constant ``eta`` (None: no momentum).
        bias_param: constant parameter of the attentional bias (Huber's delta; None if it has none).
        initial_weights: the fresh memory, one ``(1, d_in, d_out)`` tensor per layer (a fresh
            :class:`NeuralMemory`'s initial memory, on the retention's constraint set already).
        retention_constants: the retention's constants, one ``(1, 1, 1)`` tensor per layer, or None.
        backend: the operator that writes the memory (a name in ``BACKENDS``).
    """

    name: str
    config: MemoryConfig
    rule: UpdateRule
    theta: float
    retention: float | None
    momentum: float | None
    bias_param: float | None
    initial_weights: tuple[Tensor, ...]
    retention_constants: tuple[Tensor, ...] | None
    backend: str = "chunked"

    @property
    def chunk_size(self) -> int:
        return self.rule.chunk_size

    def fresh_state(self, trials: int) -> MemoryOpState:
        """``trials`` independent copies of the fresh memory, zero momentum."""
        weights = tuple(w.expand(trials, *w.shape[1:]).clone() for w in self.initial_weights)
        carried = self.rule.init_carried(trials, weights[0].dtype, weights[0].device)
        return MemoryOpState(weights, tuple(torch.zeros_like(w) for w in weights), weights, 0, carried)

    def inputs(self, keys: Tensor, values: Tensor, queries: Tensor | None = None) -> MemoryInputs:
        """Operator inputs with constant gates, for ``(trials, steps, d)`` keys and values."""
        trials, steps = keys.shape[:2]
        dtype = self.initial_weights[0].dtype

        def full(value: float | None, log: bool = False) -> Tensor | None:
            if value is None:
                return None
            t = torch.full((trials, steps), value, dtype=dtype)
            return t.log() if log else t

        constants = None
        if self.retention_constants is not None:
            constants = tuple(c.expand(trials, 1, 1) for c in self.retention_constants)
        # the algorithm's other gates (none for the built-ins) at their initial values
        extra = {g.name: full(g.init) for g in self.rule.algorithm.gates() if g.name not in (MOMENTUM, FORGET)}
        return MemoryInputs(
            queries, keys, values, full(self.theta), full(self.retention, log=True),
            full(self.momentum, log=True), full(self.bias_param), constants, extra or None,
        )


def operator_setup(
    name: str,
    *,
    head_dim: int = 32,
    chunk_size: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    backend: str = "chunked",
    **overrides,
) -> OperatorSetup:
    """Fixed operator arguments for preset ``name`` (see the module docstring for the choices).

    Args:
        name: a key of :data:`~titans_memory.core.presets.PRESETS`.
        head_dim: d, the width of keys and values.
        chunk_size: None: 1, or the config's own for the TTT presets (their mini-batch).
        seed: seeds the initial memory of the deep presets (built as a fresh NeuralMemory does).
        dtype: of the weights and gates.
        backend: the operator that writes the memory (a name in ``BACKENDS``).
        **overrides: config fields changed on top of the preset (e.g. ``lr_init=0.1``).
    """
    get_backend(backend)  # a clear error for an unknown name, now
    cfg = preset(name, dim=head_dim, heads=1, **overrides)
    if chunk_size is None:
        chunk_size = cfg.chunk_size if name in MINIBATCH_PRESETS else 1
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG stays untouched
        torch.manual_seed(seed)
        module = NeuralMemory(cfg).to(dtype)
    with torch.no_grad():
        fresh = module.init_state(1, dtype=dtype)  # retention's constraint applied already
        weights = tuple(w[:, 0].detach().clone() for w in fresh.weights)  # (1, d_in, d_out)
        constants = module._retention_constants(1, dtype, torch.device("cpu"))
    bias = module.rule.bias
    return OperatorSetup(
        name=name,
        config=cfg,
        rule=module.rule.replace(chunk_size=chunk_size),
        theta=float(cfg.lr_init),
        retention=1.0 - cfg.forget_init if cfg.forget else None,
        momentum=cfg.momentum_init if cfg.momentum else None,
        bias_param=bias.param_init,
        initial_weights=weights,
        retention_constants=None if constants is None else tuple(c.detach() for c in constants),
        backend=backend,
    )


def write_memory(setup: OperatorSetup, state: MemoryOpState, keys: Tensor, values: Tensor) -> MemoryOpState:
    """Write ``(keys, values)`` pairs, ``(N, T, d)`` each, into the memories; returns the new state.

    The write alone: no reads are computed.
    """
    with torch.no_grad():
        _, state = operator_for(setup.backend, setup.rule)(setup.inputs(keys, values), state, setup.rule)
    return state


def read_memory(setup: OperatorSetup, state: MemoryOpState, queries: Tensor) -> Tensor:
    """``M_t(queries)``: a forward pass of the current memory, no update. ``(N, T, d) -> (N, T, d)``."""
    with torch.no_grad():
        return setup.rule.architecture.forward(state.weights, queries)


def _pairs(gen: torch.Generator, trials: int, steps: int, d: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Unit keys and values of norm ~1, ``(trials, steps, d)`` each."""
    keys = F.normalize(torch.randn(trials, steps, d, generator=gen, dtype=dtype), dim=-1)
    values = torch.randn(trials, steps, d, generator=gen, dtype=dtype) / d**0.5
    return keys, values


def _cosine(read: Tensor, values: Tensor) -> Tensor:
    """Cosine similarity per pair, ``(N, T)``; a NaN/Inf read (a diverged memory) scores NaN."""
    cos = F.cosine_similarity(read, values, dim=-1, eps=1e-12)
    return torch.where(torch.isfinite(read).all(-1), cos, torch.full_like(cos, float("nan")))


def _clone(state: MemoryOpState) -> MemoryOpState:
    def copy(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(t.clone() for t in ts)

    carried = {name: t.clone() for name, t in state.carried.items()}
    return MemoryOpState(copy(state.weights), copy(state.momentum), copy(state.anchor), state.offset, carried)


@dataclass(frozen=True)
class RecallCurve:
    """Recall as a function of age for one preset.

    Attributes:
        name: preset name.
        ages: ``(pairs,)`` ages 0 .. pairs-1 (0 = the last pair written).
        cosine: ``(pairs,)`` mean cosine similarity between read and value over the trials.
        cosine_std: ``(pairs,)`` its standard deviation over the trials.
        relative_error: ``(pairs,)`` mean ``||M(k) - v|| / ||v||``.
    """

    name: str
    ages: np.ndarray
    cosine: np.ndarray
    cosine_std: np.ndarray
    relative_error: np.ndarray


def recall_vs_age(
    name: str,
    *,
    pairs: int = 96,
    head_dim: int = 32,
    trials: int = 32,
    seed: int = 0,
    chunk_size: int | None = None,
    **overrides,
) -> RecallCurve:
    """Write ``pairs`` random (key, value) pairs, then read each back; recall vs age.

    Args:
        name: preset name.
        pairs: stream length (number of pairs written).
        head_dim: d; with ``pairs > d`` the keys cannot all be orthogonal, so old pairs interfere.
        trials: independent streams averaged.
        seed: seeds the data and the initial memory.
        chunk_size, **overrides: passed to :func:`operator_setup`.
    """
    setup = operator_setup(name, head_dim=head_dim, chunk_size=chunk_size, seed=seed, **overrides)
    dtype = setup.initial_weights[0].dtype
    gen = torch.Generator().manual_seed(seed)
    keys, values = _pairs(gen, trials, pairs, head_dim, dtype)
    state = write_memory(setup, setup.fresh_state(trials), keys, values)
    read = read_memory(setup, state, keys)
    cos = _cosine(read, values)  # (trials, pairs), position order
    rel = (read - values).norm(dim=-1) / values.norm(dim=-1)
    flip = lambda t: t.flip(-1).numpy()  # noqa: E731  position -> age order
    return RecallCurve(
        name=name,
        ages=np.arange(pairs),
        cosine=flip(cos.mean(0)),
        cosine_std=flip(cos.std(0)),
        relative_error=flip(rel.mean(0)),
    )


@dataclass(frozen=True)
class BurstResult:
    """Recall of the clean pairs written before an outlier burst (mean cosine over pairs, trials).

    Attributes:
        name: preset name.
        before: just before the burst.
        after_clean: at the end of the control stream (burst values replaced by clean ones).
        after_burst: at the end of the stream with the burst.
        recent_clean: recall of the clean pairs written *after* the burst, with the burst
            (does the memory still learn once the outliers have passed?).
        recent_control: the same pairs in the control stream.
    """

    name: str
    before: float
    after_clean: float
    after_burst: float
    recent_clean: float
    recent_control: float

    @property
    def damage(self) -> float:
        """Recall the burst cost the old pairs beyond ordinary interference: control - burst."""
        return self.after_clean - self.after_burst


def outlier_burst(
    name: str,
    *,
    before: int = 24,
    burst: int = 4,
    after: int = 8,
    burst_scale: float = 100.0,
    head_dim: int = 32,
    trials: int = 32,
    seed: int = 0,
    chunk_size: int | None = None,
    **overrides,
) -> BurstResult:
    """Clean pairs, a burst of huge-magnitude corrupted values, clean pairs; recall of the first.

    Args:
        name: preset name.
        before, burst, after: lengths of the three parts of the stream.
        burst_scale: norm of the corrupted values (clean values have norm ~1).
        head_dim, trials, seed, chunk_size, **overrides: as in :func:`recall_vs_age`.
    """
    setup = operator_setup(name, head_dim=head_dim, chunk_size=chunk_size, seed=seed, **overrides)
    dtype = setup.initial_weights[0].dtype
    gen = torch.Generator().manual_seed(seed)
    total = before + burst + after
    keys, values = _pairs(gen, trials, total, head_dim, dtype)
    outliers = F.normalize(torch.randn(trials, burst, head_dim, generator=gen, dtype=dtype), dim=-1)
    corrupted = values.clone()
    corrupted[:, before : before + burst] = burst_scale * outliers

    def mean_recall(state: MemoryOpState, lo: int, hi: int) -> float:
        cos = _cosine(read_memory(setup, state, keys[:, lo:hi]), values[:, lo:hi])
        return float(cos.mean())

    state = write_memory(setup, setup.fresh_state(trials), keys[:, :before], values[:, :before])
    recall_before = mean_recall(state, 0, before)
    # the same state continues two ways; clone it so neither run can touch the other's tensors
    control = write_memory(setup, _clone(state), keys[:, before:], values[:, before:])
    hit = write_memory(setup, _clone(state), keys[:, before:], corrupted[:, before:])
    return BurstResult(
        name=name,
        before=recall_before,
        after_clean=mean_recall(control, 0, before),
        after_burst=mean_recall(hit, 0, before),
        recent_clean=mean_recall(hit, before + burst, total),
        recent_control=mean_recall(control, before + burst, total),
    )


# the attentional biases of the presets (and the robust end of the lp family), as config overrides
ABLATION_BIASES: dict[str, dict] = {
    "l2": dict(objective="l2"),
    "lp, p=3": dict(objective="lp", p=3.0),
    "lp, p=1": dict(objective="lp", p=1.0),
    "Huber, δ=1": dict(objective="huber", huber_delta_init=1.0),
    "dot": dict(objective="dot"),
}


def bias_ablation(
    depth: int = 1, biases: dict[str, dict] | None = None, **kwargs
) -> dict[str, BurstResult]:
    """The outlier burst with only the attentional bias changed.

    Base rule: DeltaNet's (``theta = 0.25``, no decay, no momentum, token by token) on a matrix
    memory (``depth = 1``) or on the residual MLP memory (``depth = 2``); each entry of ``biases``
    (default :data:`ABLATION_BIASES`) swaps in one bias. Everything else, data included, is equal,
    so differences are the bias' alone; the library's step bound is off unless ``kwargs`` set
    ``max_step_norm`` (it would mask the biases' own behaviour). ``kwargs`` go to :func:`outlier_burst`.
    """
    biases = ABLATION_BIASES if biases is None else biases
    kwargs = {"max_step_norm": None, **kwargs}
    return {
        label: outlier_burst("deltanet", depth=depth, **{**kwargs, **change})
        for label, change in biases.items()
    }
