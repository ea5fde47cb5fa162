"""The demo layer's figures: the five of the original demo, and the plots the notebooks use.

The scenarios they draw (:data:`SCENARIOS`, :func:`run_stream`) and the trace helpers live in
:mod:`titans_memory.demo.scenarios`; they are imported here too, so that
``from titans_memory.viz.demo import SCENARIOS`` keeps working. Every plotting function builds and returns a
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
from pathlib import Path
from types import MappingProxyType

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from titans_memory.demo.scenarios import (
    DEFAULT_SEED,
    SCENARIOS,
    DemoScenario,
    ScenarioRun,
    run_stream,
    trace_array,
    weight_norm,
    weight_norms,
    write_norms,
    write_updates,
)
from titans_memory.fileio import save_figure

__all__ = [
    "DEFAULT_SEED",
    "FIGURES",
    "SCENARIOS",
    "DemoScenario",
    "ScenarioRun",
    "plot_forgetting_effect",
    "plot_full_pipeline",
    "plot_gate_curve",
    "plot_memory_activity",
    "plot_memory_update_heatmap",
    "plot_momentum_vs_raw",
    "plot_runs_side_by_side",
    "plot_surprise_over_time",
    "plot_traces",
    "run_stream",
    "save_demo_figures",
    "trace_array",
    "weight_norm",
    "weight_norms",
    "write_norms",
    "write_updates",
]

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
