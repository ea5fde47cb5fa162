"""titans_memory.viz.demo beyond the five figures: run_stream, write_norms and the plots the
notebooks use (plot_traces, plot_gate_curve, plot_memory_activity, plot_runs_side_by_side).

Every plot is checked on what it draws (the data of its lines, bars and points), not only on
its type.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from titans_memory.viz.demo import (
    SCENARIOS,
    plot_gate_curve,
    plot_memory_activity,
    plot_runs_side_by_side,
    plot_traces,
    run_stream,
    trace_array,
    weight_norm,
    write_norms,
)


@pytest.fixture(scope="module")
def pipeline():
    return SCENARIOS["full_pipeline"].run()


def _vlines_x(ax) -> list[float]:
    """x of the vertical lines (axvline) of an axis."""
    return [
        float(line.get_xdata()[0])
        for line in ax.lines
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    ]


# --- run_stream ------------------------------------------------------------------------------


def test_run_stream_is_the_scenario_run_for_the_scenario_s_series(pipeline):
    scenario = SCENARIOS["full_pipeline"]
    seq, mask = scenario.sequence()
    run = run_stream(seq, mask.nonzero().flatten().tolist(), title="mine", **scenario.layer_kwargs)
    assert run.scenario is None and run.title == "mine"
    assert pipeline.title == scenario.title
    assert run.anomaly_indices == pipeline.anomaly_indices == [12, 30, 48]
    assert torch.equal(run.anomaly_mask, pipeline.anomaly_mask)
    for key in ("outputs", "surprise_scores", "write_gates", "surprise_scale"):
        assert torch.equal(torch.stack(run.result[key]), torch.stack(pipeline.result[key])), key
    assert all(
        torch.equal(a, b)
        for a, b in zip(run.initial_snapshot, pipeline.initial_snapshot, strict=True)
    )


def test_run_stream_without_events_and_with_layer_overrides():
    run = run_stream(torch.linspace(-1, 1, 15), forget_rate=0.2, memory_dim=4)
    assert run.anomaly_indices == []
    assert run.layer.memory.forget_rate == 0.2
    assert len(run.result["write_gates"]) == 15


@pytest.mark.parametrize(
    ("seq", "events", "error", "match"),
    [
        ([1.0, 2.0], (), TypeError, r"seq must be a torch\.Tensor of shape \(T,\), got list"),
        (torch.ones(4, 1), (), ValueError, r"seq must have shape \(T,\) with T >= 1, got \(4, 1\)"),
        (torch.ones(0), (), ValueError, r"seq must have shape \(T,\) with T >= 1, got \(0,\)"),
        (torch.ones(5), 3, TypeError, r"events must be a sequence of ints, got int"),
        (torch.ones(5), [1.5], TypeError, r"events must contain ints, got \[1\.5\]"),
        (torch.ones(5), [5], ValueError, r"events must lie in \[0, 5\), got \[5\]"),
        (torch.ones(5), [-1], ValueError, r"events must lie in \[0, 5\), got \[-1\]"),
    ],
)
def test_run_stream_bad_arguments(seq, events, error, match):
    with pytest.raises(error, match=match):
        run_stream(seq, events)


# --- write_norms -----------------------------------------------------------------------------


def test_write_norms_is_the_norm_of_each_whole_write(pipeline):
    keep = 1.0 - pipeline.layer.memory.forget_rate
    snaps = [pipeline.initial_snapshot] + pipeline.result["memory_snapshots"]
    by_hand = [
        math.sqrt(
            sum(
                float(((b.double() - a.double() / keep) ** 2).sum())
                for a, b in zip(after, before, strict=True)
            )
        )
        for before, after in zip(snaps[:-1], snaps[1:], strict=True)
    ]
    got = write_norms(pipeline.result["memory_snapshots"], pipeline.initial_snapshot, 1 - keep)
    assert got.shape == (60,)
    np.testing.assert_allclose(got, by_hand, rtol=1e-9)
    # clipped gradients: no write is longer than write_lr * memory_max_grad_norm
    bound = pipeline.layer.memory.write_lr * pipeline.layer.memory_max_grad_norm
    assert got.max() <= bound * (1 + 1e-4)
    assert got.max() > 0.5 * bound  # the anomalies do write


def test_write_norms_are_zero_when_only_forgetting_acts():
    run = SCENARIOS["forgetting_effect"].run(forget_rate=0.05, write_lr=0.0)
    got = write_norms(run.result["memory_snapshots"], run.initial_snapshot, 0.05)
    assert got.max() < 1e-6
    assert weight_norm(run.result["memory_snapshots"][-1]) < 0.1 * weight_norm(run.initial_snapshot)


# --- plot_traces -----------------------------------------------------------------------------


def test_plot_traces_draws_every_series_and_marks_the_events():
    before = plt.get_fignums()
    a, b = np.array([1.0, 2.0, 4.0, 8.0]), torch.tensor([3.0, float("inf"), 1.0])
    fig = plot_traces({"a": a, "b": b}, events=[1, 2], log=True, title="T", ylabel="y")
    assert isinstance(fig, Figure) and plt.get_fignums() == before  # nothing left in pyplot
    (ax,) = fig.axes
    data = [line for line in ax.lines if line.get_label() in ("a", "b")]
    np.testing.assert_array_equal(data[0].get_ydata(), a)
    np.testing.assert_array_equal(data[1].get_ydata(), [3.0, np.nan, 1.0])  # inf left out
    assert sorted(_vlines_x(ax)) == [1.0, 2.0]
    assert ax.get_yscale() == "log" and ax.get_title() == "T" and ax.get_ylabel() == "y"


def test_plot_traces_with_a_signal_adds_the_input_panel():
    signal = torch.tensor([1.0, 2.0, 50.0, 1.0])
    fig = plot_traces({"s": [0.1, 0.2, 9.0, 0.3]}, events=[2], signal=signal)
    ax_in, ax = fig.axes
    np.testing.assert_array_equal(ax_in.lines[0].get_ydata(), signal.numpy())
    (dots,) = [c for c in ax_in.collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(dots.get_offsets(), [[2.0, 50.0]])
    assert ax.get_yscale() == "linear"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"traces": {}}, r"traces must be a non-empty mapping of label -> 1-d series"),
        ({"traces": [1.0, 2.0]}, r"traces must be a non-empty mapping of label -> 1-d series"),
        ({"traces": {"x": np.ones((2, 2))}}, r"traces\['x'\] must be a non-empty 1-d series"),
        ({"traces": {"x": []}}, r"traces\['x'\] must be a non-empty 1-d series"),
        ({"traces": {"x": [1.0]}, "signal": np.ones((2, 2))}, r"signal must be a 1-d series"),
    ],
)
def test_plot_traces_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_traces(**kwargs)


# --- plots of a run --------------------------------------------------------------------------


def test_plot_gate_curve_places_every_step_on_the_curve(pipeline):
    fig = plot_gate_curve(pipeline)
    (ax,) = fig.axes
    tau = pipeline.layer.gate_threshold
    ratio = trace_array(pipeline.result, "surprise_scores") / trace_array(
        pipeline.result, "surprise_scale"
    )
    gates = trace_array(pipeline.result, "write_gates")
    ordinary, anomalies = (c.get_offsets() for c in ax.collections)
    events = pipeline.anomaly_indices
    np.testing.assert_allclose(anomalies, np.c_[ratio[events], gates[events]])
    assert len(ordinary) == len(gates) - len(events)
    curve = ax.lines[0]
    x = np.asarray(curve.get_xdata())
    np.testing.assert_allclose(curve.get_ydata(), x / (x + tau))
    assert x.min() < ratio.min() and x.max() > ratio.max()  # the curve spans every point
    # the points lie on the curve: the gate is r / (r + tau)
    np.testing.assert_allclose(gates, ratio / (ratio + tau), atol=1e-6)


def test_plot_memory_activity_shows_reads_and_write_sizes(pipeline):
    fig = plot_memory_activity(pipeline)
    ax_in, ax_w, ax_n = fig.axes
    reads = [line for line in ax_in.lines if line.get_label().startswith("memory read")]
    np.testing.assert_allclose(
        reads[0].get_ydata(), torch.stack(pipeline.result["outputs"]).squeeze(-1).numpy()
    )
    heights = [p.get_height() for p in ax_w.patches]
    sizes = write_norms(
        pipeline.result["memory_snapshots"],
        pipeline.initial_snapshot,
        pipeline.layer.memory.forget_rate,
    )
    np.testing.assert_allclose(heights, sizes)
    bound = pipeline.layer.memory.write_lr * pipeline.layer.memory_max_grad_norm
    assert any(line.get_ydata()[0] == bound for line in ax_w.lines)
    norms = ax_n.lines[0].get_ydata()
    assert len(norms) == 61 and norms[0] == pytest.approx(weight_norm(pipeline.initial_snapshot))


def test_plot_runs_side_by_side_one_column_per_run(pipeline):
    other = run_stream(torch.sin(torch.arange(40.0) / 4), [20], title="sine")
    fig = plot_runs_side_by_side({"pipeline": pipeline, "sine": other})
    assert len(fig.axes) == 6
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["pipeline", "sine"]
    for col, run in enumerate((pipeline, other)):
        np.testing.assert_array_equal(axes[0, col].lines[0].get_ydata(), run.seq.numpy())
        s, half_open = axes[1, col].lines[:2]
        np.testing.assert_allclose(s.get_ydata(), trace_array(run.result, "surprise_scores"))
        np.testing.assert_allclose(
            half_open.get_ydata(),
            run.layer.gate_threshold * trace_array(run.result, "surprise_scale"),
        )
        assert set(_vlines_x(axes[1, col])) == set(map(float, run.anomaly_indices))


@pytest.mark.parametrize("runs", [{}, []])
def test_plot_runs_side_by_side_needs_runs(runs):
    with pytest.raises(
        ValueError, match=r"runs must be a non-empty mapping of title -> ScenarioRun"
    ):
        plot_runs_side_by_side(runs)
