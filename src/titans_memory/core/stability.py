"""The stability envelope: the memory stays finite and under a documented weight-norm bound for
inputs of any scale, bursts of outliers, and gates pushed to their limits (docs/design.md,
"Stability").

**The bound.** With the per-token step bound ``||u_t||_F <= tau`` (``max_step_norm``), the
triangle inequality applied to Titans eqs. 10 and 13 gives, per memory (all layers together)::

    ||S_t|| <= b^S_t = eta_t b^S_{t-1} + theta_t tau                         (b^S_0 = ||S_0||)
    ||M_t|| <= b^M_t = (1 - alpha_t) b^M_{t-1} + b^S_t                      (b^M_0 = ||M_0||)

and at chunk ends a retention replaces ``b^M`` by what it guarantees (Moneta's Lq sphere and
Memora's simplex have a fixed size; the elastic net's soft threshold only shrinks). The bound
follows the actual gates token by token, so it holds for any gate values: with the forget gate
on it saturates at ``b^S / alpha``; without forgetting it grows at most linearly in t.

:class:`WeightNormBound` tracks it along a stream; :func:`stability_envelope` runs a config over
streams of many scales with bursts, in two gate regimes, and reports per stream whether
everything stayed finite and the largest ratio ``||M_t|| / b^M_t`` (<= 1 is the guarantee).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from titans_memory.core.algorithms import FORGET, MOMENTUM
from titans_memory.core.config import MemoryConfig
from titans_memory.core.neural_memory import NeuralMemory
from titans_memory.core.state import MemoryState

SCALES = (1e-3, 1e-1, 1.0, 10.0, 1e3, 1e6)
BURSTS = tuple((length, factor) for length in (1, 4, 64) for factor in (10.0, 1e3, 1e6))
REGIMES = ("init", "forced")


def memory_norms(state: MemoryState) -> Tensor:
    """``||M||_F`` per stream and head over all layers, ``(batch, heads)``."""
    return torch.stack([w.flatten(2).norm(dim=-1) for w in state.weights]).norm(dim=0)


class WeightNormBound:
    """The documented bound ``b^M_t`` on ``||M_t||_F`` (module docstring), advanced call by call.

    Args:
        mem: the memory (its ``max_step_norm`` must be set: without a step bound there is none).
        state: the state the stream starts from.
    """

    def __init__(self, mem: NeuralMemory, state: MemoryState) -> None:
        if mem.config.max_step_norm is None:
            raise ValueError("WeightNormBound needs MemoryConfig.max_step_norm (no step bound, no weight bound)")
        self.mem = mem
        self.weights = memory_norms(state).double()  # b^M
        self.momentum = torch.stack([s.flatten(2).norm(dim=-1) for s in state.momentum]).norm(dim=0).double()
        self.position = state.position

    def update(self, x: Tensor) -> Tensor:
        """Advance over ``x`` ``(batch, time, dim)`` (the tokens the memory is fed); returns
        ``b^M`` after the last one, ``(batch, heads)``."""
        mem, cfg = self.mem, self.mem.config
        with torch.no_grad():
            gates = mem.gates(x)
        tau, chunk = cfg.max_step_norm, cfg.chunk_size
        retention = mem.rule.retention
        after_retention = None
        if retention is not None:
            after_retention = retention.norm_bound(
                mem.rule.architecture.layer_shapes,
                None if mem.retention_constants is None else mem.retention_constants.double(),
            )  # (heads,) or None: a rule that only shrinks
        b_s, b_m = self.momentum, self.weights
        by_name = dict(gates.extra or {})
        if gates.momentum is not None:
            by_name[MOMENTUM] = gates.momentum
        if gates.forget is not None:
            by_name[FORGET] = gates.forget
        for t in range(x.shape[1]):
            theta = gates.lr[..., t].double()
            # the algorithm's own bound (Titans: b^S = eta b^S + theta tau, b^M = (1 - alpha) b^M + b^S)
            b_s, b_m = mem.rule.algorithm.norm_bound_step(
                b_s, b_m, theta, {name: g[..., t].double() for name, g in by_name.items()}, tau
            )
            self.position += 1
            if retention is not None and self.position % chunk == 0 and after_retention is not None:
                b_m = after_retention.expand_as(b_m).clone()
        self.momentum, self.weights = b_s, b_m
        return b_m


def force_gates(mem: NeuralMemory, *, lr: float | None = None, momentum: float | None = None) -> None:
    """Pin gates to constants for every token (in place): ``lr`` (theta, at most max_lr) and
    ``momentum`` (eta). The others keep their learned maps."""
    if mem.to_gates is None:
        return
    heads = mem.config.heads
    with torch.no_grad():
        for name, value in (("lr", lr), ("momentum", momentum)):
            if value is None or name not in mem._gate_names:
                continue
            rows = slice(mem._gate_names.index(name) * heads, (mem._gate_names.index(name) + 1) * heads)
            if name == "lr":
                p = min(value / mem.config.max_lr, 1.0)
                logit = 40.0 if p >= 1.0 else math.log(p) - math.log1p(-p)  # sigmoid(40) = 1 in float
            else:
                logit = math.log(value) - math.log1p(-value)
            mem.to_gates.weight[rows] = 0.0
            mem.to_gates.bias[rows] = logit


@dataclass(frozen=True)
class EnvelopeRow:
    """One stream of the envelope.

    Attributes:
        config: the config's name. regime: ``"init"`` (gates as a fresh layer has them) or
        ``"forced"`` (theta = max_lr, eta = 0.999 where the rule has those gates).
        scale: the input scale. burst: ``(tokens, factor)`` of the burst, or None.
        finite: every output and every state tensor stayed finite.
        max_weight_norm: the largest ``||M_t||_F`` seen (at the ends of the pieces).
        bound: ``b^M`` at the end. max_ratio: the largest ``||M_t|| / b^M_t`` seen (<= 1).
    """

    config: str
    regime: str
    scale: float
    burst: tuple[int, float] | None
    finite: bool
    max_weight_norm: float
    bound: float
    max_ratio: float


def stability_envelope(
    name: str,
    config: MemoryConfig,
    *,
    tokens: int = 16384,
    scales: Sequence[float] = SCALES,
    bursts: Sequence[tuple[int, float]] = BURSTS,
    regimes: Iterable[str] = REGIMES,
    piece: int = 1024,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[EnvelopeRow]:
    """Run ``config`` over every (scale, burst) stream, all streams as one batch, per regime.

    Each stream is unit Gaussian noise times ``scale``; a burst multiplies ``tokens`` consecutive
    tokens, at a seeded random position, by ``factor`` (``bursts`` are combined with every scale,
    and each scale also runs without one). The stream is fed in pieces of ``piece`` tokens; after
    each piece the outputs and the state are checked for finiteness and ``||M_t||`` against
    :class:`WeightNormBound`. A config without a step bound (``max_step_norm=None``) has no
    documented bound: its rows report ``bound = inf`` (finiteness only).
    """
    layout = [(scale, None) for scale in scales] + [(scale, b) for scale in scales for b in bursts]
    g = torch.Generator().manual_seed(seed)
    rows: list[EnvelopeRow] = []
    for regime in regimes:
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        torch.manual_seed(seed)
        mem = NeuralMemory(config).to(dtype)
        mem.check_finite = False  # the envelope checks finiteness itself; a NaN stream must go on
        if regime == "forced":
            force_gates(mem, lr=config.max_lr, momentum=0.999)
        batch = len(layout)
        starts = [int(torch.randint(0, max(1, tokens - (b[0] if b else 0)), (1,), generator=g)) for _, b in layout]
        state = mem.init_state(batch, dtype=dtype)
        tracker = WeightNormBound(mem, state) if config.max_step_norm is not None else None
        finite = torch.ones(batch, dtype=torch.bool)
        peak = torch.zeros(batch, dtype=torch.float64)
        ratio = torch.zeros(batch, dtype=torch.float64)
        with torch.no_grad():
            for lo in range(0, tokens, piece):
                n = min(piece, tokens - lo)
                x = torch.randn(batch, n, config.dim, generator=g, dtype=dtype)
                for i, (scale, burst) in enumerate(layout):
                    x[i] *= scale
                    if burst is not None:
                        a, b = max(starts[i], lo), min(starts[i] + burst[0], lo + n)
                        if a < b:
                            x[i, a - lo : b - lo] *= burst[1]
                y, state = mem(x, state)
                bound = tracker.update(x) if tracker is not None else torch.tensor(float("inf"))
                finite &= torch.isfinite(y).flatten(1).all(1)
                for t in state.tensors().values():
                    finite &= torch.isfinite(t).flatten(1).all(1)
                norms = memory_norms(state).double()
                peak = torch.maximum(peak, norms.amax(1))
                ratio = torch.maximum(ratio, (norms / bound).amax(1))
        for i, (scale, burst) in enumerate(layout):
            rows.append(EnvelopeRow(
                config=name, regime=regime, scale=scale, burst=burst, finite=bool(finite[i]),
                max_weight_norm=float(peak[i]),
                bound=float(tracker.weights[i].max()) if tracker is not None else float("inf"),
                max_ratio=float(ratio[i]),
            ))
    return rows
