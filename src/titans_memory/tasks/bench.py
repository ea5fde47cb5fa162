"""The long-context benchmarks behind ``titans bench niah`` and ``titans bench mqar``.

Each trains every model of :data:`~titans_memory.tasks.longcontext.MODELS` asked for, once per
seed, on short sequences, then evaluates it on a grid of longer ones, and returns one record per
grid cell::

    {"model", "task", "context_length", "depth", "pairs", "accuracy", "chance", "samples",
     "train_seconds", "train_steps", "seed"}

(``depth`` is None for cells whose needle depth is drawn per sequence; ``pairs`` is MQAR's number
of key-value pairs, None for the needles). The evaluation sequences depend on the cell only, so
every model and seed answers the very same questions.

Jobs (one model, one seed; and for MQAR one width and learning rate, for ``niah --per-kind``
one needle kind) run in ``workers`` processes of one thread each: on small models a
second thread in one process gains little, a second process doubles the throughput.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from titans_memory.tasks.longcontext import (
    MODELS,
    TaskModelConfig,
    TrainSettings,
    build_model,
    evaluate,
    train_on_answers,
)
from titans_memory.tasks.mqar import MQAR_VOCAB, mqar_batch
from titans_memory.tasks.needles import VOCAB, TaskBatch, min_length, needle_batch

# the benchmarked models by group, in MODELS' order (the names are written once, in MODELS)
ARCHITECTURES = tuple(name for name, spec in MODELS.items() if spec.group == "architecture")
MIRAS = tuple(name for name, spec in MODELS.items() if spec.group == "miras")
ABLATIONS = tuple(name for name, spec in MODELS.items() if spec.group == "ablation")
#: ATLAS' memories (arXiv 2505.23735), not in the default run (their chunked form materialises
#: per-token weights: several times the cost of the Titans LMM); ask for them with ``--models``.
ATLAS = tuple(name for name, spec in MODELS.items() if spec.group == "atlas")
DEFAULT_MODELS = ARCHITECTURES + MIRAS + ABLATIONS


@dataclass(frozen=True)
class NiahSettings:
    """``titans bench niah``: needles, trained on short sequences, evaluated on long ones.

    The default trains and evaluates the passkey (S-NIAH-1) only: a mixture of the four kinds
    learned far slower (an LMM after 300 steps of 32 x 128 tokens: passkey 75%, number 38%, word
    and multikey 0% at 128 tokens, where passkey alone reached 100% after about 100 steps of
    16 x 128), too slow for the budget of 14 models x 2 seeds. ``kinds`` selects others
    (several are trained as a mixture, one kind per step).

    Every model trains the same number of steps (``train.steps``) on sequences of 32 and 128
    tokens (1x and 4x the window, alternating). Trained on 128 tokens alone, the sliding-window
    baseline never learned the task, not even inside its window (0-3% at 32 tokens after 62-128
    steps): three needles in four lay out of its reach, so it had almost nothing to learn from.
    With 32-token sequences in the mix it answers 100% at 32 tokens after 300 steps, and so
    does MAC (whose attention had the same problem), so the control fails only where the needle
    is out of reach. By default every model trains all its steps, on a learning-rate schedule by
    steps, so a run repeats whatever the machine's load. ``budget_minutes`` caps the run on a slow or busy
    machine: each model's training is then cut at its share (the steps it got are in the
    records), and its schedule follows the time spent as well as the steps, so the results
    depend on the machine's speed.
    """

    models: tuple[str, ...] = DEFAULT_MODELS  # names in MODELS
    seeds: tuple[int, ...] = (0, 1)  # one training run per model and seed
    model: TaskModelConfig = field(default_factory=lambda: TaskModelConfig(vocab_size=64))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(steps=800))  # the same steps for every model
    train_lengths: tuple[int, ...] = (32, 128)  # training sequences cycle through these lengths (1x, 4x the window)
    batch_tokens: int = 2048  # tokens per training step (batch = batch_tokens // length)
    kinds: tuple[str, ...] = ("passkey",)  # of KINDS; several: a mixture, one kind per step
    per_kind: bool = False  # several kinds: one model per kind (each trained on its kind alone)
    value_length: int | None = None  # tokens per value (None: the generator's, 2 digits / 3 letters)
    keys: int = 8  # needles of multikey (one is queried)
    lengths: tuple[int, ...] = (32, 128, 512, 2048, 8192, 16384)  # evaluated context lengths
    multikey_max_length: int = 8192  # multikey is evaluated up to here (its target is 64x = 2048)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # passkey's needle depths (heatmap)
    depth_samples: int = 10  # passkey: sequences per (length, depth) cell
    samples: int = 16  # number, word, multikey: sequences per length (depth drawn per sequence)
    workers: int = 2  # processes (one thread each)
    budget_minutes: float | None = None  # a cap (None: none): runs are cut to fit it, and their schedules follow time
    train_share: float = 0.7  # of the budget spent training (the rest: evaluating up to 16K)

    @property
    def task(self) -> str:
        return "niah"


@dataclass(frozen=True)
class MQARSettings:
    """``titans bench mqar``: multi-query associative recall after Zoology's protocol (Arora et al.).

    As in Zoology: keys and values from two disjoint halves of the vocabulary (64 + 64 here), the
    key-value pairs at the start, every pair queried once at random positions after them, a
    mixture of pair counts in training, every model trained the same number of steps (no shared
    time budget: a model that needs more steps is not cut short), accuracy against the number of
    pairs at each model width, and a full causal attention baseline (``attn``) that must learn
    the task at its training length (if it does not, the training is wrong, not the models).
    ``lrs`` with several values is Zoology's learning-rate sweep: every model is trained at each,
    and the tables keep each model's best (``--lr-sweep``).
    """

    # OmegaNet joins the default (its chunked form costs 1.5-2x the LMM's); Atlas is run when named
    models: tuple[str, ...] = ("attn",) + ARCHITECTURES + MIRAS + ("lmm-omeganet",)
    seeds: tuple[int, ...] = (0, 1)
    model: TaskModelConfig = field(default_factory=lambda: TaskModelConfig(vocab_size=MQAR_VOCAB.size))
    # the same steps for every model. Full attention's recall appears suddenly (a phase change):
    # at 3e-3 on 64-token sequences, 16 per step, it answered 99-100% after 1,000 steps; on
    # 128-token ones, 16 per step, after 1,000 (600: 9-25%); 8 per step: not after 1,500
    train: TrainSettings = field(default_factory=lambda: TrainSettings(steps=1000))
    train_lengths: tuple[int, ...] = (64,)  # 16 pairs and their queries fill 64 tokens; evaluated up to 1,024
    batch_tokens: int = 1024  # 16 sequences of 64 tokens per step
    train_pairs: tuple[int, ...] = (4, 8, 16)  # pair counts of the training sequences (cycled)
    lengths: tuple[int, ...] = (64, 128, 256, 512, 1024)  # evaluated sequence lengths
    pairs: tuple[int, ...] = (4, 8, 16, 32)  # evaluated numbers of pairs
    widths: tuple[int, ...] = (64,)  # model widths (Zoology's x-axis; --widths 64,128: twice the time); each a separate model
    lrs: tuple[float, ...] = (3e-3,)  # peak learning rates; several: a sweep, the best kept
    samples: int = 16  # sequences per cell (every pair is queried once)
    workers: int = 2
    budget_minutes: float | None = None  # None: every model its full steps (a cap cuts them)
    train_share: float = 0.85  # MQAR's sequences are short: evaluating is cheap

    @property
    def task(self) -> str:
        return "mqar"


#: ``--lr-sweep``: Zoology's sweep, scaled to these small models
LR_SWEEP: tuple[float, ...] = (1e-3, 3e-3, 1e-2)


Settings = NiahSettings | MQARSettings


def quick(settings: Settings) -> Settings:
    """A small version of ``settings`` that runs in a few minutes (``--quick``): fewer steps,
    shorter lengths, fewer samples; the models and seeds asked for are kept."""
    train = replace(settings.train, steps=min(settings.train.steps, 60), warmup=6)
    if isinstance(settings, NiahSettings):
        return replace(
            settings, train=train, lengths=(32, 128, 512), depths=(0.0, 0.5, 1.0), samples=4,
            depth_samples=4, budget_minutes=min(settings.budget_minutes or 4.0, 4.0), batch_tokens=1024,
        )
    return replace(
        settings, train=train, lengths=(64, 128), pairs=(4, 8), samples=4, widths=settings.widths[:1],
        lrs=settings.lrs[:1], budget_minutes=min(settings.budget_minutes or 4.0, 4.0), batch_tokens=1024,
    )


# --- the data -------------------------------------------------------------------------------------


def _cell_seed(*parts: object) -> int:
    """A seed from the cell alone (stable across runs and Python versions)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def training_batches(settings: Settings, seed: int) -> Iterator[TaskBatch]:
    """The training stream: one batch per step, cycling lengths (and kinds or pair counts)."""
    rng = np.random.default_rng(10_000 + seed)
    for step in itertools.count():
        length = settings.train_lengths[step % len(settings.train_lengths)]
        if isinstance(settings, NiahSettings):
            # every kind meets every length (not step % kinds: with 4 kinds and 2 lengths each
            # kind would always get the same length)
            kind = settings.kinds[(step // len(settings.train_lengths)) % len(settings.kinds)]
            # a kind whose needles do not fit (8 keyed needles in 32 tokens) takes the shortest that fits
            length = max(length, min_length(kind, value_length=settings.value_length, keys=settings.keys))
            batch = max(1, settings.batch_tokens // length)
            yield needle_batch(kind, batch, length, rng, value_length=settings.value_length, keys=settings.keys)
        else:
            pairs = settings.train_pairs[(step // len(settings.train_lengths)) % len(settings.train_pairs)]
            yield mqar_batch(max(1, settings.batch_tokens // length), length, pairs, rng)


def evaluation_cells(settings: Settings) -> list[dict]:
    """The grid: one dict of cell coordinates per evaluation (``task``, ``context_length``,
    ``depth``, ``pairs``), feasible cells only (a multikey haystack needs room for its needles)."""
    cells = []
    if isinstance(settings, NiahSettings):
        for kind in settings.kinds:
            for length in settings.lengths:
                if kind == "multikey" and length > settings.multikey_max_length:
                    continue
                depths = settings.depths if kind == "passkey" else (None,)
                for depth in depths:
                    try:
                        _eval_batch(settings, dict(task=kind, context_length=length, depth=depth, pairs=None), 1)
                    except ValueError:
                        continue
                    cells.append(dict(task=kind, context_length=length, depth=depth, pairs=None))
    else:
        for pairs in settings.pairs:
            for length in settings.lengths:
                if length >= 3 * pairs and pairs <= MQAR_VOCAB.n_keys:
                    cells.append(dict(task="mqar", context_length=length, depth=None, pairs=pairs))
    return cells


def _eval_batch(settings: Settings, cell: dict, samples: int) -> TaskBatch:
    seed = _cell_seed(cell["task"], cell["context_length"], cell["depth"], cell["pairs"])
    if cell["task"] == "mqar":
        return mqar_batch(samples, cell["context_length"], cell["pairs"], seed)
    return needle_batch(
        cell["task"], samples, cell["context_length"], seed, depth=cell["depth"],
        value_length=settings.value_length, keys=settings.keys,
    )


def _cell_samples(settings: Settings, cell: dict) -> int:
    # passkey is sampled per depth (the heatmap); the other kinds draw the depth per sequence
    if isinstance(settings, NiahSettings) and cell["task"] == "passkey":
        return settings.depth_samples
    return settings.samples


# --- one job: train one model with one seed, evaluate it on the grid --------------------------------


@dataclass(frozen=True)
class Job:
    settings: Settings
    model: str
    seed: int
    train_time_limit: float | None
    width: int | None = None  # MQAR: the model width (None: settings.model.dim)
    kind: str | None = None  # niah with per_kind: the one kind this job trains and evaluates
    lr: float | None = None  # MQAR: the peak learning rate (None: settings.train.lr)


def run_job(job: Job, progress: Callable[[str, int], None] | None = None) -> list[dict]:
    """Train ``job.model`` with ``job.seed`` and evaluate it: the records of every grid cell.

    ``progress(kind, n)`` is told of each training step (``"train"``) and each evaluated cell
    (``"eval"``).
    """
    s = job.settings
    if job.kind is not None:  # one kind of several: its own model, trained and evaluated alone
        s = replace(s, kinds=(job.kind,))
    cfg = s.model if job.width is None else replace(s.model, dim=job.width)
    model = build_model(job.model, cfg, seed=job.seed)
    train = replace(s.train, time_limit=job.train_time_limit)
    if job.lr is not None:
        train = replace(train, lr=job.lr)
    tick = (lambda _loss: progress("train", 1)) if progress else None
    result = train_on_answers(model, training_batches(s, job.seed), train, progress=tick)
    if progress and result.steps < s.train.steps:
        progress("train", s.train.steps - result.steps)  # the bar counts the steps not taken
    records = []
    start = time.perf_counter()
    diverged = result.diverged
    for cell in evaluation_cells(s):
        batch = _eval_batch(s, cell, _cell_samples(s, cell))
        accuracy = None  # a diverged model has no accuracy (reported as such, not as chance)
        if not diverged:
            try:
                accuracy = evaluate(model, batch)
            except ValueError as exc:  # the memory's finiteness check during a long sequence
                if "nan" not in str(exc).lower():
                    raise
        records.append(
            dict(
                model=job.model, **cell, accuracy=accuracy, chance=batch.chance,
                samples=int(batch.targets.shape[0] * batch.targets.shape[1]),
                train_seconds=round(result.seconds, 2), train_steps=result.steps,
                final_loss=float(np.mean(result.losses[-20:])) if result.losses else None,
                diverged=diverged, seed=job.seed, width=cfg.dim, lr=train.lr,
            )
        )
        if progress:
            progress("eval", 1)
    eval_seconds = time.perf_counter() - start
    for r in records:
        r["eval_seconds"] = round(eval_seconds, 2)
    return records


_EVENTS = None  # a worker's queue to the parent's progress bars (set when the worker starts)


def _init_worker(events) -> None:
    global _EVENTS
    _EVENTS = events
    torch.set_num_threads(1)


def _worker(job: Job) -> list[dict]:
    return run_job(job, lambda kind, n: _EVENTS.put((kind, n)))


# cost of a training step relative to the LMM (the default niah run of 2026-12-06, two workers:
# training seconds per step over the LMM's); shares the budget's caps out, and orders the jobs
_STEP_COST = {"swa": 0.29, "lmm": 1.0, "mac": 1.7, "mag": 1.25, "mal": 1.1, "lmm-moneta": 1.1,
              "lmm-yaad": 0.7, "lmm-memora": 2.0, "lmm-deltanet": 0.29, "lmm-gdn": 0.31,
              "lmm-nomom": 0.71, "lmm-noforget": 0.77, "lmm-matrix": 0.36, "lmm-libforget": 0.81,
              "hope": 3.55, "hope-cms1": 3.55, "hope-static": 3.55,
              # OmegaNet measured in niah runs (2026-12-07: 188-198 s against the LMM's 169-192 s
              # for 800 steps); Atlas from docs/atlas.md's cost table, not measured in a run
              "lmm-omeganet": 1.05, "mag-omeganet": 1.3, "lmm-atlas": 15.0, "mal-atlas": 15.0,
              # not measured in a run: attn as swa, MAC's options as MAC
              "attn": 0.29, "mac-u": 1.7, "mac-y": 1.7}


def plan(settings: Settings) -> list[Job]:
    """The jobs, the most expensive first (so that the pool ends together), each with a training
    time limit that shares ``budget_minutes`` among them in proportion to their cost."""
    unknown = [m for m in settings.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose among {', '.join(MODELS)}")
    if not settings.models or not settings.seeds:
        raise ValueError("at least one model and one seed are needed")
    pairs = [(m, s) for m in settings.models for s in settings.seeds]
    cost = {m: _STEP_COST.get(m, 1.0) for m in settings.models}
    pairs.sort(key=lambda p: -cost[p[0]])
    limits: dict[str, float | None] = {m: None for m in settings.models}
    if settings.budget_minutes is not None:
        # train_share of the budget trains (the rest evaluates), shared out by cost over the workers
        total = settings.budget_minutes * 60 * settings.train_share * settings.workers
        unit = total / sum(cost[m] for m, _ in pairs)
        limits = {m: unit * cost[m] for m in settings.models}
    if isinstance(settings, MQARSettings):
        # widths and learning rates multiply the jobs (and share the cap like the seeds)
        grid = [(w, lr) for w in settings.widths for lr in settings.lrs]
        scale = len(grid)
        return [
            Job(settings, m, s, None if limits[m] is None else limits[m] / scale, width=w, lr=lr)
            for m, s in pairs for w, lr in grid
        ]
    if isinstance(settings, NiahSettings) and settings.per_kind and len(settings.kinds) > 1:
        kinds = settings.kinds
        return [
            Job(settings, m, s, None if limits[m] is None else limits[m] / len(kinds), kind=k)
            for m, s in pairs for k in kinds
        ]
    return [Job(settings, m, s, limits[m]) for m, s in pairs]


def run_benchmark(settings: Settings, *, progress: bool = True) -> list[dict]:
    """Every job of ``settings``: the records of all models and seeds (see the module docstring)."""
    from tqdm.auto import tqdm

    jobs = plan(settings)
    # a per-kind job evaluates its kind's cells only
    cells = {k: len(evaluation_cells(settings if k is None else replace(settings, kinds=(k,))))
             for k in {j.kind for j in jobs}}
    total_steps = settings.train.steps * len(jobs)
    bars = {
        "train": tqdm(total=total_steps, desc=f"{settings.task}: train", unit="step", disable=not progress),
        "eval": tqdm(total=sum(cells[j.kind] for j in jobs), desc=f"{settings.task}: eval", unit="cell", disable=not progress),
    }
    records = run_jobs(
        jobs, bars, settings.workers,
        run_here=lambda job: run_job(job, lambda kind, n: bars[kind].update(n)),
        worker=_worker, init_worker=_init_worker,
    )
    order = {m: i for i, m in enumerate(settings.models)}
    records.sort(key=lambda r: (order[r["model"]], r["seed"]))
    return records


def mqar_view(settings: MQARSettings, records: list[dict]) -> tuple[list[dict], list[str]]:
    """MQAR's records as the tables show them: per model, width and seed only the learning rate
    with the best mean accuracy over the grid (Zoology's sweep), each model named
    ``"model d<width>"`` when several widths were run; returns the records and the names in order."""
    mean: dict[tuple, list[float]] = {}
    for r in records:
        mean.setdefault((r["model"], r["width"], r["seed"], r["lr"]), []).append(r["accuracy"] or 0.0)
    best: dict[tuple, tuple[float, float]] = {}
    for (m, w, s, lr), accs in mean.items():
        score = float(np.mean(accs))
        if (m, w, s) not in best or score > best[(m, w, s)][0]:
            best[(m, w, s)] = (score, lr)
    several = len(settings.widths) > 1

    def name(m: str, w: int) -> str:
        return f"{m} d{w}" if several else m

    kept = [
        {**r, "model": name(r["model"], r["width"])}
        for r in records if best[(r["model"], r["width"], r["seed"])][1] == r["lr"]
    ]
    names = [name(m, w) for w in settings.widths for m in settings.models]
    return kept, names


def run_jobs(
    jobs: Sequence, bars: dict, workers: int, *, run_here: Callable, worker: Callable, init_worker: Callable
) -> list[dict]:
    """The records of every job, run here (``workers == 1``) or in a pool of ``workers`` processes.

    ``run_here(job)`` runs a job in this process; ``worker(job)`` in a pool process, which
    ``init_worker(events)`` has given the queue its progress events ``(bar, n)`` go to; they are
    moved onto ``bars`` (tqdm bars by name, closed at the end). Used by every benchmark runner.
    """
    records: list[dict] = []
    try:
        if workers == 1:
            # one thread here too, as in the pool: a second OpenMP thread gains little on these
            # models and, beside another busy process, its spin-waits slowed training 5-15x
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for job in jobs:
                    records += run_here(job)
            finally:
                torch.set_num_threads(threads)
        else:
            # fork: works from scripts and notebooks alike (spawn would re-import ``__main__``);
            # the parent has run no torch computation, so no thread pool is copied mid-flight
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            events = ctx.Queue()
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(events,)) as pool:
                pending = {pool.submit(worker, job) for job in jobs}
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    drain_progress(events, bars)
                    for fut in done:
                        records += fut.result()
                drain_progress(events, bars)
    finally:
        for bar in bars.values():
            bar.close()
    return records


def drain_progress(events, bars) -> None:
    """Move the progress events that the worker processes queued (``(bar, n)``) onto the bars."""
    while True:
        try:
            kind, n = events.get_nowait()
        except queue.Empty:
            return
        bars[kind].update(n)


def settings_to_dict(settings: Settings) -> dict:
    """The settings as JSON-ready data (written next to the records)."""
    out = asdict(settings)
    out["task"] = settings.task
    out["cpu_count"] = os.cpu_count()
    return out


__all__ = [
    "ABLATIONS", "ARCHITECTURES", "ATLAS", "DEFAULT_MODELS", "LR_SWEEP", "MIRAS", "Job", "MQARSettings", "NiahSettings",
    "evaluation_cells", "mqar_view", "plan", "quick", "run_benchmark", "run_job", "run_jobs", "settings_to_dict",
    "training_batches", "VOCAB",
]
