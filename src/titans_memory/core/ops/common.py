"""What the memory operators share: their inputs, the carried state and the argument checks.

Every operator has one signature::

    y, state = op(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule)

``inputs.q = None`` asks for the write alone (no reads computed; ``y`` is None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from titans_memory.core.rule import UpdateRule


class MemoryInputs(NamedTuple):
    """Per-token inputs of N independent memories over T tokens.

    Attributes:
        q: ``(N, T, d)`` queries, or None to write without reading.
        k, v: ``(N, T, d)`` keys and values (keys l2-normalised: docs/design.md, "Stability").
        lr: ``(N, T)`` inner learning rate theta_t > 0.
        log_retention: ``(N, T)`` log(1 - alpha_t), or None when the rule does not forget.
        log_momentum: ``(N, T)`` log(eta_t), or None when the rule has no momentum.
        bias_param: ``(N, T)`` the attentional bias' per-token parameter (Huber's delta_t) or None.
        retention_constants: the chunk-end retention's constants, one ``(N, 1, 1)`` tensor per
            layer (Moneta's q-norm radius), or None.
        extra_gates: the learning algorithm's other per-token gates by name, ``(N, T)`` each
            (:attr:`LearningAlgorithm.extra_gate_names`), or None when it has none.
    """

    q: Tensor | None
    k: Tensor
    v: Tensor
    lr: Tensor
    log_retention: Tensor | None = None
    log_momentum: Tensor | None = None
    bias_param: Tensor | None = None
    retention_constants: tuple[Tensor, ...] | None = None
    extra_gates: dict[str, Tensor] | None = None


#: The carried tensors of a state that carries none (never mutated: operators build new dicts).
NO_CARRIED: dict[str, Tensor] = {}


class MemoryOpState(NamedTuple):
    """State of N independent memories between two calls of a memory operator.

    ``weights`` (M_t), ``momentum`` (S_t) and ``anchor`` (where the current chunk's gradients are
    taken: the chunk-start weights, times the decay since the chunk start for a rule with
    ``decayed_gradient``) are tuples with one ``(N, d_in, d_out)`` tensor per memory layer.
    ``offset`` is how many tokens of the current chunk are already consumed
    (0 <= offset < chunk_size); at 0 the anchor equals the weights. ``carried`` holds the named
    tensors the learning algorithm declares (:meth:`LearningAlgorithm.carried_shapes`), ``(N, ...)``
    each.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]
    anchor: tuple[Tensor, ...]
    offset: int
    carried: dict[str, Tensor] = NO_CARRIED


def fresh_op_state(initial_weights: Sequence[Tensor], rule: UpdateRule | None = None) -> MemoryOpState:
    """State at the start of a sequence: weights = anchor = initial weights, momentum = 0, and
    (with ``rule``) the algorithm's carried tensors at their initial values."""
    weights = tuple(initial_weights)
    carried = NO_CARRIED
    if rule is not None:
        carried = rule.init_carried(weights[0].shape[0], weights[0].dtype, weights[0].device)
    return MemoryOpState(weights, tuple(torch.zeros_like(w) for w in weights), weights, 0, carried)


def check_op_inputs(inputs: MemoryInputs, state: MemoryOpState, rule: UpdateRule) -> None:
    """Shape and consistency checks shared by the operators (cheap: no device sync)."""
    if not isinstance(inputs, MemoryInputs):
        raise TypeError(f"inputs must be a MemoryInputs, got {type(inputs).__name__}")
    if not isinstance(state, MemoryOpState):
        raise TypeError(f"state must be a MemoryOpState, got {type(state).__name__}")
    k, v = inputs.k, inputs.v
    shapes = rule.architecture.layer_shapes
    # keys read through a feature map (ATLAS) are wider than the values: d_in != d_out
    narrow_v = v.dim() == 3 and v.shape[:2] == k.shape[:2] and v.shape[-1] == shapes[-1][1] != shapes[0][0]
    if k.dim() != 3 or (v.shape != k.shape and not narrow_v) or (inputs.q is not None and inputs.q.shape != k.shape):
        q_shape = None if inputs.q is None else tuple(inputs.q.shape)
        raise ValueError(
            f"q, k, v must share one shape (N, T, d); got {q_shape}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    per_token = (
        ("lr", inputs.lr, True),
        ("log_retention", inputs.log_retention, rule.forget),
        ("log_momentum", inputs.log_momentum, rule.momentum),
        ("bias_param", inputs.bias_param, rule.bias.param_init is not None),
    )
    extra = inputs.extra_gates or {}
    wanted_extra = rule.algorithm.extra_gate_names
    if set(extra) != set(wanted_extra):
        raise ValueError(
            f"inputs.extra_gates must hold the gates {sorted(wanted_extra)} of the learning algorithm "
            f"{rule.algorithm.name!r}, got {sorted(extra)}"
        )
    per_token += tuple((f"extra_gates[{name!r}]", extra[name], True) for name in wanted_extra)
    for name, gate, wanted in per_token:
        if (gate is not None) != wanted:
            need = "is required by" if wanted else "must be None for"
            raise ValueError(f"inputs.{name} {need} this rule")
        if gate is not None and gate.shape != k.shape[:2]:
            raise ValueError(f"inputs.{name} must have shape (N, T) = {tuple(k.shape[:2])}, got {tuple(gate.shape)}")
    if not isinstance(state.carried, dict):
        raise TypeError(f"state.carried must be a dict of tensors, got {type(state.carried).__name__}")
    wanted_carried = rule.carried_shapes()
    if set(state.carried) != set(wanted_carried):
        raise ValueError(
            f"state.carried must hold {sorted(wanted_carried)} (what the learning algorithm and the "
            f"architecture declare), got {sorted(state.carried)}"
        )
    if not 0 <= state.offset < rule.chunk_size:
        raise ValueError(f"state.offset must be in [0, chunk_size={rule.chunk_size}), got {state.offset}")
    layers = len(rule.architecture.layer_shapes)
    if not len(state.weights) == len(state.momentum) == len(state.anchor) == layers:
        raise ValueError(
            f"state.weights, state.momentum and state.anchor must have one entry per layer ({layers})"
        )
    n, _, d = k.shape
    if state.weights[0].shape[0] != n or state.weights[0].shape[-2] != d:
        raise ValueError(f"state weights {tuple(state.weights[0].shape)} do not fit inputs with N={n}, d={d}")
