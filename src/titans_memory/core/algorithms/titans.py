"""Gradient descent with momentum and forgetting: Titans' learning algorithm and its special cases.

Per token t of one memory (Titans eqs. 9-15)::

    u_t = grad l(anchor; k_t, v_t)              at the chunk-start weights (Titans sec. 3.2)
    S_t = eta_t S_{t-1} - theta_t u_t          surprise with momentum               (eq. 10)
    M_t = (1 - alpha_t) M_{t-1} + S_t          forgetting, then the write            (eq. 13)

Registered as three algorithms (``core/algorithms/__init__.py``):

* ``"titans"``: momentum, and forgetting where ``MemoryConfig.forget`` says so;
* ``"no_momentum"``: eta = 0 (DeltaNet, Moneta, Yaad, Memora, TTT);
* ``"decayed_gradient"``: the gradient taken at the decayed memory ``(1 - alpha_t) M``
  (Gated DeltaNet), with or without momentum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from titans_memory.core.algorithms.base import (
    FORGET,
    MOMENTUM,
    GateSpec,
    LearningAlgorithm,
    MomentumForgetGates,
    TokenStep,
    TokenUpdate,
)
from titans_memory.core.algorithms.coefficients import ChunkCoefficients, chunk_coefficients


@dataclass(frozen=True)
class GradientDescent(MomentumForgetGates, LearningAlgorithm):
    """Gradient descent on the attentional bias, with optional momentum and forget gate.

    Attributes:
        momentum: a momentum gate eta_t in (0, 1); False: eta = 0.
        forget: a forget gate alpha_t in (0, 1); False: alpha = 0.
        decayed_gradient: the gradient at ``(1 - alpha_t) M`` (needs ``forget``).
        momentum_init, forget_init: the gates' values at initialisation.
    """

    momentum: bool = True
    forget: bool = True
    decayed_gradient: bool = False
    momentum_init: float = 0.9
    forget_init: float = 0.005

    has_chunked_form = True

    def __post_init__(self) -> None:
        if self.decayed_gradient and not self.forget:
            raise ValueError("GradientDescent.decayed_gradient needs forget=True (it decays by alpha_t)")

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.decayed_gradient:
            return "decayed_gradient"
        return "titans" if self.momentum else "no_momentum"

    def gates(self) -> tuple[GateSpec, ...]:
        return tuple(self.momentum_forget_gates())

    def token_step(self, step: TokenStep) -> TokenUpdate:
        theta = step.lr
        eta = 0.0 if step.log_momentum is None else torch.exp(step.log_momentum)
        retain = 1.0 if step.log_retention is None else torch.exp(step.log_retention)
        anchor = step.anchor
        if self.decayed_gradient:  # Gated DeltaNet: the gradient is taken at the decayed memory
            anchor = [retain * w for w in anchor]
        # u_t: gradient of the attentional bias at the anchor, one (N, d_in, d_out) per layer
        grads = [g[:, 0] for g in step.gradient(anchor, step.k, step.v, step.param)]
        momentum = [eta * s - theta * g for s, g in zip(step.momentum, grads, strict=True)]  # S_t (eq. 10)
        weights = [retain * w + s for w, s in zip(step.weights, momentum, strict=True)]  # M_t (eq. 13)
        return TokenUpdate(weights, momentum, anchor, step.carried)

    def chunk_coefficients(self, lr, log_retention, log_momentum, extra, dtype) -> ChunkCoefficients:
        return chunk_coefficients(lr, log_retention, log_momentum, dtype)

    def norm_bound_step(
        self, bound_s: Tensor, bound_m: Tensor, lr: Tensor, gates: Mapping[str, Tensor], tau: float
    ) -> tuple[Tensor, Tensor]:
        # triangle inequality on eqs. 10 and 13: b^S = eta b^S + theta tau, b^M = (1 - alpha) b^M + b^S
        eta = gates[MOMENTUM] if self.momentum else 0.0
        keep = 1.0 - gates[FORGET] if self.forget else 1.0
        bound_s = eta * bound_s + lr * tau
        return bound_s, keep * bound_m + bound_s
