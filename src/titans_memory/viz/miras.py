"""One figure comparing the MIRAS presets on the recall tasks of :mod:`titans_memory.tasks.recall`.

Four panels, all at the operator level with fixed gates (see that module's docstring):

* A: recall (cosine of read and value) vs age, every preset at its initial gates;
* B: recall of the clean pairs written before an outlier burst: just before it, at the end of a
  clean control stream, and at the end of the stream with the burst, every preset, as the library
  runs it (with the per-token step bound) and as the papers write it (without);
* C, D: the same burst with only the attentional bias swapped, on a matrix memory (C) and on the
  residual MLP memory (D), DeltaNet's step size (theta = 0.25), no decay, no momentum, no step bound.

A memory that diverges (NaN or Inf reads) is marked "diverged" instead of a bar.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from titans_memory.core.presets import PRESETS, preset
from titans_memory.fileio import save_figure
from titans_memory.tasks.recall import (
    BurstResult,
    RecallCurve,
    bias_ablation,
    outlier_burst,
    recall_vs_age,
)

FIGURE_NAME = "miras_presets.png"

# deep (MLP) memories solid, matrix memories dashed: the architecture is the first MIRAS choice
_MATRIX = {"deltanet", "gated_deltanet", "linear_attention", "ttt_linear"}
_BAR_KINDS = (
    ("before", "just before the burst", "#9e9e9e"),
    ("after_clean", "end, clean control stream", "#4c72b0"),
    ("after_burst", "end, stream with the burst", "#dd5143"),
)
_UNBOUNDED_BAR = ("after_burst", "end, with the burst, no step bound (the papers' rule)", "#8c1c13")


def miras_results(
    *, seed: int = 0, recall_trials: int = 64, burst_trials: int = 32, head_dim: int = 32
) -> dict:
    """Everything the figure shows: ``{"recall", "burst", "burst_unbounded", "ablation_matrix",
    "ablation_mlp"}``.

    ``recall`` maps preset -> :class:`RecallCurve`; the others map preset or bias ->
    :class:`BurstResult` (``burst_unbounded``: the presets with ``max_step_norm=None``).
    Deterministic for a given seed; seconds on a laptop CPU.
    """
    names = list(PRESETS)
    common = dict(seed=seed, head_dim=head_dim)
    return {
        "recall": {n: recall_vs_age(n, trials=recall_trials, **common) for n in names},
        "burst": {n: outlier_burst(n, trials=burst_trials, **common) for n in names},
        "burst_unbounded": {n: outlier_burst(n, trials=burst_trials, max_step_norm=None, **common) for n in names},
        "ablation_matrix": bias_ablation(1, trials=burst_trials, **common),
        "ablation_mlp": bias_ablation(2, trials=burst_trials, **common),
    }


def _burst_bars(
    ax, results: dict[str, BurstResult], title: str, rotate: bool, unbounded: dict[str, BurstResult] | None = None
) -> None:
    labels = list(results)
    x = np.arange(len(labels))
    kinds = [(results, *kind) for kind in _BAR_KINDS]
    if unbounded is not None:
        kinds.append((unbounded, *_UNBOUNDED_BAR))
    width = 0.8 / len(kinds)
    for i, (source, field, legend, color) in enumerate(kinds):
        vals = np.array([getattr(source[n], field) for n in labels], dtype=float)
        pos = x + (i - (len(kinds) - 1) / 2) * width
        ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, color=color, label=legend)
        for p, v in zip(pos, vals, strict=True):
            if not math.isfinite(v):  # say it, rather than draw a silent zero
                ax.text(p, 0.02, "diverged", rotation=90, ha="center", va="bottom", fontsize=8,
                        color=color, fontweight="bold")
            else:  # the value itself: several bars are too short to read off the axis
                ax.text(p, max(v, 0.0) + 0.01, f"{v:.2f}".replace("-0.00", "0.00"), rotation=90, ha="center",
                        va="bottom", fontsize=7, color="#333333")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    ax.set_ylabel("recall of the pre-burst pairs\n(mean cosine of read and value)")
    ax.set_ylim(-0.1, 1.0)
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(axis="y", alpha=0.3)


def plot_miras_comparison(results: dict | None = None, *, seed: int = 0) -> Figure:
    """The four-panel comparison; computes :func:`miras_results` when ``results`` is None."""
    if results is None:
        results = miras_results(seed=seed)
    # a bare Figure, not pyplot: no global state, works headless and inline alike
    fig = Figure(figsize=(15, 10.5), layout="constrained")
    axes = fig.subplots(2, 2)

    # A: recall vs age
    ax = axes[0, 0]
    curves: dict[str, RecallCurve] = results["recall"]
    colors = mpl.colormaps["tab10"]
    for i, (name, curve) in enumerate(curves.items()):
        style = "--" if name in _MATRIX else "-"
        ax.plot(curve.ages, curve.cosine, style, color=colors(i % 10), lw=1.8, label=name)
    first = next(iter(curves.values()))
    ax.set_xlabel("age of the pair (pairs written after it; 0 = the last)")
    ax.set_ylabel("recall (mean cosine of read and value)")
    ax.set_xlim(0, first.ages[-1])
    ax.set_ylim(-0.15, 1.0)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=8.5, loc="upper right", title="solid: MLP memory, dashed: matrix",
              title_fontsize=8.5)
    ax.set_title(f"A. Recall vs age: {len(first.ages)} random pairs, d = 32, gates at each preset's init",
                 loc="left", fontsize=11)

    _burst_bars(axes[0, 1], results["burst"],
                "B. Outlier burst (values 100x larger, 4 tokens), presets at their init gates", True,
                unbounded=results.get("burst_unbounded"))
    _burst_bars(axes[1, 0], results["ablation_matrix"],
                "C. Same burst, only the bias changes: matrix memory, theta = 0.25, no step bound", False)
    _burst_bars(axes[1, 1], results["ablation_mlp"],
                "D. Same burst, only the bias changes: MLP memory (depth 2), theta = 0.25, no step bound", False)
    axes[0, 1].legend(fontsize=8.5, loc="upper left")
    deep_lr = sorted({preset(n).lr_init for n in results["burst"] if n in PRESETS and preset(n).depth > 1})
    lr_text = "/".join(f"{lr:g}" for lr in deep_lr)
    axes[0, 1].text(
        0.99, 0.97,
        f"MLP presets start at theta = {lr_text} and store\nlittle in one pass: B alone cannot judge\n"
        "their robustness; C and D isolate the bias.",
        transform=axes[0, 1].transAxes, ha="right", va="top", fontsize=8.5, style="italic",
    )
    fig.suptitle(
        "MIRAS update rules at the operator level (fixed gates, no training): "
        "24 clean pairs, a burst of 4 corrupted values, 8 clean pairs",
        fontsize=12,
    )
    return fig


def write_miras_figure(out_dir: str | Path, *, dpi: int = 110, seed: int = 0) -> Path:
    """Write ``miras_presets.png`` into ``out_dir`` (created if needed); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_miras_comparison(seed=seed)
    path = out / FIGURE_NAME
    return save_figure(fig, path, dpi=dpi)


__all__ = ["FIGURE_NAME", "miras_results", "plot_miras_comparison", "write_miras_figure"]
