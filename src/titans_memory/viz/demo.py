"""The demo layer's figures: scenarios, the helpers that turn a trace into arrays, and the plots.

Each scenario of the original demo is defined once, in :data:`SCENARIOS`, and shared by the
figures, the tests and the notebooks. Every plotting function builds and returns a
:class:`matplotlib.figure.Figure` without touching pyplot's global state (no ``plt.show``), so it
works the same in a script, a test and a notebook (where a returned figure displays itself).

Typical use::

    run = SCENARIOS["full_pipeline"].run()        # seeds torch with 42, builds the layer, runs it
    fig = plot_full_pipeline(run)
    fig.savefig("full_pipeline.png")

or all five at once: :func:`save_demo_figures`.

Beyond the five figures, for the notebooks and for any other series: :func:`run_stream` runs the
layer on any 1-d series and returns a :class:`ScenarioRun` for every plot here;
:func:`plot_memory_activity` (reads and write sizes), :func:`plot_gate_curve` (the gate against
the relative surprise), :func:`plot_runs_side_by_side` (several runs in columns) and
:func:`plot_traces` (any series over time, e.g. a sweep of one setting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from titans_memory.data import generate_repeating_with_anomalies
from titans_memory.demo import TitansMemoryLayer
from titans_memory.fileio import save_figure

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
            :func:`~titans_memory.data.generate_repeating_with_anomalies`.
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


# --------------------------------------------------------------------------------------------
# Plotting
# --------------------------------------------------------------------------------------------

_COLORS = {
    "input": "#1f77b4",
    "anomaly": "#d62728",
    "raw": "#ff7f0e",
    "smooth": "#9467bd",
    "gate": "#2ca02c",
    "norm": "#17becf",
}
_STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "#fafafa",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "legend.fontsize": 9,
    "legend.framealpha": 0.9,
}


def _figure(width: float, height: float) -> Figure:
    # A bare Figure (not plt.figure): nothing is registered with pyplot, nothing to close.
    return Figure(figsize=(width, height), layout="constrained")


def _mark_anomalies(ax: Axes, indices: Sequence[int], label: bool = False) -> None:
    for i, idx in enumerate(indices):
        ax.axvline(
            idx,
            color=_COLORS["anomaly"],
            alpha=0.35,
            linestyle="--",
            linewidth=1,
            label="anomaly" if label and i == 0 else None,
        )


def _plot_input(ax: Axes, run: ScenarioRun) -> None:
    t = np.arange(len(run.seq))
    values = run.seq.numpy()
    idx = run.anomaly_indices
    ax.plot(t, values, color=_COLORS["input"], linewidth=1.2, label="input $x_t$")
    ax.scatter(idx, values[idx], color=_COLORS["anomaly"], s=45, zorder=5, label="anomaly")
    for i in idx:
        ax.annotate(
            f"t={i}",
            (i, values[i]),
            textcoords="offset points",
            xytext=(6, -4),
            fontsize=8,
            color=_COLORS["anomaly"],
        )
    ax.set_ylabel("value")
    # Headroom above the highest point for the t=... labels (works for negative data too).
    low, high = float(values.min()), float(values.max())
    span = (high - low) or 1.0
    ax.set_ylim(low - 0.05 * span, high + 0.15 * span)
    ax.legend(loc="upper left")


def _plot_surprise(ax: Axes, run: ScenarioRun, smooth: bool = False) -> None:
    key = "surprise_momentum" if smooth else "surprise_scores"
    color = _COLORS["smooth" if smooth else "raw"]
    ax.semilogy(trace_array(run.result, key), color=color, linewidth=1.4)
    _mark_anomalies(ax, run.anomaly_indices)
    ax.set_ylabel("surprise (log)")


def _plot_gate(ax: Axes, run: ScenarioRun) -> None:
    gates = trace_array(run.result, "write_gates")
    ax.fill_between(np.arange(len(gates)), gates, color=_COLORS["gate"], alpha=0.3, step="mid")
    ax.step(np.arange(len(gates)), gates, where="mid", color=_COLORS["gate"], linewidth=1.2)
    _mark_anomalies(ax, run.anomaly_indices)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("write gate $g_t$")


def _plot_write_heatmap(fig: Figure, ax: Axes, run: ScenarioRun) -> None:
    updates = write_updates(
        run.result["memory_snapshots"], run.initial_snapshot, run.layer.memory.forget_rate
    )
    n_weights, n_steps = updates.shape
    # Cells centred on integer timesteps, so the anomaly markers line up with their columns.
    image = ax.imshow(
        updates,
        aspect="auto",
        cmap="magma_r",
        interpolation="nearest",
        extent=(-0.5, n_steps - 0.5, n_weights - 0.5, -0.5),
    )
    ax.grid(False)
    # Outline the anomaly columns (markers outside the axes would collide with neighbours).
    for i, idx in enumerate(run.anomaly_indices):
        ax.add_patch(
            Rectangle(
                (idx - 0.5, -0.5),
                1.0,
                n_weights,
                fill=False,
                edgecolor=_COLORS["anomaly"],
                linewidth=1.6,
                label="anomaly" if i == 0 else None,
            )
        )
    if run.anomaly_indices:
        ax.legend(loc="upper right")
    ax.set_ylabel("first-layer weight #")
    ax.set_yticks(range(0, n_weights, max(1, n_weights // 8)))
    fig.colorbar(image, ax=ax, label="|write step|", pad=0.01)


def _plot_norm(ax: Axes, run: ScenarioRun, label: str | None = None) -> None:
    norms = np.concatenate(
        [[weight_norm(run.initial_snapshot)], weight_norms(run.result["memory_snapshots"])]
    )
    # Norm before step 0 plotted at t = -1, after step t at t.
    ax.plot(np.arange(-1, len(norms) - 1), norms, linewidth=1.8, label=label)
    ax.set_ylabel(r"$\|\theta_{memory}\|_2$")


def plot_surprise_over_time(run: ScenarioRun | None = None) -> Figure:
    """Input with the anomalies marked; below it the raw surprise (log scale) and the gate."""
    run = run or SCENARIOS["surprise_over_time"].run()
    with mpl.rc_context(_STYLE):
        fig = _figure(11, 7)
        ax_in, ax_s, ax_g = fig.subplots(
            3, 1, sharex=True, gridspec_kw={"height_ratios": [1.1, 1.1, 0.7]}
        )
        _plot_input(ax_in, run)
        ax_in.set_title("Input: a repeating pattern with anomalies")
        _plot_surprise(ax_s, run)
        ax_s.set_title("Surprise $s_t$: error of the predictor, spikes at every anomaly")
        _plot_gate(ax_g, run)
        threshold = run.layer.gate_threshold
        ax_g.set_title(
            rf"Write gate $g_t = s_t / (s_t + {threshold:g}\, c_t)$, $c_t$ the running scale:"
            " bounded in [0, 1]"
        )
        ax_g.set_xlabel("timestep $t$")
        fig.suptitle(run.title, fontsize=13, fontweight="bold")
    return fig


def plot_memory_update_heatmap(run: ScenarioRun | None = None) -> Figure:
    """Size of each write step on the memory's first-layer weights, per weight and timestep."""
    run = run or SCENARIOS["memory_update_heatmap"].run()
    with mpl.rc_context(_STYLE):
        fig = _figure(11, 5.5)
        ax_in, ax_h = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
        _plot_input(ax_in, run)
        ax_in.set_title("Input")
        _plot_write_heatmap(fig, ax_h, run)
        ax_h.set_title("Write step on each first-layer weight (forgetting factored out)")
        ax_h.set_xlabel("timestep $t$")
        fig.suptitle(run.title, fontsize=13, fontweight="bold")
    return fig


def plot_momentum_vs_raw(run: ScenarioRun | None = None) -> Figure:
    """Raw surprise and its moving average, on one log-scale axis."""
    run = run or SCENARIOS["momentum_vs_raw"].run()
    momentum = run.layer.surprise_metric.momentum
    with mpl.rc_context(_STYLE):
        fig = _figure(11, 4.5)
        ax = fig.subplots()
        raw = trace_array(run.result, "surprise_scores")
        smooth = trace_array(run.result, "surprise_momentum")
        ax.semilogy(raw, color=_COLORS["raw"], linewidth=1.0, alpha=0.8, label="raw surprise $s_t$")
        ax.semilogy(
            smooth,
            color=_COLORS["smooth"],
            linewidth=2.2,
            label=rf"with momentum: $m_t = {momentum:g}\, m_{{t-1}} + {1 - momentum:.1f}\, s_t$",
        )
        _mark_anomalies(ax, run.anomaly_indices, label=True)
        ax.set_xlabel("timestep $t$")
        ax.set_ylabel("surprise (log scale)")
        # Headroom below the curves for a one-row legend that hides no spike.
        low = min(raw.min(), smooth.min())
        ax.set_ylim(bottom=low / 100)
        ax.legend(loc="lower right", ncol=3)
        ax.set_title(run.title + ": momentum carries each spike forward")
    return fig


def plot_forgetting_effect(runs: Sequence[ScenarioRun] | None = None) -> Figure:
    """Memory weight norm over time, one line per forgetting rate."""
    runs = runs or SCENARIOS["forgetting_effect"].runs()
    with mpl.rc_context(_STYLE):
        fig = _figure(11, 4.5)
        ax = fig.subplots()
        for run in runs:
            _plot_norm(ax, run, label=f"forget_rate = {run.layer.memory.forget_rate:g}")
        _mark_anomalies(ax, runs[0].anomaly_indices, label=True)
        for idx in runs[0].anomaly_indices:
            value = runs[0].seq[idx].item()
            value = 0.0 if abs(value) < 1e-9 else value  # sin(2 pi k) is 1e-15, not worth showing
            ax.annotate(
                f" x = {value:.4g}",
                (idx, 1.0),
                xycoords=("data", "axes fraction"),
                va="top",
                fontsize=9,
                color=_COLORS["anomaly"],
            )
        ax.set_xlabel("timestep $t$")
        ax.set_ylabel(r"memory weight norm $\|\theta\|_2$")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower left")
        ax.set_title(runs[0].title + r": each step multiplies every weight by $1 - r$")
    return fig


def plot_full_pipeline(run: ScenarioRun | None = None) -> Figure:
    """Dashboard: input, raw and smoothed surprise, write gate, weight norm, write heatmap."""
    run = run or SCENARIOS["full_pipeline"].run()
    with mpl.rc_context(_STYLE):
        fig = _figure(13, 12)
        grid = fig.add_gridspec(4, 2, height_ratios=[1.1, 1, 1, 1.2])
        ax_in = fig.add_subplot(grid[0, :])
        _plot_input(ax_in, run)
        ax_in.set_title("1. Input (red: anomalies)")
        ax_raw = fig.add_subplot(grid[1, 0], sharex=ax_in)
        _plot_surprise(ax_raw, run)
        ax_raw.set_title("2. Raw surprise $s_t$")
        ax_smooth = fig.add_subplot(grid[1, 1], sharex=ax_in)
        _plot_surprise(ax_smooth, run, smooth=True)
        ax_smooth.set_title(
            f"3. Momentum-smoothed surprise (momentum {run.layer.surprise_metric.momentum:g})"
        )
        ax_gate = fig.add_subplot(grid[2, 0], sharex=ax_in)
        _plot_gate(ax_gate, run)
        ax_gate.set_title("4. Write gate $g_t$ in [0, 1]")
        ax_norm = fig.add_subplot(grid[2, 1], sharex=ax_in)
        _plot_norm(ax_norm, run)
        _mark_anomalies(ax_norm, run.anomaly_indices)
        ax_norm.set_title(f"5. Memory weight norm (forget_rate {run.layer.memory.forget_rate:g})")
        ax_heat = fig.add_subplot(grid[3, :], sharex=ax_in)
        _plot_write_heatmap(fig, ax_heat, run)
        ax_heat.set_title("6. Write step on each first-layer weight")
        for ax in (ax_gate, ax_norm, ax_heat):
            ax.set_xlabel("timestep $t$")
        fig.suptitle(run.title, fontsize=14, fontweight="bold")
    return fig


def plot_traces(
    traces: Mapping[str, Sequence[float] | np.ndarray | Tensor],
    *,
    events: Sequence[int] = (),
    signal: Sequence[float] | np.ndarray | Tensor | None = None,
    log: bool = False,
    title: str = "",
    xlabel: str = "timestep $t$",
    ylabel: str = "",
    event_label: str = "event",
) -> Figure:
    """Several series over time on one axis, with dashed red lines at ``events``.

    For traces computed outside a :class:`ScenarioRun` (a lone :class:`SurpriseMetric`, a sweep
    of settings, a rule written out by hand). Non-finite values are left out of the lines, so a
    series that diverged simply stops.

    Args:
        traces: label -> ``(T_i,)`` series, plotted against ``0 .. T_i - 1``; at least one.
        events: positions to mark (anomalies, switches).
        signal: an input series ``(T,)``, drawn in a panel above with the events as red dots.
        log: log scale on the traces' y axis.
        title, xlabel, ylabel: of the traces' panel.
        event_label: the legend entry of the events in the input panel (e.g. "anomaly").
    """
    if not isinstance(traces, Mapping) or not traces:
        raise ValueError("traces must be a non-empty mapping of label -> 1-d series")
    arrays = {}
    for label, trace in traces.items():
        values = np.asarray(torch.as_tensor(trace).detach().cpu().double())
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"traces[{label!r}] must be a non-empty 1-d series, got shape {values.shape}"
            )
        arrays[label] = values
    marks = [int(e) for e in events]
    with mpl.rc_context(_STYLE):
        if signal is None:
            fig = _figure(10, 3.8)
            ax = fig.subplots()
        else:
            x = np.asarray(torch.as_tensor(signal).detach().cpu().double())
            if x.ndim != 1:
                raise ValueError(f"signal must be a 1-d series, got shape {x.shape}")
            fig = _figure(10, 6)
            ax_in, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
            ax_in.plot(x, color=_COLORS["input"], linewidth=1.1, label="input $x_t$")
            if marks:
                ax_in.scatter(
                    marks, x[marks], color=_COLORS["anomaly"], s=30, zorder=5, label=event_label
                )
            ax_in.set_ylabel("value $x_t$")
            ax_in.legend(loc="upper right")
        for label, values in arrays.items():
            ax.plot(np.where(np.isfinite(values), values, np.nan), linewidth=1.4, label=label)
        _mark_anomalies(ax, marks)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(loc="best", ncol=min(len(arrays), 4))
    return fig


def plot_gate_curve(run: ScenarioRun | None = None) -> Figure:
    """The write gate as a function of the relative surprise, with the run's steps on it.

    The gate is ``g = r / (r + tau)`` of the ratio ``r_t = s_t / c_{t-1}`` of the surprise to the
    running scale it was compared with: a saturating curve that no surprise lifts past 1.
    """
    run = run or SCENARIOS["full_pipeline"].run()
    tau = run.layer.gate_threshold
    ratio = trace_array(run.result, "surprise_scores") / trace_array(run.result, "surprise_scale")
    gates = trace_array(run.result, "write_gates")
    events = run.anomaly_mask.bool().numpy()
    positive = ratio[ratio > 0]
    low = min(positive.min(), tau) / 10 if positive.size else tau / 1e4
    high = max(ratio.max(), tau) * 10
    grid = np.logspace(np.log10(low), np.log10(high), 300)
    with mpl.rc_context(_STYLE):
        fig = _figure(8, 4)
        ax = fig.subplots()
        ax.plot(
            grid,
            grid / (grid + tau),
            color="black",
            linewidth=1.5,
            label=rf"$g = r / (r + \tau)$, $\tau = {tau:g}$",
        )
        ax.scatter(
            ratio[~events], gates[~events], s=14, color=_COLORS["input"], label="ordinary steps"
        )
        ax.scatter(
            ratio[events],
            gates[events],
            s=40,
            color=_COLORS["anomaly"],
            zorder=3,
            label="anomalies",
        )
        ax.axvline(tau, color="gray", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(r"relative surprise $r_t = s_t / c_{t-1}$ (log)")
        ax.set_ylabel("write gate $g_t$")
        ax.set_title(r"The gate saturates: no surprise opens it past 1 (half open at $r = \tau$)")
        ax.legend(loc="upper left")
    return fig


def plot_memory_activity(run: ScenarioRun | None = None) -> Figure:
    """What the memory returns and how it is written, per step.

    Top: the input and the memory's read ``y_t = M(x_t)`` (before that step's write). Bottom:
    the norm of each write (:func:`write_norms`) with its bound ``write_lr *
    memory_max_grad_norm``, and the weight norm on the right axis. Needs a snapshot at every
    step.
    """
    run = run or SCENARIOS["full_pipeline"].run()
    memory = run.layer.memory
    t = np.arange(len(run.seq))
    reads = torch.stack(list(run.result["outputs"])).detach().cpu().double().reshape(len(t), -1)
    sizes = write_norms(run.result["memory_snapshots"], run.initial_snapshot, memory.forget_rate)
    bound = memory.write_lr * run.layer.memory_max_grad_norm
    with mpl.rc_context(_STYLE):
        fig = _figure(11, 7)
        ax_in, ax_w = fig.subplots(2, 1, sharex=True)
        _plot_input(ax_in, run)
        ax_in.plot(
            t,
            reads[:, 0].numpy(),
            color=_COLORS["gate"],
            linewidth=1.5,
            label="memory read $y_t = M(x_t)$, before the write",
        )
        ax_in.legend(loc="upper left")
        ax_in.set_title("Input, and what the memory returns for it")
        ax_w.bar(t, sizes, color=_COLORS["anomaly"], alpha=0.7, label=r"write size $\|w_t\|$")
        ax_w.axhline(
            bound,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"bound write_lr * memory_max_grad_norm = {bound:g}",
        )
        _mark_anomalies(ax_w, run.anomaly_indices)
        ax_w.set_ylabel(r"$\|w_t\|$")
        ax_w.set_xlabel("timestep $t$")
        ax_w.legend(loc="upper left")
        ax_n = ax_w.twinx()
        ax_n.grid(False)
        _plot_norm(ax_n, run, label=r"weight norm $\|\theta_t\|$ (right)")
        ax_n.lines[-1].set_color("black")
        ax_n.legend(loc="upper right")
        ax_w.set_title("Size of each write (forgetting factored out) and the weight norm")
        fig.suptitle(run.title, fontsize=13, fontweight="bold")
    return fig


def plot_runs_side_by_side(runs: Mapping[str, ScenarioRun]) -> Figure:
    """One column per run: the input, the raw surprise against the gate's half-open level
    ``tau * c_{t-1}`` (log scale), and the write gate; events marked in red."""
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty mapping of title -> ScenarioRun")
    with mpl.rc_context(_STYLE):
        fig = _figure(4 * len(runs) + 1, 8)
        axes = fig.subplots(3, len(runs), sharex="col", squeeze=False)
        for col, (title, run) in enumerate(runs.items()):
            t = np.arange(len(run.seq))
            half_open = run.layer.gate_threshold * trace_array(run.result, "surprise_scale")
            axes[0, col].plot(t, run.seq.numpy(), color=_COLORS["input"], linewidth=1)
            axes[0, col].set_title(title)
            axes[1, col].semilogy(
                t,
                trace_array(run.result, "surprise_scores"),
                color=_COLORS["raw"],
                linewidth=1,
                label="$s_t$",
            )
            axes[1, col].semilogy(
                t, half_open, color="black", linestyle="--", linewidth=1, label=r"$\tau c_{t-1}$"
            )
            _plot_gate(axes[2, col], run)
            axes[2, col].set_xlabel("timestep $t$")
            for row in range(2):
                _mark_anomalies(axes[row, col], run.anomaly_indices)
        axes[0, 0].set_ylabel("input $x_t$")
        axes[1, 0].set_ylabel("surprise (log)")
        axes[1, 0].legend(loc="upper right")
        for col in range(1, len(runs)):
            axes[2, col].set_ylabel("")
    return fig


#: Figure builders by scenario name; each runs its scenario when called without arguments.
FIGURES: Mapping[str, Callable[[], Figure]] = MappingProxyType(
    {
        "surprise_over_time": plot_surprise_over_time,
        "memory_update_heatmap": plot_memory_update_heatmap,
        "momentum_vs_raw": plot_momentum_vs_raw,
        "forgetting_effect": plot_forgetting_effect,
        "full_pipeline": plot_full_pipeline,
    }
)


def save_demo_figures(
    out_dir: str | Path = "figures", progress: bool = True, dpi: int = 150
) -> list[Path]:
    """Run the five scenarios and write their figures as PNG files.

    Args:
        out_dir: directory to write to (created if missing).
        progress: show a progress bar (tqdm, on stderr).
        dpi: resolution of the PNGs.

    Returns:
        The paths written, in :data:`FIGURES` order.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    bar = tqdm(
        FIGURES.items(), total=len(FIGURES), desc="figures", unit="fig", disable=not progress
    )
    for name, build in bar:
        bar.set_postfix_str(name)
        path = out / SCENARIOS[name].filename
        save_figure(build(), path, dpi=dpi)
        paths.append(path)
    return paths
