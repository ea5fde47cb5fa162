"""HOPE's two memories (Nested Learning, Behrouz et al., NeurIPS 2025, arXiv 2512.24695).

* :class:`ContinuumMemory`, the **continuum memory system** (CMS, sec. 7.1, eqs. 70-71): a chain of
  residual MLP blocks ``y = MLP^(f_k)(... MLP^(f_1)(x))``; block ``l`` is written in context every
  ``C_l`` tokens with the sum of its per-token gradient steps over that chunk.
* :class:`SelfModifyingMemory`, the **self-modifying Titans** (sec. 8.1-8.2, eqs. 86-93): the keys,
  values, learning rate and retention of a deep memory are produced by memories ``M_k, M_v, M_eta,
  M_alpha`` that are themselves written in context, each towards values it generates itself
  (``v_hat = M(v)``), by delta gradient descent (DGD) with weight decay.

Each comes as a literal token-by-token reference (``*_reference``, written from the equations,
gradients by ``torch.autograd.grad``) and a chunk-parallel form (explicit error signals, matmuls and
one triangular solve per chunk) with the same signature; they agree to float64 rounding in
outputs, final state and gradients. Both carry their in-context weights as a state, so any split of
a stream into calls gives the outputs of one call. The equations, and where this code departs
from the paper's text and why, are in docs/hope.md.

Conventions (as in the rest of the core): row vectors, a layer is ``h @ W`` with ``W`` of shape
``(N, d_in, d_out)``; every memory is the paper's 2-layer residual MLP (eq. 89)
``M(x) = x + act(x W_1) W_2``. The paper's ``alpha_t`` in eq. 88 is a *retention* multiplier
(``alpha_t I - eta_t k k^T``); it is called ``retention`` here: Titans' forget rate is
``1 - retention``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from titans_memory.core.algorithms import (
    FORGET,
    GateSpec,
    LearningAlgorithm,
    TokenStep,
    TokenUpdate,
    register_algorithm,
)
from titans_memory.core.architectures.activations import ACTIVATIONS

#: The memories of the self-modifying Titans, in a fixed order (eq. 88's box: k, v, eta, alpha,
#: memory; the query projection is static, as the text after eq. 85 says, though eqs. 85 and 88
#: list q in the box: docs/hope.md).
SMT_MEMORIES: tuple[str, ...] = ("k", "v", "eta", "alpha", "memory")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class HopeConfig:
    """Sizes, frequencies and switches of a HOPE block (docs/hope.md).

    Attributes:
        chunk_size: ``C`` of the self-modifying memory (eq. 90): every key, value, gate and
            gradient of a chunk is computed with the memories as the previous chunk left them.
            1 is the token-level rule (eq. 88).
        memory_expansion: hidden width of each inner memory, ``round(expansion * head_dim)``.
        self_modifying: True: ``M_k, M_v, M_eta, M_alpha`` are written in context and every
            memory writes towards its own generated value ``M(v_t)`` (eqs. 86-88). False: they
            stay at their learned initial weights (static non-linear projections) and every
            write targets ``v_t`` (the ablation "self-modification off").
        dgd: True: delta gradient descent with weight decay (eq. 88, the ``- eta k k^T`` term);
            False: plain gradient descent with retention, ``M <- retention M - eta grad``.
        lr_max: the inner learning rate is ``eta_t = lr_max * sigmoid(.)`` in ``(0, lr_max)``.
        lr_init: ``eta_t / lr_max`` at initialisation.
        retention_init: ``alpha_t`` (retention) at initialisation, in (0, 1).
        cms_chunks: ``C^(1) < C^(2) < ...``, the chunk of each CMS level (eq. 71), fastest first.
        cms_expansion: total hidden width of the CMS levels, ``round(expansion * dim)``, split
            evenly between the levels (the MLP parameters do not depend on the number of levels).
        cms_lr: a level's per-token learning rate is ``eta_t = cms_lr / C_l * sigmoid(.) /
            (1 + ||x_t||^2)``: its chunk's summed step is at most ``cms_lr`` times a mean
            normalised gradient. 0: the levels never update (a plain MLP stack).
        activation: hidden non-linearity of every memory and CMS block.
    """

    chunk_size: int = 16
    memory_expansion: float = 2.0
    self_modifying: bool = True
    dgd: bool = True
    lr_max: float = 1.0
    lr_init: float = 0.1
    retention_init: float = 0.99
    cms_chunks: tuple[int, ...] = (16, 64, 256)
    cms_expansion: float = 4.0
    cms_lr: float = 1.0
    activation: str = "silu"

    def __post_init__(self) -> None:
        if not _is_int(self.chunk_size) or self.chunk_size < 1:
            raise ValueError(f"HopeConfig.chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        chunks = self.cms_chunks
        if isinstance(chunks, list):  # accept a list, store a tuple (the config is hashable)
            chunks = tuple(chunks)
            object.__setattr__(self, "cms_chunks", chunks)
        if not isinstance(chunks, tuple) or not chunks or not all(_is_int(c) for c in chunks):
            raise ValueError(
                f"HopeConfig.cms_chunks must be a non-empty tuple of integers (one chunk per level), got {chunks!r}"
            )
        if any(c < 1 for c in chunks):
            raise ValueError(f"HopeConfig.cms_chunks must all be >= 1 (a chunk of 0 tokens never ends), got {chunks!r}")
        if any(b <= a for a, b in zip(chunks, chunks[1:], strict=False)):
            raise ValueError(
                "HopeConfig.cms_chunks must be strictly increasing (levels from the highest update "
                f"frequency to the lowest, f_1 > f_2 > ...), got {chunks!r}"
            )
        for name in ("memory_expansion", "cms_expansion", "lr_max"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0 and math.isfinite(value)):
                raise ValueError(f"HopeConfig.{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.cms_lr, int | float) and self.cms_lr >= 0 and math.isfinite(self.cms_lr)):
            raise ValueError(f"HopeConfig.cms_lr must be a finite number >= 0, got {self.cms_lr!r}")
        for name in ("lr_init", "retention_init"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < 1):
                raise ValueError(f"HopeConfig.{name} must lie strictly between 0 and 1, got {value!r}")
        for name in ("self_modifying", "dgd"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"HopeConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"HopeConfig.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")

    def to_dict(self) -> dict:
        return {**self.__dict__, "cms_chunks": list(self.cms_chunks)}

    @classmethod
    def from_dict(cls, data: dict) -> HopeConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"HopeConfig.from_dict: unknown fields {sorted(unknown)}")
        data = dict(data)
        if isinstance(data.get("cms_chunks"), list):
            data["cms_chunks"] = tuple(data["cms_chunks"])
        return cls(**data)


# ------------------------------------------------------------------------------------------------
# The residual 2-layer memory (eq. 89) and its explicit error signals
# ------------------------------------------------------------------------------------------------
def _mlp(w1: Tensor, w2: Tensor, x: Tensor, act: str) -> tuple[Tensor, Tensor, Tensor]:
    """``M(x) = x + act(x W_1) W_2``; returns ``(out, z, s)``, ``z = x W_1``, ``s = act(z)``.

    ``w1`` ``(N, d, h)``, ``w2`` ``(N, h, d)``, ``x`` ``(N, T, d)``.
    """
    z = x @ w1  # (N, T, h)
    s = ACTIVATIONS[act][0](z)
    return x + s @ w2, z, s


def _layer_signals(w2: Tensor, x: Tensor, z: Tensor, s: Tensor, err: Tensor, act: str) -> list[tuple[Tensor, Tensor]]:
    """``(a, delta)`` per layer for the loss with ``dL/dM(x) = err``: the layer's gradient is ``a^T delta``.

    ``a`` is the layer's input (``x`` for ``W_1``, ``s`` for ``W_2``), ``delta`` the loss' gradient
    with respect to the layer's output.
    """
    delta1 = (err @ w2.transpose(-1, -2)) * ACTIVATIONS[act][1](z)  # (N, T, h)
    return [(x, delta1), (s, err)]


def _l2_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


# ------------------------------------------------------------------------------------------------
# States
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelfModifyingState:
    """The in-context weights of the self-modifying memory between calls.

    Attributes:
        start: the weights as the current chunk started (every key, value, gate and gradient of
            the chunk is computed with them, eq. 90): ``(W_1, W_2)`` per memory of
            :data:`SMT_MEMORIES`, each ``(batch * heads, d_in, d_out)``.
        current: the weights after the last token (the recurrence of eq. 88 within the chunk).
        position: tokens consumed since the state was fresh; chunks are aligned to it.
    """

    start: tuple[Tensor, ...]
    current: tuple[Tensor, ...]
    position: int


@dataclass(frozen=True)
class ContinuumState:
    """The in-context weights of the CMS levels between calls.

    Attributes:
        weights: ``(W_1, W_2)`` of every level, each ``(batch, d_in, d_out)``.
        pending: the summed steps ``sum_t eta_t grad`` of every level's current chunk so far,
            applied when the chunk ends (eq. 71).
        position: tokens consumed since the state was fresh; level ``l``'s chunks are aligned to it.
    """

    weights: tuple[Tensor, ...]
    pending: tuple[Tensor, ...]
    position: int


FORMAT = "titans-miras/hope-state/1"


@dataclass(frozen=True)
class HopeState:
    """A HOPE block's carried state: its self-modifying memory and its CMS (either may be None: fresh)."""

    smt: SelfModifyingState | None = None
    cms: ContinuumState | None = None

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        if self.smt is not None:
            out |= {f"smt.start.{i}": t for i, t in enumerate(self.smt.start)}
            out |= {f"smt.current.{i}": t for i, t in enumerate(self.smt.current)}
        if self.cms is not None:
            out |= {f"cms.weights.{i}": t for i, t in enumerate(self.cms.weights)}
            out |= {f"cms.pending.{i}": t for i, t in enumerate(self.cms.pending)}
        return out

    def _map(self, fn) -> HopeState:
        smt = self.smt and SelfModifyingState(
            tuple(fn(t) for t in self.smt.start), tuple(fn(t) for t in self.smt.current), self.smt.position
        )
        cms = self.cms and ContinuumState(
            tuple(fn(t) for t in self.cms.weights), tuple(fn(t) for t in self.cms.pending), self.cms.position
        )
        return HopeState(smt, cms)

    def detach(self) -> HopeState:
        """A copy cut from the autograd graph (truncated backprop through time)."""
        return self._map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> HopeState:
        return self._map(lambda t: t.to(*args, **kwargs))

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to a ``.safetensors`` file (tensors and plain-text metadata only)."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().clone().cpu() for k, v in self.tensors().items()}
        meta = {"format": FORMAT}
        if self.smt is not None:
            meta |= {"smt.position": str(self.smt.position), "smt.layers": str(len(self.smt.start))}
        if self.cms is not None:
            meta |= {"cms.position": str(self.cms.position), "cms.layers": str(len(self.cms.weights))}
        save_file(tensors, os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> HopeState:
        """Read a state written by :meth:`save`; plain tensors and text, no code is executed.

        Raises:
            ValueError: not a file, not a HOPE state, or a field missing or malformed.
        """
        from titans_memory.core.state import int_field, open_state_file

        source, handle = open_state_file(path, "HopeState", device)
        with handle as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{source!r} is not a HopeState file (metadata {meta})")
            names = set(f.keys())

            def number(key: str) -> int:
                return int_field(meta, key, source, minimum=0, kind="HopeState")

            def group(prefix: str, n: int) -> tuple[Tensor, ...]:
                missing = [f"{prefix}.{i}" for i in range(n) if f"{prefix}.{i}" not in names]
                if missing:
                    raise ValueError(f"{source!r}: tensors {missing} are missing")
                return tuple(f.get_tensor(f"{prefix}.{i}") for i in range(n))

            smt = cms = None
            if "smt.position" in meta:
                n = number("smt.layers")
                smt = SelfModifyingState(group("smt.start", n), group("smt.current", n), number("smt.position"))
            if "cms.position" in meta:
                n = number("cms.layers")
                cms = ContinuumState(group("cms.weights", n), group("cms.pending", n), number("cms.position"))
        return cls(smt, cms)


# ------------------------------------------------------------------------------------------------
# The continuum memory system (sec. 7.1)
# ------------------------------------------------------------------------------------------------
class ContinuumMemory(nn.Module):
    """The CMS: ``y_t = MLP^(f_k)(... MLP^(f_1)(x_t))`` (eq. 70), level ``l`` written every ``C_l`` tokens.

    Level ``l`` is ``MLP_l(x) = x + act(x W_1) W_2`` with in-context weights ``theta_l``; its
    objective at token ``t`` (its input ``x_t``) is the associative-memory loss

        ``L_l(theta; x_t) = 1/2 || MLP_l(x_t; theta) - x_t W_v^(l) ||^2``

    (``W_v^(l)`` a learned value projection; docs/hope.md says why this local objective), and
    eq. 71 writes it: ``theta_{i+1} = theta_i - sum_{t in chunk} eta_t grad L_l(theta_t; x_t)`` when
    token ``i`` ends a chunk of ``C_l`` tokens, else ``theta_{i+1} = theta_i``. Inside a chunk the
    weights do not move, so every gradient of the chunk is at the same weights and the chunk is
    one batched forward, one batched backward and two matmuls: that is :meth:`forward`;
    :meth:`forward_reference` runs the same rule token by token with autograd gradients.

    A token is read with the weights of the chunks that ended before it (causal); the initial
    weights ``theta_l,0`` are learned in the outer loop (the sequential CMS, eq. 73).
    """

    def __init__(self, dim: int, config: HopeConfig) -> None:
        super().__init__()
        self.dim, self.config = dim, config
        levels = len(config.cms_chunks)
        self.hidden = max(1, int(round(config.cms_expansion * dim / levels)))
        h = self.hidden
        self.w1 = nn.ParameterList(nn.Parameter(torch.randn(dim, h) / math.sqrt(dim)) for _ in range(levels))
        self.w2 = nn.ParameterList(nn.Parameter(torch.randn(h, dim) * math.sqrt(0.1 / h)) for _ in range(levels))
        self.w_value = nn.ParameterList(
            nn.Parameter(torch.eye(dim) + torch.randn(dim, dim) * (0.1 / math.sqrt(dim))) for _ in range(levels)
        )
        self.lr_weight = nn.Parameter(torch.zeros(levels, dim))
        self.lr_bias = nn.Parameter(torch.full((levels,), _logit(0.5)))

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.config.cms_chunks

    def init_state(self, batch_size: int) -> ContinuumState:
        """The state of fresh streams: every level at its learned initial weights, nothing pending."""
        weights: list[Tensor] = []
        for w1, w2 in zip(self.w1, self.w2, strict=True):
            weights += [w1.expand(batch_size, *w1.shape), w2.expand(batch_size, *w2.shape)]
        pending = tuple(torch.zeros_like(w) for w in weights)
        return ContinuumState(tuple(weights), pending, 0)

    def learning_rates(self, level: int, x: Tensor) -> Tensor:
        """``eta_t`` of level ``level`` for inputs ``x`` ``(B, T, dim)``: ``(B, T)``.

        ``eta_t = cms_lr / C_l * sigmoid(w . x_t + b) / (1 + ||x_t||^2)``: a normalised step (as in
        normalised LMS), so that a chunk's summed step does not grow with the input's scale; with
        raw rates, a level fed vectors of norm 8 diverged within 20 tokens at ``cms_lr = 1``.
        """
        scale = self.config.cms_lr / self.chunks[level]
        gate = torch.sigmoid(x @ self.lr_weight[level] + self.lr_bias[level])
        return scale * gate / (1.0 + (x * x).sum(-1))

    def _check(self, x: Tensor, state: ContinuumState | None) -> ContinuumState:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be a tensor of shape (batch, time, {self.dim}), got {getattr(x, 'shape', x)!r}")
        if state is None:
            return self.init_state(x.shape[0])
        if not isinstance(state, ContinuumState):
            raise TypeError(f"state must be a ContinuumState or None, got {type(state).__name__}")
        if state.weights[0].shape[0] != x.shape[0]:
            raise ValueError(f"state holds {state.weights[0].shape[0]} streams but x has batch size {x.shape[0]}")
        return state

    def forward(self, x: Tensor, state: ContinuumState | None = None) -> tuple[Tensor, ContinuumState]:
        """Chunk-parallel form. ``x`` ``(B, T, dim)`` -> ``(y, state)``, ``y`` ``(B, T, dim)`` the chain's output."""
        state = self._check(x, state)
        act, pos0, T = self.config.activation, state.position, x.shape[1]
        weights, pending = list(state.weights), list(state.pending)
        h = x
        for level, C in enumerate(self.chunks):
            w1, w2 = weights[2 * level], weights[2 * level + 1]
            acc1, acc2 = pending[2 * level], pending[2 * level + 1]
            eta = self.learning_rates(level, h)  # (B, T)
            target = h @ self.w_value[level]  # (B, T, dim): the level's values
            outs, start = [], 0
            while start < T:
                stop = min(T, start + C - (pos0 + start) % C)  # the piece ends at the chunk's end or at T
                xs = h[:, start:stop]
                out, z, s = _mlp(w1, w2, xs, act)
                outs.append(out)
                if self.config.cms_lr > 0:
                    err = out - target[:, start:stop]  # dL/dMLP(x) for the 1/2 ||.||^2 loss
                    e = eta[:, start:stop, None]
                    (a1, d1), (a2, d2) = _layer_signals(w2, xs, z, s, err, act)
                    acc1 = acc1 + a1.transpose(1, 2) @ (e * d1)  # sum_t eta_t a_t^T delta_t (eq. 71)
                    acc2 = acc2 + a2.transpose(1, 2) @ (e * d2)
                    if (pos0 + stop) % C == 0:  # the chunk ended: apply its summed step
                        w1, w2 = w1 - acc1, w2 - acc2
                        acc1, acc2 = torch.zeros_like(acc1), torch.zeros_like(acc2)
                start = stop
            h = torch.cat(outs, dim=1) if outs else h
            weights[2 * level], weights[2 * level + 1] = w1, w2
            pending[2 * level], pending[2 * level + 1] = acc1, acc2
        return h, ContinuumState(tuple(weights), tuple(pending), pos0 + T)

    def forward_reference(self, x: Tensor, state: ContinuumState | None = None) -> tuple[Tensor, ContinuumState]:
        """Literal eqs. 70-71, token by token, gradients by ``torch.autograd.grad``; same signature as :meth:`forward`."""
        state = self._check(x, state)
        act, pos = self.config.activation, state.position
        weights, pending = list(state.weights), list(state.pending)
        outputs = []
        with torch.enable_grad():
            for t in range(x.shape[1]):
                h = x[:, t : t + 1]  # (B, 1, dim)
                for level, C in enumerate(self.chunks):
                    w1, w2 = weights[2 * level], weights[2 * level + 1]
                    a = _grad_leaf(w1), _grad_leaf(w2)
                    out = _mlp(a[0], a[1], h, act)[0]  # eq. 70: this level's output, read before any write
                    if self.config.cms_lr > 0:
                        target = h @ self.w_value[level]
                        loss = 0.5 * ((out - target) ** 2).sum()  # the streams are independent: sum
                        g1, g2 = torch.autograd.grad(loss, a, create_graph=True)
                        eta = self.learning_rates(level, h)[:, 0, None, None]  # (B, 1, 1)
                        pending[2 * level] = pending[2 * level] + eta * g1
                        pending[2 * level + 1] = pending[2 * level + 1] + eta * g2
                        if (pos + 1) % C == 0:  # eq. 71: i = 0 (mod C_l)
                            weights[2 * level] = w1 - pending[2 * level]
                            weights[2 * level + 1] = w2 - pending[2 * level + 1]
                            pending[2 * level] = torch.zeros_like(pending[2 * level])
                            pending[2 * level + 1] = torch.zeros_like(pending[2 * level + 1])
                    h = out
                outputs.append(h)
                pos += 1
        y = torch.cat(outputs, dim=1) if outputs else x
        return y, ContinuumState(tuple(weights), tuple(pending), pos)


def _grad_leaf(w: Tensor) -> Tensor:
    """A node to differentiate the inner loss by, that still carries the outer loop's graph."""
    return w.clone() if w.requires_grad else w.detach().requires_grad_(True)


# ------------------------------------------------------------------------------------------------
# The self-modifying Titans (sec. 8.1-8.2)
# ------------------------------------------------------------------------------------------------
def _decay_write(w0: Tensor, a: Tensor, delta: Tensor, eta: Tensor, log_ret: Tensor, dgd: bool) -> Tensor:
    """The weights after ``c`` tokens of eq. 88's recurrence, in parallel.

    Per token ``t`` (row convention ``out = a W``)::

        W_t = alpha_t W_{t-1} - eta'_t a_t^T (a_t W_{t-1} + delta_t)     DGD (eq. 88, 93)
        W_t = alpha_t W_{t-1} - eta_t  a_t^T delta_t                      plain GD with retention

    with ``a_t``, ``delta_t`` fixed inside the chunk (taken at the chunk-start weights, eq. 90) and
    ``eta'_t = eta_t / (1 + eta_t ||a_t||^2)`` (the Sherman-Morrison step of DGD, eq. 57, for any
    input norm). With ``gamma_t = prod_{i<=t} alpha_i`` and ``u_t = a_t W_{t-1} + delta_t``::

        W_c = gamma_c W_0 - sum_j (gamma_c / gamma_j) eta'_j a_j^T u_j
        u_t + sum_{j<t} (gamma_{t-1} / gamma_j) eta'_j (a_t . a_j) u_j = gamma_{t-1} a_t W_0 + delta_t

    a unit lower-triangular system in ``U`` (``c x c``), solved once per chunk.

    Args:
        w0: ``(N, d_in, d_out)``; a ``(N, c, d_in)``; delta ``(N, c, d_out)``; eta, log_ret ``(N, c)``.
    """
    cum = torch.cumsum(log_ret, dim=1)  # log gamma_t, (N, c)
    if dgd:
        eta = eta / (1.0 + eta * (a * a).sum(-1))
        prev = F.pad(cum[:, :-1], (1, 0))  # log gamma_{t-1}
        rhs = torch.exp(prev)[..., None] * (a @ w0) + delta  # (N, c, d_out)
        c = a.shape[1]
        strict = torch.ones(c, c, dtype=torch.bool, device=a.device).tril(-1)
        ratio = torch.exp((prev[:, :, None] - cum[:, None, :]).masked_fill(~strict, float("-inf")))
        lower = ratio * eta[:, None, :] * (a @ a.transpose(1, 2))  # (N, c, c), zero on and above the diagonal
        eye = torch.eye(c, dtype=a.dtype, device=a.device)
        u = torch.linalg.solve_triangular(eye + lower, rhs, upper=False, unitriangular=True)
    else:
        u = delta
    coef = torch.exp(cum[:, -1:] - cum) * eta  # (N, c): (gamma_c / gamma_j) eta'_j
    return torch.exp(cum[:, -1])[:, None, None] * w0 - a.transpose(1, 2) @ (coef[..., None] * u)


class SelfModifyingMemory(nn.Module):
    """The self-modifying deep memory of HOPE (eqs. 86-91), multi-head.

    Per head, with ``u_t = x_t W_u`` (the head's input) and the static query ``q_t = x_t W_q``
    ("the only non-adaptive projection", sec. 8.1 after eq. 85), the memories as the current chunk started
    (``M_box`` for ``box`` in k, v, eta, alpha, memory) give (eq. 90)::

        k_t = normalize(M_k(u_t))      v_t = normalize(M_v(u_t))              (eq. 86)
        eta_t = lr_max sigmoid(w_eta . M_eta(u_t) + b_eta)                    learning rate
        alpha_t = sigmoid(w_alpha . M_alpha(u_t) + b_alpha)                   retention (weight decay)
        y_t = M_memory(normalize(q_t))                                        the read
        v_hat_box,t = M_box(v_t)                                              self-generated values (eq. 87)
        M_box,t = M_box,t-1 (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_box; k_t, v_hat_box,t)   (eq. 88)

    ``L(M; k, v) = 1/2 ||M(k) - v||^2`` (the paper's L2 regression, whose gradient eq. 93 uses), its gradient at the
    chunk-start weights (eq. 90); per layer the decay ``k k^T`` uses the layer's own input (``k``
    for ``W_1``, ``act(k W_1)`` for ``W_2``). ``chunk_size = 1`` is the token rule (eq. 88). The
    head outputs are concatenated and projected by ``W_o``. The initial weights of every memory
    are learned in the outer loop (meta-learned, sec. 8.1).

    :meth:`forward` is the chunk-parallel form (:func:`_decay_write`); :meth:`forward_reference`
    runs eqs. 88/90 token by token with explicit matrices and autograd gradients.
    """

    def __init__(self, dim: int, heads: int, config: HopeConfig) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.dim, self.heads, self.config = dim, heads, config
        self.head_dim = d = dim // heads
        self.hidden = h = max(1, int(round(config.memory_expansion * d)))
        self.w_u = nn.Linear(dim, dim, bias=False)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim, bias=False)
        self.init1 = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(heads, d, h) / math.sqrt(d)) for m in SMT_MEMORIES}
        )
        self.init2 = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(heads, h, d) * math.sqrt(0.1 / h)) for m in SMT_MEMORIES}
        )
        # small random readouts: zeros would leave M_eta and M_alpha without a gradient at first
        self.lr_weight = nn.Parameter(torch.randn(heads, d) * (0.1 / math.sqrt(d)))
        self.lr_bias = nn.Parameter(torch.full((heads,), _logit(config.lr_init)))
        self.ret_weight = nn.Parameter(torch.randn(heads, d) * (0.1 / math.sqrt(d)))
        self.ret_bias = nn.Parameter(torch.full((heads,), _logit(config.retention_init)))

    @property
    def written(self) -> tuple[str, ...]:
        """The memories written in context: all of them when self-modifying, else the memory alone."""
        return SMT_MEMORIES if self.config.self_modifying else ("memory",)

    def init_state(self, batch_size: int) -> SelfModifyingState:
        """Fresh streams: every memory at its learned initial weights, ``(batch * heads, d_in, d_out)``."""
        weights: list[Tensor] = []
        for m in SMT_MEMORIES:
            for p in (self.init1[m], self.init2[m]):
                weights.append(p.expand(batch_size, *p.shape).reshape(batch_size * self.heads, *p.shape[1:]))
        return SelfModifyingState(tuple(weights), tuple(weights), 0)

    def _check(self, x: Tensor, state: SelfModifyingState | None) -> SelfModifyingState:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be a tensor of shape (batch, time, {self.dim}), got {getattr(x, 'shape', x)!r}")
        if state is None:
            return self.init_state(x.shape[0])
        if not isinstance(state, SelfModifyingState):
            raise TypeError(f"state must be a SelfModifyingState or None, got {type(state).__name__}")
        if state.start[0].shape[0] != x.shape[0] * self.heads:
            raise ValueError(
                f"state holds {state.start[0].shape[0] // self.heads} streams but x has batch size {x.shape[0]}"
            )
        return state

    def _heads(self, x: Tensor, proj: nn.Linear) -> Tensor:
        B, T, _ = x.shape
        return proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2).reshape(B * self.heads, T, self.head_dim)

    def _merge(self, y: Tensor, batch: int) -> Tensor:
        T = y.shape[1]
        return self.w_o(y.view(batch, self.heads, T, self.head_dim).transpose(1, 2).reshape(batch, T, self.dim))

    def _readout(self, out: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """``w . out + b`` per head: ``out`` ``(B * H, T, d)`` -> ``(B * H, T)``."""
        n = out.shape[0] // self.heads
        w = weight.repeat(n, 1)[:, None, :]  # (B * H, 1, d), row b*H + h is head h
        return (out * w).sum(-1) + bias.repeat(n)[:, None]

    def _elements(self, weights: dict[str, tuple[Tensor, Tensor]], u: Tensor, q: Tensor):
        """Eq. 86 with the given (chunk-start) memories: ``k, v, eta, log alpha, y`` for a piece."""
        act = self.config.activation
        k = _l2_normalize(_mlp(*weights["k"], u, act)[0])
        # v normalised too (the paper normalises q and k): with raw values the self-generated
        # targets M(v) diverged within a few chunks (docs/hope.md, "Stability")
        v = _l2_normalize(_mlp(*weights["v"], u, act)[0])
        eta = self.config.lr_max * torch.sigmoid(self._readout(_mlp(*weights["eta"], u, act)[0], self.lr_weight, self.lr_bias))
        log_ret = F.logsigmoid(self._readout(_mlp(*weights["alpha"], u, act)[0], self.ret_weight, self.ret_bias))
        y = _mlp(*weights["memory"], _l2_normalize(q), act)[0]
        return k, v, eta, log_ret, y

    @staticmethod
    def _named(flat: Sequence[Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        return {m: (flat[2 * i], flat[2 * i + 1]) for i, m in enumerate(SMT_MEMORIES)}

    def forward(self, x: Tensor, state: SelfModifyingState | None = None) -> tuple[Tensor, SelfModifyingState]:
        """Chunk-parallel form (eq. 90). ``x`` ``(B, T, dim)`` -> ``(y, state)``, ``y`` ``(B, T, dim)``."""
        state = self._check(x, state)
        cfg, act, C = self.config, self.config.activation, self.config.chunk_size
        u_all, q_all = self._heads(x, self.w_u), self._heads(x, self.w_q)  # (B * H, T, d)
        start, current, pos0, T = self._named(state.start), self._named(state.current), state.position, x.shape[1]
        ys, s = [], 0
        while s < T:
            e = min(T, s + C - (pos0 + s) % C)  # the piece ends at the chunk's end or at T
            u, q = u_all[:, s:e], q_all[:, s:e]
            k, v, eta, log_ret, y = self._elements(start, u, q)
            ys.append(y)
            # the written memories side by side along the batch dimension: one call per layer
            names, n = self.written, len(self.written)
            w1 = torch.cat([start[m][0] for m in names])  # (n * N, d, h)
            w2 = torch.cat([start[m][1] for m in names])
            kk, vv = k.repeat(n, 1, 1), v.repeat(n, 1, 1)
            target = _mlp(w1, w2, vv, act)[0] if cfg.self_modifying else vv  # eq. 87: v_hat = M(v)
            out, z, sig = _mlp(w1, w2, kk, act)
            signals = _layer_signals(w2, kk, z, sig, out - target, act)  # grad L(M; k, v_hat), eq. 93
            eta_n, ret_n = eta.repeat(n, 1), log_ret.repeat(n, 1)
            written = [
                _decay_write(torch.cat([current[m][layer] for m in names]), a, delta, eta_n, ret_n, cfg.dgd).chunk(n)
                for layer, (a, delta) in enumerate(signals)
            ]
            current = dict(current) | {m: (written[0][i], written[1][i]) for i, m in enumerate(names)}
            if (pos0 + e) % C == 0:  # the chunk is complete: the next one starts from here
                start = current
            s = e
        y = torch.cat(ys, dim=1) if ys else q_all
        flat = lambda d: tuple(t for m in SMT_MEMORIES for t in d[m])  # noqa: E731
        return self._merge(y, x.shape[0]), SelfModifyingState(flat(start), flat(current), pos0 + T)

    def forward_reference(
        self, x: Tensor, state: SelfModifyingState | None = None
    ) -> tuple[Tensor, SelfModifyingState]:
        """Literal eqs. 86-90, one token at a time; same signature as :meth:`forward`.

        At each chunk start the memories are snapshot (``start``); token ``t`` computes its
        elements and the gradient of ``L(M_box; k_t, v_hat_box,t)`` (``torch.autograd.grad``,
        ``v_hat`` held as data) at the snapshot, then applies eq. 88 with the explicit matrix
        ``alpha_t I - eta'_t a_t a_t^T`` to the running weights.
        """
        state = self._check(x, state)
        cfg, act, C = self.config, self.config.activation, self.config.chunk_size
        u_all, q_all = self._heads(x, self.w_u), self._heads(x, self.w_q)
        start, current, pos = self._named(state.start), self._named(state.current), state.position
        ys = []
        with torch.enable_grad():
            for t in range(x.shape[1]):
                if pos % C == 0:
                    start = current
                u, q = u_all[:, t : t + 1], q_all[:, t : t + 1]
                k, v, eta, log_ret, y = self._elements(start, u, q)
                ys.append(y)
                alpha, eta = torch.exp(log_ret)[:, 0, None, None], eta[:, 0, None, None]  # (N, 1, 1)
                new = dict(current)
                for m in self.written:
                    w1, w2 = start[m]
                    target = _mlp(w1, w2, v, act)[0] if cfg.self_modifying else v
                    leaves = _grad_leaf(w1), _grad_leaf(w2)
                    out, z, sig = _mlp(leaves[0], leaves[1], k, act)
                    loss = 0.5 * ((out - target) ** 2).sum()
                    grads = torch.autograd.grad(loss, leaves, create_graph=True)
                    updated = []
                    for w, a, g in zip(current[m], (k, sig), grads, strict=True):
                        a = a[:, 0, :, None]  # (N, d_in, 1): the layer's input, a column
                        if cfg.dgd:
                            step = eta / (1.0 + eta * (a * a).sum(1, keepdim=True))
                            eye = torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
                            decay = alpha * eye - step * (a @ a.transpose(1, 2))  # alpha I - eta' a a^T
                            updated.append(decay @ w - step * g)
                        else:
                            updated.append(alpha * w - eta * g)
                    new[m] = tuple(updated)
                current = new
                pos += 1
            if pos % C == 0:
                start = current
        y = torch.cat(ys, dim=1) if ys else q_all
        flat = lambda d: tuple(t for m in SMT_MEMORIES for t in d[m])  # noqa: E731
        return self._merge(y, x.shape[0]), SelfModifyingState(flat(start), flat(current), pos)


# ------------------------------------------------------------------------------------------------
# DGD as a learning algorithm of the library's memory (the algorithms registry)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeltaGradientDescent(LearningAlgorithm):
    """Delta gradient descent with retention (Nested Learning eqs. 57, 88, 93) for a matrix memory.

    Per token, row convention (``y = k M``), gradient ``u_t`` at the chunk-start weights::

        M_t = (alpha_t I - eta'_t k_t^T k_t) M_{t-1} - eta'_t u_t,   eta'_t = theta_t / (1 + theta_t ||k_t||^2)

    with ``alpha_t = 1 - forget_t`` (this library's Titans forget gate) and ``theta_t`` the memory's
    inner learning rate. Reference only: the recurrence is matrix-valued (``k^T k`` inside), which
    the chunked operator's scalar coefficients do not express; :func:`_decay_write` is its parallel
    form for HOPE's memories. ``MemoryConfig(algorithm="dgd", depth=1, momentum=False)``.
    """

    forget: bool = True
    forget_init: float = 0.005
    name = "dgd"

    def gates(self) -> tuple[GateSpec, ...]:
        return (GateSpec(FORGET, self.forget_init),) if self.forget else ()

    def token_step(self, step: TokenStep) -> TokenUpdate:
        retain = 1.0 if step.log_retention is None else torch.exp(step.log_retention)  # (N, 1, 1)
        (grad,) = [g[:, 0] for g in step.gradient(step.anchor, step.k, step.v, step.param)]
        (w,) = step.weights
        k = step.k  # (N, 1, d): the key is the layer's input
        eta = step.lr / (1.0 + step.lr * (k * k).sum(-1, keepdim=True))  # the Sherman-Morrison step
        new = retain * w - eta * k.transpose(1, 2) @ (k @ w) - eta * grad
        return TokenUpdate([new], [new - retain * w], step.anchor, step.carried)


def _dgd(config) -> DeltaGradientDescent:
    if config.depth != 1 or config.momentum or config.decayed_gradient:
        raise ValueError(
            "MemoryConfig.algorithm='dgd' is written for a matrix memory without momentum: it needs depth=1, "
            f"momentum=False and decayed_gradient=False, got depth={config.depth}, momentum={config.momentum}, "
            f"decayed_gradient={config.decayed_gradient}"
        )
    return DeltaGradientDescent(config.forget, config.forget_init)


register_algorithm("dgd", _dgd, replace=True)
