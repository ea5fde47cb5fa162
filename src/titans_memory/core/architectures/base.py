"""What a memory architecture is to the operators, and the typed terms they exchange.

A memory ``M(x; W)`` is a function of its weights ``W = (W_1, ..., W_L)`` (one ``(N, d_in, d_out)``
tensor per layer, N independent memories) and of an input ``x`` of shape ``(N, T, d)``.

* The **reference** operator (``ops/recurrent.py``) needs only two things of it: the read
  :meth:`MemoryArchitecture.forward` and the per-token gradient of the attentional bias
  :meth:`MemoryArchitecture.token_gradients`. Any memory written as a plain function of
  ``(params, x)`` gets both through ``torch.func`` (:class:`FunctionalMemory`), so a new
  architecture can be tried, and checked against the reference, before anyone writes its fast path.
* The **chunked** operator (``ops/chunked.py``) needs the *dual form* (:class:`DualFormMemory`):
  every weight's gradient is an outer product ``H_l^T Delta_l`` of the layer's input and an error
  signal, and the architecture reads ``M_t(q_t)`` for every token of a chunk from the chunk-start
  weights and those factors, without forming the per-token weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from titans_memory.core.objectives import AttentionalBias


def bound_scale(norm: Tensor, tau: float) -> Tensor:
    """``min(1, tau / norm)`` as ``tau / max(tau, norm)``: 1 below the bound, differentiable; an
    infinite norm gives 0."""
    return tau / torch.clamp(norm, min=tau)


class KeyPath(NamedTuple):
    """The key path of a chunk, taken at the anchor weights.

    Per layer l: ``inputs[l]`` is the layer's input ``H_l`` ``(N, c, d_in)`` on the keys, and
    ``deltas[l]`` the error signal ``Delta_l = d loss / d (pre-activation)`` ``(N, c, d_out)``.
    Token j's gradient of layer l is the outer product ``H_l[j]^T Delta_l[j]``.
    """

    inputs: tuple[Tensor, ...]
    deltas: tuple[Tensor, ...]


class ReadCoefficients(NamedTuple):
    """Per-token terms of the dual-form read of one chunk (docs/design.md, "The dual form").

    Token t reads with ``M_t = A_t W_s + f_t S_s - sum_{j<=t} G[t, j] u_j``. The first layer's terms
    are computed by the operator for many chunks at once (its input is q itself).
    """

    decay: Tensor  # A_t, (N, c, 1): cumulative retention since the chunk start
    momentum_in: Tensor | None  # f_t, (N, c, 1): how much of the start momentum S_s is in M_t
    mix: Tensor  # G, (N, c, c): weight of u_j in M_t (lower triangular)
    q_decay: Tensor  # A_t q_t, (N, c, d)
    q_momentum: Tensor | None  # f_t q_t, (N, c, d)
    scores: Tensor  # (q_t . k_j) G[t, j], (N, c, c): the first layer's masked scores


class WriteCoefficients(NamedTuple):
    """The state after the chunk's token r: ``W' = a W + f_r S - sum_j g_j u_j``,
    ``S' = e S - sum_j p_j u_j`` (docs/design.md, "The chunk-parallel form")."""

    grad_weights: Tensor  # g_j = G[r, j], (N, c, 1)
    decay: Tensor  # a = A_r, (N, 1, 1)
    momentum_grad_weights: Tensor | None  # p_j = theta_j P[r, j], (N, c, 1)
    momentum_in: Tensor | None  # f_r, (N, 1, 1)
    momentum_decay: Tensor | None  # e = E_r, (N, 1, 1)


class MemoryArchitecture(ABC):
    """A memory network as a function of its weights (what the reference operator needs)."""

    #: True where the chunked (dual-form) operator can run this architecture.
    supports_dual_form: bool = False

    @property
    @abstractmethod
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(d_in, d_out)`` of each weight, in the row-vector convention ``h @ W``."""

    def carried_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensors the architecture carries between calls beside its weights (e.g. a second
        memory), by name, with one memory's shape; kept in ``MemoryState.carried`` and handed to
        the learning algorithm's hooks. Default: none."""
        return {}

    def init_carried(self, n: int, dtype: torch.dtype, device) -> dict[str, Tensor]:
        """The carried tensors of ``n`` fresh memories: zeros, ``(n, *shape)`` each."""
        return {name: torch.zeros(n, *shape, dtype=dtype, device=device) for name, shape in self.carried_shapes().items()}

    @abstractmethod
    def init_weights(self, heads: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Initial weights, one ``(heads, d_in, d_out)`` tensor per layer."""

    @abstractmethod
    def forward(self, weights: Sequence[Tensor], x: Tensor) -> Tensor:
        """``M(x)``: ``(N, T, d) -> (N, T, d)`` with weights ``(N, d_in, d_out)``."""

    @abstractmethod
    def token_gradients(
        self, weights: Sequence[Tensor], k: Tensor, v: Tensor, bias: AttentionalBias, param: Tensor | None
    ) -> list[Tensor]:
        """Per-token gradients of the attentional bias, ``grad_W l(M; k_t, v_t)``.

        Args:
            weights: ``(N, d_in, d_out)`` per layer, where the gradients are taken.
            k, v: ``(N, T, d)``. param: the bias' parameter ``(N, T, 1)`` or None.

        Returns:
            One ``(N, T, d_in, d_out)`` tensor per layer. Differentiable (outer-loop training
            goes through it).
        """


class DualFormMemory(MemoryArchitecture):
    """An architecture the chunked operator can run: gradients are outer products, the read of a
    chunk has a dual form. See ``architectures/mlp.py`` for the MLP family."""

    supports_dual_form = True

    @abstractmethod
    def key_path(
        self,
        anchor: Sequence[Tensor],
        k: Tensor,
        v: Tensor,
        bias: AttentionalBias,
        param: Tensor | None,
        row_scale: Tensor | None = None,
    ) -> KeyPath:
        """The factors of every token's gradient at the anchor (one forward and one explicit
        backward pass over the chunk's keys). ``row_scale`` ``(N, c, 1)``: token t's gradient at
        the weights scaled by ``row_scale_t`` (a decayed memory, Gated DeltaNet)."""

    def bounded_key_path(
        self,
        anchor: Sequence[Tensor],
        k: Tensor,
        v: Tensor,
        bias: AttentionalBias,
        param: Tensor | None,
        row_scale: Tensor | None,
        max_step_norm: float | None,
        *,
        differentiable: bool = True,
    ) -> KeyPath:
        """:meth:`key_path` with every token's gradient bounded: ``u_t <- u_t min(1, tau / ||u_t||_F)``
        (``tau = max_step_norm``; None: no bound), by scaling the error signals ``Delta_l[t]``.

        ``||u_t||_F^2 = sum_l ||H_l[t]||^2 ||Delta_l[t]||^2``: the norm comes from the factors.
        This default runs under autograd; an architecture may fuse it (``MLPMemory`` does).
        """
        path = self.key_path(anchor, k, v, bias, param, row_scale)
        if max_step_norm is None:
            return path
        per_layer = [h.norm(dim=-1) * d.norm(dim=-1) for h, d in zip(*path, strict=True)]  # (N, c) each
        norm = torch.stack(per_layer).norm(dim=0) if len(per_layer) > 1 else per_layer[0]
        scale = bound_scale(norm, max_step_norm)
        return path._replace(deltas=tuple(d * scale.unsqueeze(-1) for d in path.deltas))

    @abstractmethod
    def read_write(
        self,
        q: Tensor,
        read: ReadCoefficients,
        write: WriteCoefficients,
        weights: Sequence[Tensor],
        momentum: Sequence[Tensor] | None,
        key_path: KeyPath,
        *,
        differentiable: bool,
        inplace: bool = False,
    ) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
        """One chunk: every token's read ``M_t(q_t)`` ``(N, c, d)`` and the state after token r."""

    @abstractmethod
    def write(
        self,
        write: WriteCoefficients,
        weights: Sequence[Tensor],
        momentum: Sequence[Tensor] | None,
        key_path: KeyPath,
        *,
        inplace: bool = False,
    ) -> tuple[list[Tensor], list[Tensor] | None]:
        """One chunk, write only: the state after token r, no read."""

    def token_gradients(self, weights, k, v, bias, param):
        path = self.key_path(weights, k, v, bias, param)
        return [h.unsqueeze(-1) * d.unsqueeze(-2) for h, d in zip(path.inputs, path.deltas, strict=True)]


class FunctionalMemory(MemoryArchitecture):
    """Any memory given as a function of ``(params, x)``, for the reference operator.

    Args:
        fn: ``fn(params, x) -> M(x)`` for *one* memory: ``params`` a tuple of ``(d_in, d_out)``
            tensors, ``x`` of shape ``(T, d)``. It is batched over the N memories with
            ``torch.func.vmap``, and its per-token gradients are taken with ``torch.func.vjp``
            (so the bias' error need not be a gradient of anything).
        layer_shapes: the shapes of ``params``.
        init: ``(heads, generator) -> list of (heads, d_in, d_out)``; default: N(0, 1/d_in).

    Example, a memory with a gated output ``M(x) = (x W_1) * sigmoid(x W_2)``::

        memory = FunctionalMemory(lambda p, x: (x @ p[0]) * torch.sigmoid(x @ p[1]), [(d, d), (d, d)])
    """

    def __init__(
        self,
        fn: Callable[[tuple[Tensor, ...], Tensor], Tensor],
        layer_shapes: Sequence[tuple[int, int]],
        init: Callable[[int, torch.Generator | None], list[Tensor]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionalMemory: fn must be callable (params, x) -> M(x), got {fn!r}")
        self.fn = fn
        self._shapes = [tuple(s) for s in layer_shapes]
        self._init = init

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return list(self._shapes)

    def init_weights(self, heads, generator=None):
        if self._init is not None:
            return list(self._init(heads, generator))
        return [torch.randn(heads, a, b, generator=generator) / a**0.5 for a, b in self._shapes]

    def forward(self, weights, x):
        return torch.func.vmap(self.fn)(tuple(weights), x)

    def token_gradients(self, weights, k, v, bias, param):
        def one_token(params: tuple[Tensor, ...], k_t: Tensor, v_t: Tensor, p_t: Tensor | None):
            pred, pullback = torch.func.vjp(lambda ps: self.fn(ps, k_t[None]), params)
            error = bias.error(pred, v_t[None], None if p_t is None else p_t[None])
            return pullback(error)[0]

        # over tokens (params shared), then over memories
        per_memory = torch.func.vmap(one_token, in_dims=(None, 0, 0, 0 if param is not None else None))
        grads = torch.func.vmap(per_memory, in_dims=(0, 0, 0, 0 if param is not None else None))(
            tuple(weights), k, v, param
        )
        return list(grads)
