"""Tables of the long-context benchmarks' records (Markdown), with the spread over seeds.

A record is one grid cell of one trained model (:mod:`titans_memory.tasks.bench`). Cells that
share a model, task and length but differ in needle depth are averaged per seed first (each
depth has the same number of sequences), then the seeds are summarised as ``mean`` with their
range ``[min-max]``: with two or three seeds the range says more than a standard deviation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

# Titans (arXiv 2501.00663), Table 2: S-NIAH accuracy (%) at 16K tokens
PAPER_SNIAH_16K: dict[str, dict[str, float]] = {
    "mac": {"passkey": 98.4, "number": 97.4, "word": 95.2},
    "lmm": {"passkey": 96.2},
    "deltanet": {"passkey": 71.4},
    "mamba2": {"passkey": 5.4},
}


def _accuracy(record: dict) -> float:
    """The record's accuracy, NaN for a model that diverged in training (accuracy None)."""
    value = record["accuracy"]
    return float("nan") if value is None else float(value)


def per_seed(records: Iterable[dict], *, task: str, key: str = "context_length") -> dict:
    """``{(model, key value): {seed: accuracy}}``, depths averaged within a seed (NaN: diverged)."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["task"] == task:
            acc[(r["model"], r[key])][r["seed"]].append(_accuracy(r))
    return {k: {s: float(np.mean(v)) for s, v in seeds.items()} for k, seeds in acc.items()}


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, min, max)`` of the finite values (NaN for all three if there are none)."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if not a.size:
        return float("nan"), float("nan"), float("nan")
    return float(a.mean()), float(a.min()), float(a.max())


def cell_text(values: Sequence[float] | None, *, percent: bool = True) -> str:
    """``"97.5 [95-100]"`` (mean over seeds and their range, percent), ``"-"`` for a missing cell;
    seeds whose model diverged (NaN) are left out of the mean and counted: ``"90.0 (1 div.)"``."""
    if not values:
        return "-"
    bad = int(sum(1 for v in values if not np.isfinite(v)))
    if bad == len(values):
        return "diverged"
    mean, lo, hi = summary(values)
    f = 100.0 if percent else 1.0
    text = f"{mean * f:.1f}" if len(values) - bad == 1 or lo == hi else f"{mean * f:.1f} [{lo * f:.0f}-{hi * f:.0f}]"
    return text + (f" ({bad} div.)" if bad else "")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _models(records: Iterable[dict], models: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(r["model"] for r in records))
    return [m for m in (models or seen) if m in seen]


def length_table(records: Sequence[dict], task: str, models: Sequence[str] | None = None, *, window: int | None = None) -> str:
    """Accuracy (%) of each model (rows) at each context length (columns) on ``task``."""
    data = per_seed(records, task=task)
    lengths = sorted({r["context_length"] for r in records if r["task"] == task})
    chance = {r["context_length"]: r["chance"] for r in records if r["task"] == task}
    head = ["model"] + [f"{n:,}" + (f" ({n // window}x)" if window else "") for n in lengths]
    rows = []
    for m in _models([r for r in records if r["task"] == task], models):  # merged files: a kind's own models
        rows.append([m] + [cell_text(list(data.get((m, n), {}).values())) for n in lengths])
    if chance:
        rows.append(["chance"] + [f"{100 * chance[n]:.2g}" for n in lengths])
    return _markdown(head, rows)


def mqar_table(records: Sequence[dict], models: Sequence[str] | None = None) -> str:
    """MQAR accuracy (%) of each model (rows) for each (pairs, length) (columns)."""
    data: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["task"] == "mqar":
            data[(r["model"], r["pairs"], r["context_length"])][r["seed"]].append(_accuracy(r))
    cols = sorted({(r["pairs"], r["context_length"]) for r in records if r["task"] == "mqar"})
    head = ["model"] + [f"{p} pairs / {n}" for p, n in cols]
    rows = []
    for m in _models(records, models):
        cells = []
        for p, n in cols:
            seeds = data.get((m, p, n))
            cells.append(cell_text([float(np.mean(v)) for v in seeds.values()] if seeds else None))
        rows.append([m] + cells)
    chance = next((r["chance"] for r in records if r["task"] == "mqar"), None)
    if chance is not None:
        rows.append(["chance"] + [f"{100 * chance:.2g}"] * len(cols))
    return _markdown(head, rows)


def ablation_table(records: Sequence[dict], full: str, ablations: Sequence[str]) -> str:
    """Each ablation's accuracy (%) beside the full model's, at every task and length.

    Rows are ``(task, length)``; for MQAR the pair counts are averaged at each length.
    """
    models = [full] + [a for a in ablations if any(r["model"] == a for r in records)]
    tasks = list(dict.fromkeys(r["task"] for r in records))
    head = ["task", "length"] + models
    rows = []
    for task in tasks:
        data = per_seed(records, task=task)
        for n in sorted({r["context_length"] for r in records if r["task"] == task}):
            rows.append([task, f"{n:,}"] + [cell_text(list(data.get((m, n), {}).values())) for m in models])
    return _markdown(head, rows)


def depth_cells(records: Iterable[dict], model: str, task: str = "passkey") -> dict:
    """``{(depth, context_length): [accuracy, ...]}`` of ``model`` on ``task``, one accuracy per
    seed, for the cells evaluated at a fixed needle depth."""
    data: dict = defaultdict(list)
    for r in records:
        if r["task"] == task and r["model"] == model and r["depth"] is not None:
            data[(r["depth"], r["context_length"])].append(_accuracy(r))
    return data


def depth_table(records: Sequence[dict], model: str, task: str = "passkey") -> str:
    """Accuracy (%) of ``model`` by needle depth (rows) and context length (columns)."""
    data = depth_cells(records, model, task)
    depths = sorted({d for d, _ in data})
    lengths = sorted({n for _, n in data})
    rows = [[f"{d:g}"] + [cell_text(data.get((d, n))) for n in lengths] for d in depths]
    return _markdown(["depth"] + [f"{n:,}" for n in lengths], rows)


def paper_comparison(records: Sequence[dict], length: int = 16384) -> str:
    """Our accuracy at ``length`` beside Titans' S-NIAH numbers at 16K (Table 2).

    A row per paper number; where ``records`` hold a needle kind (passkey, number, word) of a
    paper model for which :data:`PAPER_SNIAH_16K` has no number, a row with ours beside ``-``
    (so records merged from a run of the number and word needles show up)."""
    kinds = ("passkey", "number", "word")
    ours = {task: per_seed(records, task=task) for task in kinds}
    rows = []
    names = {"mac": "mac", "lmm": "lmm", "deltanet": "lmm-deltanet", "mamba2": None}
    for paper_name, ours_name in names.items():
        for task in kinds:
            value = PAPER_SNIAH_16K[paper_name].get(task)
            seeds = ours[task].get((ours_name, length), {}) if ours_name else {}
            if value is not None:
                rows.append([paper_name, task, f"{value:.1f}", ours_name or "(not built)", cell_text(list(seeds.values()))])
            elif seeds:
                rows.append([paper_name, task, "-", ours_name, cell_text(list(seeds.values()))])
    swa = {task: list(ours[task].get(("swa", length), {}).values()) for task in ("passkey", "number", "word")}
    for task, vals in swa.items():
        if vals:
            rows.append(["-", task, "-", "swa", cell_text(vals)])
    return _markdown(["paper model", "needle", "paper (16K)", "ours", f"ours ({length:,})"], rows)


# --- compact tables for the README (``titans bench report --readme``) -----------------------------

#: the context lengths of the README's needle tables (64x, 256x, 512x the window of 32)
README_LENGTHS = (2048, 8192, 16384)


def _range_text(values: Iterable, fmt: str = "{}") -> str:
    """``"800"`` for one distinct value, ``"62-800"`` for several (their min and max), ``"-"`` for none."""
    distinct = sorted({v for v in values if v is not None})
    if not distinct:
        return "-"
    lo, hi = fmt.format(distinct[0]), fmt.format(distinct[-1])
    return lo if lo == hi else f"{lo}-{hi}"


def _lr_text(records: Iterable[dict]) -> str:
    """The learning rates of ``records``, ``"0.001 / 0.003"`` (``"-"`` for none)."""
    return " / ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in records if r.get("lr") is not None})) or "-"


def readme_niah_table(records: Sequence[dict], task: str, models: Sequence[str] | None = None,
                      lengths: Sequence[int] = README_LENGTHS) -> str:
    """One row per model: accuracy (%) on ``task`` at ``lengths`` (those evaluated; the three longest
    evaluated if none is), mean over seeds with their range, and the training steps (and each
    model's peak learning rate when the models were not all trained at one)."""
    evaluated = sorted({r["context_length"] for r in records if r["task"] == task})
    cols = [n for n in lengths if n in evaluated] or evaluated[-3:]
    data = per_seed(records, task=task)
    mine = [r for r in records if r["task"] == task]
    show_lr = len({r.get("lr") for r in mine}) > 1
    rows = []
    for m in _models(mine, models):
        its = [r for r in mine if r["model"] == m]
        rows.append([m] + [cell_text(list(data.get((m, n), {}).values())) for n in cols]
                    + [_range_text(r.get("train_steps") for r in its)] + ([_lr_text(its)] if show_lr else []))
    return _markdown(["model"] + [f"{n:,}" for n in cols] + ["steps"] + (["lr"] if show_lr else []), rows)


def readme_mqar_table(records: Sequence[dict], models: Sequence[str] | None, train_length: int) -> str:
    """One row per model (name as :func:`~titans_memory.tasks.bench.mqar_view` gives it): MQAR
    accuracy (%) averaged over the pair counts at ``train_length`` and at the longest evaluated
    length, the accuracy with the most pairs at ``train_length``, each a mean over seeds with
    their range; the training steps and the learning rate kept."""
    recs = [r for r in records if r["task"] == "mqar"]
    by_length = per_seed(recs, task="mqar")  # pairs averaged within a seed (as depths are)
    longest = max(r["context_length"] for r in recs)
    most = max((r["pairs"] for r in recs if r["context_length"] == train_length), default=None)
    at_most = per_seed([r for r in recs if r["pairs"] == most], task="mqar")
    head = ["model", f"pairs averaged, {train_length:,} (trained)", f"pairs averaged, {longest:,}",
            f"{most} pairs, {train_length:,}", "steps", "lr"]
    rows = []
    for m in _models(recs, models):
        mine = [r for r in recs if r["model"] == m]
        rows.append([
            m,
            cell_text(list(by_length.get((m, train_length), {}).values())),
            cell_text(list(by_length.get((m, longest), {}).values())),
            cell_text(list(at_most.get((m, train_length), {}).values())),
            _range_text(r.get("train_steps") for r in mine),
            _lr_text(mine),
        ])
    return _markdown(head, rows)
