"""Figures. Every plotting function returns a :class:`matplotlib.figure.Figure`; nothing calls
``plt.show``. The demo layer's figures (the five of the original demo, and the plots the
notebooks explore the layer with) live in :mod:`titans_memory.viz.demo`, which also re-exports
the scenarios and trace helpers of :mod:`titans_memory.demo.scenarios`; the comparison of the
MIRAS presets in :mod:`titans_memory.viz.miras`; the long-context plots in
:mod:`titans_memory.viz.longcontext`.
"""

from titans_memory.viz.demo import (
    FIGURES,
    SCENARIOS,
    DemoScenario,
    ScenarioRun,
    plot_forgetting_effect,
    plot_full_pipeline,
    plot_gate_curve,
    plot_memory_activity,
    plot_memory_update_heatmap,
    plot_momentum_vs_raw,
    plot_runs_side_by_side,
    plot_surprise_over_time,
    plot_traces,
    run_stream,
    save_demo_figures,
    trace_array,
    weight_norm,
    weight_norms,
    write_norms,
    write_updates,
)
from titans_memory.viz.miras import miras_results, plot_miras_comparison, write_miras_figure

__all__ = [
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
    "miras_results",
    "plot_miras_comparison",
    "write_miras_figure",
    "write_norms",
    "write_updates",
]
