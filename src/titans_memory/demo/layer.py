"""The demo's full memory layer: surprise -> read -> gated write -> predictor update -> forgetting."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from titans_memory.demo import _checks, _mlp, _wide
from titans_memory.demo.memory import MemoryModule
from titans_memory.demo.surprise import SurpriseMetric

# Keeps the gate's denominator positive when both the surprise and its scale are 0.
_GATE_EPS = 1e-12
# Steps between two stackings of the per-step trace tensors when as_tensors=True.
_CHUNK = 4096
# Steps between two checks that the plain arithmetic cannot overflow (see _wide): one check
# reads the weight norms (one device-to-host transfer) and covers the next _BLOCK steps, during
# which each step moves the weights by at most its clipped size.
_BLOCK = 64


class TitansMemoryLayer(nn.Module):
    """A memory that decides, one token at a time, how hard to memorise each input.

    For every timestep ``t`` of a sequence, :meth:`process_sequence`:

    1. measures the **surprise** ``s_t = mean((P(x_t) - x_t)^2)`` of the predictor ``P``
       (:class:`SurpriseMetric`), and its moving average with factor ``momentum``;
    2. **reads** the memory, ``y_t = M(x_t)`` (:class:`MemoryModule`);
    3. **writes** ``x_t`` into ``M``: one gradient step on ``||M(x_t) - x_t||^2`` with step size
       ``write_lr * g_t``, where ``g_t`` in ``[0, 1]`` is the *write gate* (below);
    4. **updates the predictor** ``P``: one step on its own error, with step size
       ``surprise_lr * (1 - g_t)``, so that what is usual stops being surprising;
    5. **forgets**: every memory weight is multiplied by ``1 - forget_rate``.

    **Why a gate, and not the raw surprise.** The original demo used the raw surprise as the
    write's step-size multiplier. The surprise is a squared error, so it has no upper bound: a
    50 in a stream of 1..5 is thousands of times more surprising than usual, and the write's
    gradient grows with the input too, so the step is thousands of times too large. Worse, the
    predictor's own unbounded step on the anomaly wrecks it, so the next, ordinary value looks
    even more surprising (39 at the anomaly, 75,513 one step later); that drives a bigger write,
    and the memory weights go 7.6 -> 1.5e3 -> 2.2e17 -> inf -> NaN in four steps. This layer is
    stable by construction:

    * **Relative gate.** ``g_t = s_t / (s_t + gate_threshold * c_t)``, where ``c_t`` is the
      running scale of recent surprise. A surprise only means something next to what is usual,
      so the gate depends on the ratio ``s_t / c_t`` alone: about ``1 / (1 + gate_threshold)``
      (0.25 with the defaults) for a usual token, 0.5 when the surprise is ``gate_threshold``
      times the usual level, close to 1 for an anomaly, however large. It never leaves
      ``[0, 1]`` and does not depend on the units of the data.
    * **Robust running scale.** ``c_t`` is an exponential moving average (factor
      ``scale_momentum``) of the surprise in which each new value is first capped at
      ``scale_clip * c_t`` (a winsorised EMA). An anomaly raises the scale by at most a factor
      ``scale_momentum + (1 - scale_momentum) * scale_clip`` (1.3 with the defaults), so it does
      not make the tokens after it look unsurprising, while a lasting change of regime still
      moves the scale geometrically, within a few dozen steps. The gate compares ``s_t`` with the
      scale *before* ``s_t`` enters it. ``c`` starts at the first surprise seen and carries over
      between calls (see :meth:`reset_surprise_scale`).
    * **The gate works both ways.** The memory writes in proportion to ``g_t``: it stores what
      is new. The predictor learns in proportion to ``1 - g_t``: it models what is usual and
      hardly learns from an anomaly, so later anomalies stay surprising (in the demo's
      scenarios every anomaly is hundreds of times above the median surprise).
    * **Bounded steps.** Each gradient is clipped in L2 norm (all of a network's parameters
      together): the memory's to ``memory_max_grad_norm``, the predictor's to
      ``predictor_max_grad_norm``. A write then moves the memory weights ``theta`` by at most
      ``delta = write_lr * memory_max_grad_norm``, which gives
      ``||theta_t|| <= max(||theta_0||, delta * (1 - r) / r)`` for a forgetting rate ``r > 0``
      (9.9 with the defaults) and ``||theta_t|| <= ||theta_0|| + t * delta`` for ``r = 0``:
      growth is at most linear, never explosive. Likewise the predictor moves by at most
      ``surprise_lr * predictor_max_grad_norm`` per step, so no single token can wreck it.
      Clipping is aimed at outliers: once the pattern is learned, the gradients of ordinary
      tokens are mostly below the thresholds.
    * **Inputs of any size.** Every output stays finite for every finite input up to the
      float32 maximum (3.4e38), and the weight bound above still holds. In plain float32
      arithmetic a square overflows from ~1.8e19 on (the error's, or an error times an
      activation in the backward pass: the gate becomes ``Inf / Inf`` or the clipped step
      ``Inf * 0``, NaN, and so do the weights, for good), the squared gradient norm from ~4e9
      on (the clip factor becomes 0 and the write is silently skipped), and a linear layer near
      the maximum. So every 64 steps the layer bounds, from the weight norms, every value a
      step can compute (:mod:`titans_memory.demo._wide`); a token for which the bound exceeds
      1/16 of the float32 maximum (at the defaults, a token above a few million) is processed
      in float64, the others in float32, bit for bit as without the check. What float32 cannot
      hold is *saturated*, returned as +-3.4e38: the surprise (and so its average and the
      running scale) and the read. The gate is computed from the saturated surprise, so the
      formulas above hold for the values returned; the clipped steps are exact. As ``c``
      starts at the first surprise, a huge *first* token keeps the gate of the ordinary tokens
      after it near 0 until ``c`` has decayed (by 0.9 per step: about 1,000 steps from 3.4e38).

    ``MemoryModule.write`` keeps the original rule ``effective_lr = write_lr * surprise_score``;
    the layer simply passes the gate ``g_t`` as the score. The smoothed surprise
    (``surprise_momentum``) is reported, as in the original; the gate uses the raw surprise, so
    that the write reacts at the anomaly itself.

    A limit kept from the original: the predictor reconstructs ``x_t`` from ``x_t`` itself. Fed a
    long stream, it drifts towards the identity map, which extrapolates, so far-out values grow
    less surprising over thousands of steps (they stay well above the usual level in the demo's
    scenarios).

    The first seven arguments, their defaults and the keys ``outputs``, ``surprise_scores``,
    ``surprise_momentum`` and ``memory_snapshots`` of :meth:`process_sequence` are the original
    demo's; the keyword-only arguments and the other keys are new.

    Args:
        input_dim: size of one input vector.
        memory_dim: width of the memory MLP's hidden layers.
        hidden_dim: width of the surprise predictor's hidden layer.
        momentum: EMA factor of the reported smoothed surprise, in ``[0, 1)``.
        forget_rate: fraction of every memory weight removed per step, in ``[0, 1)``.
        surprise_lr: predictor step size, >= 0.
        write_lr: memory step size at a fully open gate, >= 0.
        gate_threshold: surprise, in units of the running scale, at which the gate is half
            open; > 0.
        scale_momentum: EMA factor of the running surprise scale, in ``[0, 1)``.
        scale_clip: a new surprise enters the running scale capped at ``scale_clip`` times the
            scale; >= 1.
        memory_max_grad_norm: L2 bound on the memory's gradient per write, > 0.
        predictor_max_grad_norm: L2 bound on the predictor's gradient per step, > 0.

    Attributes:
        surprise_metric: the :class:`SurpriseMetric` (its ``predictor`` is ``P``).
        memory: the :class:`MemoryModule` (its ``memory_net`` is ``M``).
    """

    def __init__(
        self,
        input_dim: int,
        memory_dim: int = 32,
        hidden_dim: int = 16,
        momentum: float = 0.0,
        forget_rate: float = 0.01,
        surprise_lr: float = 0.01,
        write_lr: float = 0.01,
        *,
        gate_threshold: float = 3.0,
        scale_momentum: float = 0.9,
        scale_clip: float = 4.0,
        memory_max_grad_norm: float = 10.0,
        predictor_max_grad_norm: float = 5.0,
    ) -> None:
        super().__init__()
        # Same construction order as the original demo, so a given seed gives the same weights.
        self.surprise_metric = SurpriseMetric(input_dim, hidden_dim=hidden_dim, momentum=momentum)
        self.memory = MemoryModule(
            input_dim, memory_dim=memory_dim, forget_rate=forget_rate, write_lr=write_lr
        )
        self.input_dim = self.memory.input_dim
        self.surprise_lr = _checks.real("surprise_lr", surprise_lr, low=0.0)
        self.gate_threshold = _checks.positive_real("gate_threshold", gate_threshold)
        self.scale_momentum = _checks.real(
            "scale_momentum", scale_momentum, low=0.0, high=1.0, high_open=True
        )
        self.scale_clip = _checks.real("scale_clip", scale_clip, low=1.0)
        self.memory_max_grad_norm = _checks.positive_real(
            "memory_max_grad_norm", memory_max_grad_norm
        )
        self.predictor_max_grad_norm = _checks.positive_real(
            "predictor_max_grad_norm", predictor_max_grad_norm
        )
        # Running surprise scale c (0-d tensor); None until the first step.
        self._surprise_scale: Tensor | None = None

    @property
    def surprise_scale(self) -> Tensor | None:
        """The running surprise scale ``c`` the next step's gate will use (``None`` before any)."""
        return None if self._surprise_scale is None else self._surprise_scale.clone()

    def reset_surprise_scale(self) -> None:
        """Forget the running surprise scale; the next step restarts it from its own surprise."""
        self._surprise_scale = None

    def _check_seq(self, seq: object) -> Tensor:
        if not isinstance(seq, Tensor):
            raise TypeError(f"seq must be a torch.Tensor, got {type(seq).__name__}")
        if seq.dim() == 1 and self.input_dim == 1:
            seq = seq.unsqueeze(-1)  # a plain series of scalars: (T,) -> (T, 1)
        if seq.dim() != 2:
            raise ValueError(
                f"seq must have shape (T, input_dim={self.input_dim}), got {tuple(seq.shape)}"
            )
        if seq.shape[0] == 0:
            raise ValueError("seq is empty: it needs at least one timestep")
        return _checks.finite_tensor("seq", seq, self.input_dim, self.memory.memory_net[0].weight)

    def process_sequence(
        self, seq: Tensor, snapshot_every: int = 1, as_tensors: bool = False
    ) -> dict[str, Any]:
        """Run the five steps on every timestep of ``seq``, in order, and return the trace.

        The memory, the predictor and the running surprise scale keep what they learned after
        the call; the smoothed surprise restarts at each call (as in the original demo).

        Args:
            seq: ``(T, input_dim)``, finite, ``T >= 1``. When ``input_dim == 1`` a plain ``(T,)``
                series is accepted too.
            snapshot_every: record the memory weights every this many steps: at the steps ``t``
                with ``t % snapshot_every == 0``, and always at the last step. The default 1
                records every step, as the original; use e.g. 1000 for long inputs, where a
                copy of the weights per step would not fit in memory.
            as_tensors: return every trace but ``"memory_snapshots"`` as one stacked tensor,
                ``(T, input_dim)`` for ``"outputs"`` and ``(T,)`` for the others, instead of a
                list of ``T`` tensors. A list entry is a separate tensor of ~600 bytes; stacked,
                a step costs a few bytes: use it for long inputs. Default ``False`` (lists, as
                the original).

        Returns:
            A dict of lists, each of length ``T`` (entry ``t`` is about timestep ``t``; with
            ``as_tensors``, tensors with ``T`` rows instead, except ``"memory_snapshots"``):

            * ``"outputs"``: ``(input_dim,)`` tensors, the memory read ``M(x_t)`` *before* the
              write of step ``t`` (saturated at +-3.4e38 in float32);
            * ``"surprise_scores"``: 0-d tensors, the raw surprise ``s_t`` (saturated at
              3.4e38 in float32, as are the two averages below);
            * ``"surprise_momentum"``: 0-d tensors, its EMA with factor ``momentum``;
            * ``"memory_snapshots"``: the memory weights *after* step ``t`` (after forgetting),
              as returned by :meth:`MemoryModule.get_weight_snapshot`, or ``None`` at the steps
              not recorded when ``snapshot_every > 1``;
            * ``"write_gates"``: 0-d tensors, the gate ``g_t`` in ``[0, 1]`` used by the write;
            * ``"surprise_scale"``: 0-d tensors, the running scale ``c_t`` the gate compared
              ``s_t`` with.

        Raises:
            TypeError: ``seq`` is not a real-valued tensor, or ``snapshot_every`` not an int.
            ValueError: wrong shape, empty, NaN/Inf in ``seq``, or ``snapshot_every < 1``.
        """
        seq = self._check_seq(seq)
        every = _checks.positive_int("snapshot_every", snapshot_every)
        n_steps, dim = seq.shape

        # Everything below is fixed for the whole loop: hoisted out of it, because at a few
        # microseconds per step Python attribute look-ups are a measurable share of the time.
        pred_params = self.surprise_metric._params()
        mem_params = self.memory._params()
        momentum = self.surprise_metric.momentum
        keep = 1.0 - self.memory.forget_rate
        write_lr = self.memory.write_lr
        surprise_lr = self.surprise_lr
        threshold = self.gate_threshold
        scale_lerp = 1.0 - self.scale_momentum
        scale_clip = self.scale_clip
        mem_clip = self.memory_max_grad_norm
        pred_clip = self.predictor_max_grad_norm
        # d/dy mean((y - x)^2) over the dim elements of one token = 2 (y - x) / dim.
        grad_factor = 2.0 / dim
        # The overflow checks (see _wide.plain_fits): for each network, the step size and the
        # clipping threshold, and how far its weights can move within one block.
        dtype = seq.dtype
        bound = _wide.limit(dtype)
        pred_check = {
            "lr": surprise_lr,
            "max_grad_norm": pred_clip,
            "growth": _BLOCK * surprise_lr * pred_clip,
            # s stays far below max, so that where threshold * c overflows the gate's
            # denominator, the gate s / Inf = 0 is within 5e-20 of the exact value.
            "mse_bound": math.sqrt(torch.finfo(dtype).max),
        }
        mem_check = {
            "lr": write_lr,
            "max_grad_norm": mem_clip,
            "growth": _BLOCK * write_lr * mem_clip,
        }
        nets = ((pred_params, pred_check), (mem_params, mem_check))
        plain: list[bool] | None = None  # per step of the current block; None: all plain

        outputs: list[Tensor] = []
        raw: list[Tensor] = []
        smooth: list[Tensor] = []
        gates: list[Tensor] = []
        scales: list[Tensor] = []
        snapshots: list[list[Tensor] | None] = []

        # With as_tensors, the per-step tensors are stacked every _CHUNK steps, so that at most
        # _CHUNK of them are alive at a time.
        pending = (outputs, raw, smooth, gates, scales)
        chunks: tuple[list[Tensor], ...] = ([], [], [], [], [])

        self.surprise_metric.reset_momentum()
        ema: Tensor | None = None
        scale = self._surprise_scale
        with torch.no_grad():
            for t in range(n_steps):
                if t % _BLOCK == 0:
                    # Which steps of this block the plain arithmetic provably fits (_wide).
                    plain = _wide.plain_steps(nets, seq[t : t + _BLOCK], bound)
                x = seq[t]  # (dim,)
                wide = plain is not None and not plain[t % _BLOCK]

                # (1) Surprise, under the predictor as it is before this step.
                if wide:
                    # In float64; a surprise beyond the dtype's range saturates at its max.
                    pred64, mem64 = _wide.widen(pred_params), _wide.widen(mem_params)
                    x64, p_out, p_inputs = _wide.forward(pred64, x)
                    p_err = p_out - x64
                    s = _wide.saturate(p_err.square().mean(), dtype)
                else:
                    p_out, p_inputs = _mlp.forward_cached(pred_params, x)
                    p_err = p_out - x
                    s = p_err.square().mean()
                if ema is None:
                    # Copies, so that no two trace entries are the same tensor object.
                    ema = s.clone()
                else:
                    ema = torch.lerp(s, ema, momentum)  # momentum * ema + (1 - momentum) * s
                if scale is None:
                    scale = s.clone()
                if wide:
                    # s and c may both be near the max: s + threshold * c would overflow.
                    s64, c64 = s.to(torch.float64), scale.to(torch.float64)
                    gate = (s64 / (s64 + threshold * c64 + _GATE_EPS)).to(dtype)
                else:
                    gate = s / (torch.add(s, scale, alpha=threshold) + _GATE_EPS)
                scales.append(scale)
                scale = torch.lerp(scale, torch.minimum(s, scale * scale_clip), scale_lerp)

                if wide:
                    # (2)-(4) in float64; the read saturates, the clipped steps are exact.
                    _, y64, m_inputs = _wide.forward(mem64, x)
                    y = _wide.saturate(y64, dtype)
                    m_grads = _mlp.backward(mem64, m_inputs, (y64 - x64) * grad_factor)
                    g = float(gate)
                    _wide.step_(mem_params, mem64, m_grads, write_lr, g, mem_clip)
                    p_grads = _mlp.backward(pred64, p_inputs, p_err * grad_factor)
                    _wide.step_(pred_params, pred64, p_grads, surprise_lr, 1.0 - g, pred_clip)
                else:
                    # (2) Read. The write's forward pass is this same pass (same x and weights).
                    y, m_inputs = _mlp.forward_cached(mem_params, x)

                    # (3) Write, gated and clipped.
                    m_grads = _mlp.backward(mem_params, m_inputs, (y - x) * grad_factor)
                    _mlp.sgd_step_(mem_params, m_grads, write_lr, gate, mem_clip)

                    # (4) Predictor step on the error measured in (1), scaled by 1 - gate (learn
                    # the usual, not the anomaly) and clipped.
                    p_grads = _mlp.backward(pred_params, p_inputs, p_err * grad_factor)
                    _mlp.sgd_step_(pred_params, p_grads, surprise_lr, 1.0 - gate, pred_clip)

                # (5) Forget.
                if keep != 1.0:
                    torch._foreach_mul_(mem_params, keep)

                outputs.append(y)
                raw.append(s)
                smooth.append(ema)
                gates.append(gate)
                if t % every == 0 or t == n_steps - 1:
                    snapshots.append([p.clone() for p in mem_params])
                else:
                    snapshots.append(None)
                if as_tensors and len(raw) == _CHUNK:
                    for items, stacked in zip(pending, chunks, strict=True):
                        stacked.append(torch.stack(items))
                        items.clear()

        self._surprise_scale = scale
        self.surprise_metric._ema_surprise = ema.clone() if ema is not None else None

        if as_tensors:
            for items, stacked in zip(pending, chunks, strict=True):
                if items:
                    stacked.append(torch.stack(items))
            out, raw_t, smooth_t, gates_t, scales_t = (torch.cat(c) for c in chunks)
            return {
                "outputs": out,
                "surprise_scores": raw_t,
                "surprise_momentum": smooth_t,
                "memory_snapshots": snapshots,
                "write_gates": gates_t,
                "surprise_scale": scales_t,
            }

        # Every entry is a fresh tensor computed at its step and never modified afterwards, so
        # the lists need no per-step clone (the original cloned each one).
        return {
            "outputs": outputs,
            "surprise_scores": raw,
            "surprise_momentum": smooth,
            "memory_snapshots": snapshots,
            "write_gates": gates,
            "surprise_scale": scales,
        }

    def forward(
        self, seq: Tensor, snapshot_every: int = 1, as_tensors: bool = False
    ) -> dict[str, Any]:
        """Same as :meth:`process_sequence`."""
        return self.process_sequence(seq, snapshot_every=snapshot_every, as_tensors=as_tensors)
