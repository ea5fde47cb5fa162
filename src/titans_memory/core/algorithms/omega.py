"""OmegaNet and Atlas as learning algorithms (ATLAS, arXiv 2505.23735v1; docs/atlas.md).

Per token t of one memory, with the window's weights gamma_i and the per-token step bound on
every gradient (``u_i <- u_i min(1, tau / ||u_i||)``)::

    g_t = sum_{i=t-c+1}^{t} gamma_i grad l(M_anchor; phi(k_i), v_i)       the Omega rule (eqs. 8-9)
    OmegaNet:  S_t = eta_t S_{t-1} - theta_t g_t,   M_t = (1 - alpha_t) M_{t-1} + S_t   (eq. 10 + momentum)
    Atlas:     S_t = eta_t S_{t-1} - g_t,           M_t = (1 - alpha_t) M_{t-1} + theta_t NS_k(S_t)
                                                                                      (eqs. 32-33)

Titans' names (theta the learning rate, eta the momentum; ATLAS swaps them). The paper's OmegaNet
(eq. 10) has no momentum: ``momentum=False`` is that rule; its gates ``gamma_i^(t)`` may differ
per step, here one per token (docs/atlas.md §7).

``token_step`` is that recurrence, literally (the reference operator runs it). The window's tail
(the last c - 1 keys, values, gammas and, for a bias with a parameter, its values) is carried in
the state. The chunk-parallel form is not a set of chunk coefficients (the window is a banded
sum, and Muon's orthogonalisation is per token), so the algorithm brings its own chunked operator
(``core/omega.py``) through :meth:`OmegaRule.operator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from titans_memory.core.newton_schulz import newton_schulz, newton_schulz_gain

if TYPE_CHECKING:
    from titans_memory.core.config import MemoryConfig

#: The name of the window-weight gate gamma_i (an extra per-token gate, in (0, 1)).
GAMMA = "omega_gamma"
#: The carried tensors: the window's tail, oldest token first.
TAIL_KEYS, TAIL_VALUES, TAIL_GAMMA, TAIL_PARAM = "omega_keys", "omega_values", "omega_gamma", "omega_param"


#: The Omega rule's own operators by backend name: ``core/omega.py`` registers its chunked form
#: here when it is imported (``NeuralMemory``'s module imports it), so this module imports no
#: operator and the two stay free of import cycles.
OPERATORS: dict[str, Callable] = {}


@dataclass(frozen=True)
class OmegaRule(MomentumForgetGates, LearningAlgorithm):
    """The Omega rule with Titans' momentum and forget gate (OmegaNet) or with Muon (Atlas).

    Attributes:
        window: c >= 1, the tokens whose gradients make one update (1: the Titans rule).
        muon: Atlas' step: the momentum orthogonalised by ``ns_steps`` Newton-Schulz steps.
        ns_steps: k >= 0.
        momentum, forget: the momentum gate eta_t and the forget gate alpha_t, on or off.
        bias_param: the attentional bias has a per-token parameter (it is carried with the tail).
        momentum_init, forget_init, gamma_init: the gates' values at initialisation.
        muon_step: with Muon, a bound on ``||NS_k(S)||_F`` over all layers (the weight-norm bound).
    """

    window: int = 16
    muon: bool = False
    ns_steps: int = 5
    momentum: bool = True
    forget: bool = True
    bias_param: bool = False
    momentum_init: float = 0.9
    forget_init: float = 0.005
    gamma_init: float = 0.5
    muon_step: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise ValueError(f"OmegaRule.window (omega_window) must be an integer >= 1, got {self.window!r}")
        if not isinstance(self.ns_steps, int) or isinstance(self.ns_steps, bool) or self.ns_steps < 0:
            raise ValueError(f"OmegaRule.ns_steps (Newton-Schulz steps) must be an integer >= 0, got {self.ns_steps!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "atlas" if self.muon else "omeganet"

    # --- gates and carried state ------------------------------------------------------------------
    def gates(self) -> tuple[GateSpec, ...]:
        specs = self.momentum_forget_gates()
        if self.window > 1:  # gamma_i = sigmoid(x_i w + b): the token's weight in every window it is in
            specs.append(GateSpec(GAMMA, self.gamma_init))
        return tuple(specs)

    def carried_shapes(self, layer_shapes: Sequence[tuple[int, int]], dim: int) -> dict[str, tuple[int, ...]]:
        if self.window == 1:
            return {}
        tail, d_v = self.window - 1, layer_shapes[-1][1]
        shapes = {TAIL_KEYS: (tail, dim), TAIL_VALUES: (tail, d_v), TAIL_GAMMA: (tail,)}
        if self.bias_param:
            shapes[TAIL_PARAM] = (tail,)
        return shapes

    # --- the reference recurrence -----------------------------------------------------------------
    def token_step(self, step: TokenStep) -> TokenUpdate:
        theta = step.lr
        eta = 0.0 if step.log_momentum is None else torch.exp(step.log_momentum)
        retain = 1.0 if step.log_retention is None else torch.exp(step.log_retention)
        carried = step.carried
        if self.window == 1:  # the window is the token itself, weight 1
            keys, values, param = step.k, step.v, step.param
            gamma = torch.ones_like(step.k[..., :1])  # (N, 1, 1)
        else:  # the tail (oldest first), then this token: (N, c, ...)
            keys = torch.cat([carried[TAIL_KEYS], step.k], dim=1)
            values = torch.cat([carried[TAIL_VALUES], step.v], dim=1)
            gamma = torch.cat([carried[TAIL_GAMMA], step.extra[GAMMA][:, 0]], dim=1)[..., None]  # (N, c, 1)
            param = None
            if self.bias_param:
                param = torch.cat([carried[TAIL_PARAM], step.param[:, :, 0]], dim=1)[..., None]
        # g_t = sum_i gamma_i u_i, every u_i taken at the anchor and bounded (ATLAS eqs. 8-9)
        grads = step.gradient(step.anchor, keys, values, param)  # (N, c, d_in, d_out) per layer
        g = [(gamma[..., None] * u).sum(1) for u in grads]
        if self.muon:  # Atlas: momentum of the raw window gradient, orthogonalised, then the step (eqs. 32-33)
            momentum = [eta * s - gl for s, gl in zip(step.momentum, g, strict=True)]
            weights = [retain * w + theta * newton_schulz(s, self.ns_steps) for w, s in zip(step.weights, momentum, strict=True)]
        else:  # OmegaNet: eq. 10's step with Titans' momentum and forget gate (eqs. 12-13 at c = 1)
            momentum = [eta * s - theta * gl for s, gl in zip(step.momentum, g, strict=True)]
            weights = [retain * w + s for w, s in zip(step.weights, momentum, strict=True)]
        if self.window > 1:  # drop the oldest token, keep the last c - 1
            carried = {TAIL_KEYS: keys[:, 1:], TAIL_VALUES: values[:, 1:], TAIL_GAMMA: gamma[:, 1:, 0]}
            if self.bias_param:
                carried[TAIL_PARAM] = param[:, 1:, 0]
        return TokenUpdate(weights, momentum, step.anchor, carried)

    # --- the chunk-parallel form: an operator of its own ----------------------------------------------
    def operator(self, backend: str) -> Callable | None:
        return OPERATORS.get(backend)

    # --- the step bound ---------------------------------------------------------------------------
    def norm_bound_step(
        self, bound_s: Tensor, bound_m: Tensor, lr: Tensor, gates: Mapping[str, Tensor], tau: float
    ) -> tuple[Tensor, Tensor]:
        keep = 1.0 - gates[FORGET] if self.forget else 1.0
        if self.muon:  # whatever S_t is, theta_t NS(S_t) has norm <= theta_t muon_step
            return bound_s, keep * bound_m + lr * self.muon_step
        # ||g_t|| <= sum_i gamma_i ||u_i|| <= c tau (gamma < 1); then Titans' triangle inequality
        eta = gates[MOMENTUM] if self.momentum else 0.0
        bound_s = eta * bound_s + lr * tau * self.window
        return bound_s, keep * bound_m + bound_s


def _omega(config: MemoryConfig, muon: bool) -> OmegaRule:
    from titans_memory.core.architectures import make_architecture
    from titans_memory.core.objectives import make_bias

    if config.decayed_gradient or config.retention != "decay":
        raise ValueError(
            f"MemoryConfig.algorithm={'atlas' if muon else 'omeganet'!r} needs retention='decay' and "
            f"decayed_gradient=False, got retention={config.retention!r}, decayed_gradient={config.decayed_gradient}"
        )
    step = 1.0
    if muon:
        ranks = sum(min(a, b) for a, b in make_architecture(config).layer_shapes)
        step = newton_schulz_gain(config.ns_steps) * math.sqrt(ranks)
    return OmegaRule(
        window=config.omega_window, muon=muon, ns_steps=config.ns_steps, momentum=config.momentum,
        forget=config.forget, bias_param=make_bias(config).param_init is not None,
        momentum_init=config.momentum_init, forget_init=config.forget_init, gamma_init=config.omega_gamma_init,
        muon_step=step,
    )


def omeganet(config: MemoryConfig) -> OmegaRule:
    """``MemoryConfig(algorithm="omeganet")``: the Omega rule with Titans' momentum and forgetting."""
    return _omega(config, muon=False)


def atlas(config: MemoryConfig) -> OmegaRule:
    """``MemoryConfig(algorithm="atlas")``: the Omega rule with Muon (``ns_steps`` Newton-Schulz steps)."""
    return _omega(config, muon=True)
