"""``LearningAlgorithm``: how per-token gradients become the memory's update (MIRAS sec. 3, 5.3).

MIRAS describes a memory by four choices; the fourth, the *learning algorithm* (the optimiser of
the inner loop), is this interface. An algorithm declares:

* its **gates** (:class:`GateSpec`: name, initial value, range, data-dependent or not).
  ``NeuralMemory`` builds one learned map per gate; the gates named ``"momentum"`` (eta_t) and
  ``"forget"`` (alpha_t) reach the operators as ``MemoryInputs.log_momentum`` and
  ``log_retention``, any other as ``MemoryInputs.extra_gates[name]``;
* its **recurrence** for the reference operator (:meth:`LearningAlgorithm.token_step`: one token,
  from the previous state and the token's gradient at the anchor);
* where one exists, its **chunk-parallel coefficients** (:meth:`LearningAlgorithm.chunk_coefficients`,
  :class:`~titans_memory.core.algorithms.coefficients.ChunkCoefficients`), which the chunked
  operator uses; an algorithm without them runs exactly through the reference operator, and the
  chunked one refuses it with a clear error;
* a **hook at chunk ends** (:meth:`LearningAlgorithm.chunk_end`: a transform of the momentum or of
  the weights, e.g. a Muon-style orthogonalisation of the momentum), applied by both operators
  after the chunk-end retention;
* the **tensors it carries** between calls beside weights and momentum
  (:meth:`LearningAlgorithm.carried_shapes`: e.g. a tail of the last keys and values), kept in
  ``MemoryState.carried`` and saved with it;
* its **step bound** (:meth:`LearningAlgorithm.norm_bound_step`: how the documented bound on
  ``||M_t||`` advances per token, given the per-token bound ``tau`` on ``||u_t||``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_memory.core.algorithms.coefficients import ChunkCoefficients

#: Gate names with a fixed meaning to the operators (MemoryInputs.log_momentum, .log_retention).
MOMENTUM, FORGET = "momentum", "forget"


class GateSpec(NamedTuple):
    """One gate of a learning algorithm: ``value = low + (high - low) sigmoid(raw)`` in (low, high).

    Attributes:
        name: the gate's name (``"momentum"``: eta_t; ``"forget"``: alpha_t, Titans' forget rate;
            any other: an extra per-token gate of the algorithm).
        init: the value at initialisation (every token, for a fresh layer).
        low, high: the open range of the value.
        data_dependent: True: a linear map of each token, per head (``raw = x_t w + b``); False:
            one learned value per head, the same for every token.
    """

    name: str
    init: float
    low: float = 0.0
    high: float = 1.0
    data_dependent: bool = True

    def raw_init(self) -> float:
        """The raw (pre-sigmoid) value that gives ``init``."""
        p = (self.init - self.low) / (self.high - self.low)
        return math.log(p) - math.log1p(-p)

    def value(self, raw: Tensor) -> Tensor:
        """The gate's value for raw values ``raw`` (any shape)."""
        return self.low + (self.high - self.low) * torch.sigmoid(raw)

    def validate(self, owner: str) -> None:
        """A ``ValueError`` naming ``owner`` and the gate when the spec is inconsistent."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{owner}: a gate's name must be a non-empty string, got {self.name!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{owner}: gate {self.name!r} needs finite low < high, got ({self.low}, {self.high})")
        if not self.low < self.init < self.high:
            raise ValueError(
                f"{owner}: gate {self.name!r} init must lie in ({self.low}, {self.high}), got {self.init!r}"
            )
        if self.name in (MOMENTUM, FORGET) and (self.low, self.high) != (0.0, 1.0):
            raise ValueError(f"{owner}: gate {self.name!r} must range over (0, 1)")


class GateInputs(NamedTuple):
    """An algorithm's gates as the operators take them, each ``(N, T)`` (None: the gate is off)."""

    log_retention: Tensor | None  # log(1 - alpha_t)
    log_momentum: Tensor | None  # log eta_t
    extra: dict[str, Tensor]  # the algorithm's other gates, by name (their values)


class TokenStep(NamedTuple):
    """What the reference operator hands an algorithm for token t of N memories.

    Attributes:
        weights: M_{t-1}, one ``(N, d_in, d_out)`` tensor per layer.
        momentum: S_{t-1} (for an algorithm without momentum: the last step, ``-theta u``).
        anchor: where this chunk's gradients are taken (the chunk-start weights, as the
            algorithm left them after the previous token of the chunk).
        carried: the algorithm's carried tensors by name (:meth:`LearningAlgorithm.carried_shapes`).
        lr: theta_t, ``(N, 1, 1)``.
        log_retention, log_momentum: ``(N, 1, 1)`` or None; extra: the other gates, ``(N, 1, 1)``.
        k, v: ``(N, 1, d)``, the token's key and value. param: the bias' parameter ``(N, 1, 1)``.
        gradient: ``gradient(weights, k, v, param)``: per-token gradients of the attentional bias
            at ``weights`` (one ``(N, T, d_in, d_out)`` per layer), each bounded by the rule's
            step bound; ``k, v`` ``(N, T, d)``, ``param`` ``(N, T, 1)`` or None.
        position: the token's index in the current chunk (0 .. chunk_size - 1).
    """

    weights: list[Tensor]
    momentum: list[Tensor]
    anchor: list[Tensor]
    carried: dict[str, Tensor]
    lr: Tensor
    log_retention: Tensor | None
    log_momentum: Tensor | None
    extra: dict[str, Tensor]
    k: Tensor
    v: Tensor
    param: Tensor | None
    gradient: Callable[[Sequence[Tensor], Tensor, Tensor, Tensor | None], list[Tensor]]
    position: int


class TokenUpdate(NamedTuple):
    """The state after one token: M_t, S_t, the anchor for the chunk's next token, carried."""

    weights: list[Tensor]
    momentum: list[Tensor]
    anchor: list[Tensor]
    carried: dict[str, Tensor]


class ChunkEnd(NamedTuple):
    """The state at a chunk end, as the chunk-end hook sees and returns it.

    ``momentum`` is None for an algorithm without momentum (its state's momentum is only the last
    step). Tensors are ``(N, d_in, d_out)`` per layer; ``carried`` by name.
    """

    weights: list[Tensor]
    momentum: list[Tensor] | None
    carried: dict[str, Tensor]


class LearningAlgorithm(ABC):
    """A learning algorithm of the memory (module docstring). Subclass it and register a factory
    with :func:`~titans_memory.core.algorithms.register_algorithm`.

    Class attributes:
        name: a short name, for messages.
        decayed_gradient: token t's gradient is taken at the anchor times ``prod (1 - alpha_i)``
            since the chunk start (Gated DeltaNet). The chunked operator applies it as a per-token
            row scale of the key path; the reference operator leaves it to :meth:`token_step`.
    """

    name: ClassVar[str] = "algorithm"
    decayed_gradient: bool = False

    # --- gates ---------------------------------------------------------------------------------
    @abstractmethod
    def gates(self) -> tuple[GateSpec, ...]:
        """The algorithm's gates, in the order their maps are laid out."""

    @property
    def has_momentum(self) -> bool:
        """Whether the algorithm has a momentum gate eta_t (and carries a momentum S_t)."""
        return any(g.name == MOMENTUM for g in self.gates())

    @property
    def has_forget(self) -> bool:
        """Whether the algorithm has a forget gate alpha_t."""
        return any(g.name == FORGET for g in self.gates())

    @property
    def extra_gate_names(self) -> tuple[str, ...]:
        """The names of the gates other than momentum and forget."""
        return tuple(g.name for g in self.gates() if g.name not in (MOMENTUM, FORGET))

    def gate_inputs(self, raw: Mapping[str, Tensor]) -> GateInputs:
        """Raw gate values by name (each ``(N, T)``) as the operators take them.

        ``log(1 - alpha) = logsigmoid(-raw)`` and ``log eta = logsigmoid(raw)``, computed without
        forming the sigmoid (exact for gates near 0 or 1).
        """
        specs = {g.name: g for g in self.gates()}
        log_retention = F.logsigmoid(-raw[FORGET]) if FORGET in specs else None
        log_momentum = F.logsigmoid(raw[MOMENTUM]) if MOMENTUM in specs else None
        extra = {name: specs[name].value(raw[name]) for name in self.extra_gate_names}
        return GateInputs(log_retention, log_momentum, extra)

    # --- carried state -------------------------------------------------------------------------
    def carried_shapes(self, layer_shapes: Sequence[tuple[int, int]], dim: int) -> dict[str, tuple[int, ...]]:
        """Tensors carried between calls beside weights and momentum, by name: the shape of one
        memory's (without the N axis), for a memory of ``layer_shapes`` on ``dim`` channels."""
        return {}

    def init_carried(
        self, n: int, layer_shapes: Sequence[tuple[int, int]], dim: int, dtype: torch.dtype, device
    ) -> dict[str, Tensor]:
        """The carried tensors at the start of a stream: zeros, ``(n, *shape)`` each."""
        return {
            name: torch.zeros(n, *shape, dtype=dtype, device=device)
            for name, shape in self.carried_shapes(layer_shapes, dim).items()
        }

    # --- the reference recurrence --------------------------------------------------------------
    @abstractmethod
    def token_step(self, step: TokenStep) -> TokenUpdate:
        """One token of the reference operator: the state after token t (:class:`TokenStep`)."""

    # --- the chunk-parallel form ---------------------------------------------------------------
    #: True where :meth:`chunk_coefficients` is implemented (the chunked operator can run it).
    has_chunked_form: ClassVar[bool] = False

    def chunk_coefficients(
        self,
        lr: Tensor,
        log_retention: Tensor | None,
        log_momentum: Tensor | None,
        extra: Mapping[str, Tensor],
        dtype: torch.dtype,
    ) -> ChunkCoefficients:
        """The coefficients of segments with gates ``(..., c)`` (``extra``: the other gates),
        cast to ``dtype`` (products accumulated in at least float32)."""
        raise NotImplementedError(f"the learning algorithm {self.name!r} has no chunk-parallel form")

    def operator(self, backend: str) -> Callable | None:
        """An operator of the algorithm's own for the backend called ``backend``, or None (the
        library's). For an algorithm whose exact chunk-parallel form is not a set of chunk
        coefficients (ATLAS' Omega rule: a banded window sum and a per-token orthogonalisation):
        :class:`~titans_memory.core.neural_memory.NeuralMemory` runs it in place of the named one,
        with the same signature ``op(inputs, state, rule) -> (y, state)``."""
        return None

    # --- chunk ends ----------------------------------------------------------------------------
    def chunk_end(self, end: ChunkEnd) -> ChunkEnd:
        """The hook at every chunk end, after the retention (default: nothing). Return the same
        weight tensors when only the momentum or the carried tensors change (the operators then
        skip re-reading the chunk's last token)."""
        return end

    @property
    def has_chunk_end(self) -> bool:
        """Whether :meth:`chunk_end` is overridden."""
        return type(self).chunk_end is not LearningAlgorithm.chunk_end

    # --- the step bound ------------------------------------------------------------------------
    def norm_bound_step(
        self, bound_s: Tensor, bound_m: Tensor, lr: Tensor, gates: Mapping[str, Tensor], tau: float
    ) -> tuple[Tensor, Tensor]:
        """Advance the documented bounds ``(b^S, b^M)`` on ``||S_t||_F`` and ``||M_t||_F`` by one
        token with ``||u_t||_F <= tau`` (docs/design.md, "Stability"). ``gates``: this token's
        gate values by name (eta, alpha, ...), each shaped like the bounds."""
        raise NotImplementedError(f"the learning algorithm {self.name!r} declares no step bound")


class MomentumForgetGates:
    """Titans' momentum gate eta_t and forget gate alpha_t, each switchable, for a learning
    algorithm that has them (gradient descent, the Omega rule): mix it in before
    :class:`LearningAlgorithm`. The subclass (a dataclass) has the fields ``momentum``, ``forget``
    (on or off) and ``momentum_init``, ``forget_init`` (their values at initialisation).

    It declares the gates and the two flags only; whether the algorithm has chunk coefficients
    stays the subclass' own business.
    """

    momentum: bool
    forget: bool
    momentum_init: float
    forget_init: float

    def momentum_forget_gates(self) -> list[GateSpec]:
        """The momentum gate (if on), then the forget gate (if on): the first of :meth:`gates`."""
        specs = []
        if self.momentum:
            specs.append(GateSpec(MOMENTUM, self.momentum_init))
        if self.forget:
            specs.append(GateSpec(FORGET, self.forget_init))
        return specs

    @property
    def has_momentum(self) -> bool:
        return self.momentum

    @property
    def has_forget(self) -> bool:
        return self.forget
