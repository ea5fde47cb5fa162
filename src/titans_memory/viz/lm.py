"""The figure of ``titans bench lm`` (records of :mod:`titans_memory.tasks.lm_bench`).

:func:`plot_bits_vs_position`: bits per byte against the position in the document (log
scale), one line per model (mean over seeds, the band spans the seeds' range), each bucket
drawn at its middle; the unigram model dashed, the attention window and the training length
marked.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from titans_memory.tasks.lm_bench import _rows, per_seed

_STYLE = {"full": dict(color="#000000"), "swa": dict(color="#555555", ls="--"), "lmm": dict(color="#dd5143"),
          "mac": dict(color="#4c72b0"), "mag": dict(color="#55a868"), "mal": dict(color="#8172b2")}


def _style(label: str, i: int) -> dict:
    name, _, window = label.partition(" @")
    if name in _STYLE:
        style = dict(_STYLE[name])
        if name == "full" and window:  # full attention's two evaluations: same colour, two dashes
            style["ls"] = "-" if i % 2 else ":"
        return style
    return dict(color=mpl.colormaps["tab10"](i % 10), ls="-.")


def plot_bits_vs_position(
    records: Sequence[dict],
    models: Sequence[str] | None = None,
    *,
    unigram: Sequence[float] | None = None,
    window: int | None = None,
    train_length: int | None = None,
    carry: bool = False,
    title: str | None = None,
) -> Figure:
    """Bits per byte by position bucket, one line per model (and evaluation window).

    Args:
        records: :func:`~titans_memory.tasks.lm_bench.run_benchmark`'s records.
        models: the models to draw, in this order (default: all in the records).
        unigram: the unigram model's bits per byte per bucket (a dashed reference).
        window, train_length: marked with vertical lines.
        carry: draw the records scored with the state carried across documents.
    """
    recs = [r for r in records if r["carry"] == carry and (models is None or r["model"] in models)]
    data = per_seed(recs, carry=carry)
    edges = sorted({r["bucket_start"] for r in recs} | {r["bucket_end"] for r in recs})
    mids = np.array([(lo + hi) / 2 for lo, hi in zip(edges, edges[1:], strict=False)])
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for i, label in enumerate(_rows(recs, models)):
        vals = [[v if v is not None else np.nan for v in data.get((label, lo), {}).values()] for lo in edges[:-1]]
        if not any(np.isfinite(v).any() for v in map(np.asarray, vals) if len(v)):
            continue  # diverged: no line
        mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in map(np.asarray, vals)])
        lo = np.array([np.nanmin(v) if np.isfinite(v).any() else np.nan for v in map(np.asarray, vals)])
        hi = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in map(np.asarray, vals)])
        style = _style(label, i)
        ax.plot(mids, mean, marker="o", ms=3, label=label, **style)
        ax.fill_between(mids, lo, hi, color=style["color"], alpha=0.15, lw=0)
    if unigram is not None and len(unigram) == len(mids):
        ax.plot(mids, unigram, color="#999999", lw=0.8, ls=(0, (4, 2)), label="unigram")
    for x, text in ((window, "window"), (train_length, "training length")):
        if x:
            ax.axvline(x, color="#999999", lw=0.8)
            ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="#666666",
                        ha="left", va="top", rotation=90)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position in the document (bytes; each bucket at its middle)")
    ax.set_ylabel("bits per byte (held out)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title or ("bits per byte by position" + (", state carried across documents" if carry else "")))
    return fig


__all__ = ["plot_bits_vs_position"]
