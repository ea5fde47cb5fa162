"""The demo's scenarios, run once and shared, and the helpers that turn a trace into arrays.

Each scenario of the original demo is defined once, in :data:`SCENARIOS`, and shared by the
figures (:mod:`titans_memory.viz.demo`), the tests, the notebooks and the explorer::

    run = SCENARIOS["full_pipeline"].run()        # seeds torch with 42, builds the layer, runs it
    run.result["surprise"]                         # the layer's trace, one entry per token

:func:`run_stream` runs the layer on any 1-d series and returns the same :class:`ScenarioRun`;
:func:`trace_array`, :func:`weight_norms`, :func:`write_updates` and :func:`write_norms` turn
its trace into NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from titans_memory.demo.data import generate_repeating_with_anomalies
from titans_memory.demo.layer import TitansMemoryLayer

# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

#: Seed set with ``torch.manual_seed`` before each scenario's layer is built (the original's).
DEFAULT_SEED = 42


@dataclass(frozen=True)
class ScenarioRun:
    """One scenario run: the input, the layer after the run, and the trace.

    Attributes:
        scenario: the :class:`DemoScenario` that was run; None for any other series
            (:func:`run_stream`).
        seq: the input series, ``(T,)``.
        anomaly_mask: 1.0 at the anomalies (or other events), 0.0 elsewhere, ``(T,)``.
        result: what :meth:`TitansMemoryLayer.process_sequence` returned.
        layer: the layer, in its state after the run.
        initial_snapshot: the memory weights before step 0 (so that the change made at step 0
            can be shown too).
        label: the title of a run without a scenario (empty: the scenario's title).
    """

    scenario: DemoScenario | None
    seq: Tensor
    anomaly_mask: Tensor
    result: dict[str, list[Any]]
    layer: TitansMemoryLayer
    initial_snapshot: list[Tensor]
    label: str = ""

    @property
    def anomaly_indices(self) -> list[int]:
        """Positions of the anomalies, ascending."""
        return self.anomaly_mask.nonzero().flatten().tolist()

    @property
    def title(self) -> str:
        """The figure title: ``label`` if given, else the scenario's title."""
        if self.label or self.scenario is None:
            return self.label
        return self.scenario.title


@dataclass(frozen=True)
class DemoScenario:
    """A repeating pattern with anomalies, and the layer settings to run it with.

    Attributes:
        name: key in :data:`SCENARIOS`, and the figure's file name without ``.png``.
        title: the figure's title.
        pattern, repeats, anomaly_indices, anomaly_value: the arguments of
            :func:`~titans_memory.demo.data.generate_repeating_with_anomalies`.
        layer_kwargs: keyword arguments of :class:`TitansMemoryLayer` besides ``input_dim=1``.
        forget_rates: for a sweep over ``forget_rate`` (the forgetting figure), else empty.
    """

    name: str
    title: str
    pattern: tuple[float, ...]
    repeats: int
    anomaly_indices: tuple[int, ...]
    anomaly_value: float
    layer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    forget_rates: tuple[float, ...] = ()

    @property
    def filename(self) -> str:
        """The figure's file name."""
        return f"{self.name}.png"

    def sequence(self) -> tuple[Tensor, Tensor]:
        """``(seq, anomaly_mask)``, both ``(T,)``."""
        return generate_repeating_with_anomalies(
            list(self.pattern), self.repeats, list(self.anomaly_indices), self.anomaly_value
        )

    def run(self, seed: int | None = DEFAULT_SEED, **overrides: Any) -> ScenarioRun:
        """Seed torch, build the layer (``layer_kwargs`` updated by ``overrides``), run it.

        Args:
            seed: passed to ``torch.manual_seed`` first; ``None`` leaves the generator alone.
            overrides: layer arguments replacing the scenario's (e.g. ``forget_rate=0.05``).
        """
        if seed is not None:
            torch.manual_seed(seed)
        seq, mask = self.sequence()
        layer = TitansMemoryLayer(input_dim=1, **{**self.layer_kwargs, **overrides})
        initial = layer.memory.get_weight_snapshot()
        result = layer.process_sequence(seq.unsqueeze(-1))
        return ScenarioRun(self, seq, mask, result, layer, initial)

    def runs(self, seed: int | None = DEFAULT_SEED) -> list[ScenarioRun]:
        """One run per ``forget_rates`` entry (each seeded alike, so all start from the same
        weights), or ``[self.run(seed)]`` without a sweep."""
        if not self.forget_rates:
            return [self.run(seed)]
        return [self.run(seed, forget_rate=rate) for rate in self.forget_rates]


def _scenario(**kwargs: Any) -> DemoScenario:
    kwargs["layer_kwargs"] = MappingProxyType(dict(kwargs.get("layer_kwargs", {})))
    return DemoScenario(**kwargs)


#: The five scenarios of the original demo, by figure name.
SCENARIOS: Mapping[str, DemoScenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            _scenario(
                name="surprise_over_time",
                title="Surprise spikes at the anomalies",
                pattern=(1.0, 2.0, 3.0),
                repeats=20,
                anomaly_indices=(14, 35, 50),
                anomaly_value=99.0,
                layer_kwargs={"memory_dim": 16, "hidden_dim": 16, "momentum": 0.9},
            ),
            _scenario(
                name="memory_update_heatmap",
                title="The memory is written at the anomalies",
                pattern=(1.0, 2.0, 3.0, 4.0),
                repeats=15,
                anomaly_indices=(20, 40),
                anomaly_value=50.0,
                layer_kwargs={"memory_dim": 8, "hidden_dim": 8},
            ),
            _scenario(
                name="momentum_vs_raw",
                title="Raw and momentum-smoothed surprise",
                pattern=(1.0, 2.0, 3.0),
                repeats=20,
                anomaly_indices=(15, 30, 45),
                anomaly_value=80.0,
                layer_kwargs={"momentum": 0.9},
            ),
            _scenario(
                name="forgetting_effect",
                title="Forgetting shrinks the memory",
                pattern=(1.0, 2.0, 3.0),
                repeats=20,
                anomaly_indices=(10,),
                anomaly_value=50.0,
                layer_kwargs={"memory_dim": 16, "hidden_dim": 16},
                forget_rates=(0.0, 0.005, 0.02, 0.05),
            ),
            _scenario(
                name="full_pipeline",
                title="Surprise-gated memory: the full pipeline",
                pattern=(1.0, 2.0, 3.0, 4.0, 5.0),
                repeats=12,
                anomaly_indices=(12, 30, 48),
                anomaly_value=50.0,
                layer_kwargs={
                    "memory_dim": 16,
                    "hidden_dim": 16,
                    "momentum": 0.9,
                    "forget_rate": 0.01,
                },
            ),
        )
    }
)


def run_stream(
    seq: Tensor,
    events: Sequence[int] = (),
    *,
    title: str = "stream",
    seed: int | None = DEFAULT_SEED,
    **layer_kwargs: Any,
) -> ScenarioRun:
    """Run a fresh layer on any 1-d series, as :meth:`DemoScenario.run` does on a scenario's.

    Args:
        seq: the series, ``(T,)``, real-valued.
        events: positions of the novelties to mark (the plots draw them like anomalies).
        title: the figure title of the run.
        seed: passed to ``torch.manual_seed`` before the layer is built; None leaves it alone.
        layer_kwargs: :class:`TitansMemoryLayer` arguments besides ``input_dim=1``.

    Returns:
        A :class:`ScenarioRun` with ``scenario=None``, for every plotting function here.
    """
    if not isinstance(seq, Tensor):
        raise TypeError(f"seq must be a torch.Tensor of shape (T,), got {type(seq).__name__}")
    if seq.dim() != 1 or seq.numel() == 0:
        raise ValueError(f"seq must have shape (T,) with T >= 1, got {tuple(seq.shape)}")
    if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
        raise TypeError(f"events must be a sequence of ints, got {type(events).__name__}")
    positions = list(events)
    if not all(isinstance(e, int) and not isinstance(e, bool) for e in positions):
        raise TypeError(f"events must contain ints, got {positions}")
    bad = [e for e in positions if not 0 <= e < len(seq)]
    if bad:
        raise ValueError(f"events must lie in [0, {len(seq)}), got {bad}")
    if seed is not None:
        torch.manual_seed(seed)
    layer = TitansMemoryLayer(input_dim=1, **layer_kwargs)
    initial = layer.memory.get_weight_snapshot()
    result = layer.process_sequence(seq.unsqueeze(-1))
    mask = torch.zeros(len(seq))
    mask[positions] = 1.0
    return ScenarioRun(None, seq, mask, result, layer, initial, label=title)


# --------------------------------------------------------------------------------------------
# From a trace to arrays
# --------------------------------------------------------------------------------------------


def trace_array(result: Mapping[str, Sequence[Tensor]], key: str) -> np.ndarray:
    """A trace of 0-d tensors (e.g. ``"surprise_scores"``) as a float array ``(T,)``."""
    return torch.stack(list(result[key])).detach().cpu().double().numpy()


def weight_norm(snapshot: Sequence[Tensor]) -> float:
    """L2 norm of all the memory weights together (every weight matrix and bias)."""
    return float(torch.sqrt(sum((p.double() ** 2).sum() for p in snapshot)))


def weight_norms(snapshots: Sequence[Sequence[Tensor] | None]) -> np.ndarray:
    """:func:`weight_norm` per step, ``(T,)``; NaN at the steps without a snapshot."""
    return np.array([np.nan if s is None else weight_norm(s) for s in snapshots])


def write_updates(
    snapshots: Sequence[Sequence[Tensor] | None],
    initial: Sequence[Tensor],
    forget_rate: float,
    param_index: int = 0,
) -> np.ndarray:
    """Size of the change each write made to one weight tensor, per weight and step.

    Step ``t`` turns ``W`` into ``(1 - r) (W - step_t)``: the write, then the uniform shrink of
    forgetting. This returns ``|step_t| = |W_{t-1} - W_t / (1 - r)|``, the write alone: the
    shrink would otherwise add a change proportional to every weight at every step and hide
    where the writes happen.

    Args:
        snapshots: ``result["memory_snapshots"]``, recorded at every step (no ``None``).
        initial: the weights before step 0.
        forget_rate: the layer's ``forget_rate`` ``r``.
        param_index: which tensor of the snapshot (0: the first layer's weight matrix).

    Returns:
        ``(n_weights, T)`` array: rows are the flattened weights, columns the steps.
    """
    if any(s is None for s in snapshots):
        raise ValueError("write_updates needs a snapshot at every step (snapshot_every=1)")
    keep = 1.0 - forget_rate
    before = [initial[param_index]] + [s[param_index] for s in snapshots[:-1]]  # type: ignore[index]
    after = [s[param_index] for s in snapshots]  # type: ignore[index]
    cols = [
        (b.double() - a.double() / keep).abs().flatten() for b, a in zip(before, after, strict=True)
    ]
    return torch.stack(cols, dim=1).numpy()


def write_norms(
    snapshots: Sequence[Sequence[Tensor] | None], initial: Sequence[Tensor], forget_rate: float
) -> np.ndarray:
    """L2 norm of each write over all the memory's tensors together, forgetting factored out.

    ``||theta_{t-1} - theta_t / (1 - r)||``: the norm of :func:`write_updates` over every weight
    and bias. A layer clips each write's gradient, so this is at most
    ``write_lr * memory_max_grad_norm``.

    Returns:
        ``(T,)`` array.
    """
    squares = sum(
        (write_updates(snapshots, initial, forget_rate, i) ** 2).sum(axis=0)
        for i in range(len(initial))
    )
    return np.sqrt(squares)
