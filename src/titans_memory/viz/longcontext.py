"""Figures of the long-context benchmarks (records of :mod:`titans_memory.tasks.bench`).

* :func:`plot_accuracy_vs_length`: one panel per task, accuracy against context length (log
  scale), one line per model (mean over seeds, the band spans the seeds' range), the chance level
  dashed and the attention window marked;
* :func:`plot_depth_heatmaps`: the classic needle-in-a-haystack picture, needle depth against
  context length, one panel per model (mean over seeds);
* :func:`plot_mqar`: MQAR accuracy against the number of pairs, one panel per sequence length.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from titans_memory.tasks.report import _accuracy, depth_cells, per_seed

_STYLE = {"swa": dict(color="#555555", ls="--"), "lmm": dict(color="#dd5143"), "mac": dict(color="#4c72b0"),
          "mag": dict(color="#55a868"), "mal": dict(color="#8172b2")}


def _style(model: str, i: int) -> dict:
    if model in _STYLE:
        return dict(_STYLE[model])
    return dict(color=mpl.colormaps["tab10"](i % 10), ls=":" if model.startswith("lmm-") else "-")


def _models(records: Sequence[dict], models: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(r["model"] for r in records))
    return [m for m in (models or seen) if m in seen]


def plot_accuracy_vs_length(
    records: Sequence[dict],
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    *,
    window: int | None = None,
    title: str | None = None,
) -> Figure:
    """Accuracy against context length, one panel per task, one line per model."""
    tasks = list(tasks or dict.fromkeys(r["task"] for r in records))
    models = _models(records, models)
    fig = Figure(figsize=(4.2 * len(tasks), 3.6), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        data = per_seed(records, task=task)
        for i, m in enumerate(models):
            lengths = sorted(n for (mm, n) in data if mm == m)
            if not lengths:
                continue
            vals = [list(data[(m, n)].values()) for n in lengths]
            with warnings.catch_warnings():  # a diverged model: NaN everywhere, no line
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.array([np.nanmean(v) for v in vals])
                lo = np.array([np.nanmin(v) for v in vals])
                hi = np.array([np.nanmax(v) for v in vals])
            style = _style(m, i)
            ax.plot(lengths, 100 * mean, marker="o", ms=3, label=m, **style)
            ax.fill_between(lengths, 100 * lo, 100 * hi, color=style["color"], alpha=0.15, lw=0)
        chance = {r["context_length"]: r["chance"] for r in records if r["task"] == task}
        if chance:
            xs = sorted(chance)
            ax.plot(xs, [100 * chance[x] for x in xs], color="k", lw=0.8, ls=(0, (1, 2)), label="chance")
        if window:
            ax.axvline(window, color="#999999", lw=0.8)
            ax.annotate("window", (window, 102), fontsize=7, color="#666666", ha="left", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-3, 108)
        ax.set_xlabel("context length (tokens)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    return fig


def plot_depth_heatmaps(
    records: Sequence[dict], models: Sequence[str] | None = None, *, task: str = "passkey", cols: int = 4
) -> Figure:
    """Needle depth (rows) x context length (columns), one heatmap per model, mean over seeds."""
    models = [m for m in _models(records, models) if any(r["model"] == m and r["task"] == task and r["depth"] is not None for r in records)]
    rows = max(1, -(-len(models) // cols))
    ncols = min(cols, max(1, len(models)))
    fig = Figure(figsize=(2.9 * ncols + 0.8, 2.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False)
    image = None
    for ax in axes.flat[len(models):]:
        ax.set_axis_off()
    for ax, m in zip(axes.flat, models, strict=False):
        cell = depth_cells(records, m, task)
        depths = sorted({d for d, _ in cell})
        lengths = sorted({n for _, n in cell})
        with warnings.catch_warnings():  # diverged seeds (NaN) are left out of the mean
            warnings.simplefilter("ignore", RuntimeWarning)
            grid = np.array([[np.nanmean(cell[(d, n)]) if (d, n) in cell else np.nan for n in lengths]
                             for d in depths])
        image = ax.imshow(100 * grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(lengths)), [f"{n // 1024}k" if n >= 1024 else str(n) for n in lengths], fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=7)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6)
        ax.set_title(m, fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("needle depth", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("context length", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy (%)")
    fig.suptitle(f"{task}: accuracy by needle depth and context length")
    return fig


def plot_mqar(records: Sequence[dict], models: Sequence[str] | None = None) -> Figure:
    """MQAR accuracy against the number of pairs, one panel per sequence length, one line per model."""
    recs = [r for r in records if r["task"] == "mqar"]
    models = _models(recs, models)
    lengths = sorted({r["context_length"] for r in recs})
    fig = Figure(figsize=(3.2 * max(1, len(lengths)) + 1.2, 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(lengths)), squeeze=False)[0]
    for ax, n in zip(axes, lengths, strict=False):
        for i, m in enumerate(models):
            by: dict = defaultdict(lambda: defaultdict(list))
            for r in recs:
                if r["model"] == m and r["context_length"] == n:
                    by[r["pairs"]][r["seed"]].append(_accuracy(r))
            pairs = sorted(by)
            if not pairs:
                continue
            vals = [[np.mean(v) for v in by[p].values()] for p in pairs]
            style = _style(m, i)
            ax.plot(pairs, [100 * np.mean(v) for v in vals], marker="o", ms=3, label=m, **style)
            ax.fill_between(pairs, [100 * min(v) for v in vals], [100 * max(v) for v in vals],
                            color=style["color"], alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-3, 103)
        ax.set_title(f"length {n}")
        ax.set_xlabel("key-value pairs")
        ax.grid(alpha=0.3)
        if recs:
            ax.axhline(100 * recs[0]["chance"], color="k", lw=0.8, ls=(0, (1, 2)))
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("MQAR: accuracy against the number of pairs")
    return fig
