"""``titans bench``: the benchmark runner (needles in a haystack, MQAR, language modelling by position).

The benchmarks themselves live in :mod:`titans_memory.tasks.bench`; this module turns the command
line into their settings and writes the tables and figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from titans_memory.cli._common import (
    CLIError,
    comma_list,
    directory_path,
    int_list,
    output_directory,
    positive_float,
    positive_int,
    seed_list,
)

if TYPE_CHECKING:
    from titans_memory.tasks.bench import Settings

HELP = "long-context benchmarks: train small models, test them far beyond their window"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    helps = {
        "niah": "needles in a haystack (passkey, number, word, multi-key): train short, test long",
        "mqar": "multi-query associative recall: accuracy by number of pairs and length",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--models", type=comma_list, metavar="A,B,..",
                       help="models to train (default: all; see --list)")
        p.add_argument("--seeds", type=seed_list, metavar="S,..", help="training seeds (default: 0,1)")
        if name == "niah":
            p.add_argument("--kinds", type=comma_list, metavar="K,..",
                           help="needle kinds among passkey, number, word, multikey; several are "
                                "trained as a mixture (default: passkey)")
            p.add_argument("--per-kind", action="store_true",
                           help="with several --kinds: one model per kind, each trained on its kind alone")
        if name == "mqar":
            p.add_argument("--widths", type=int_list, metavar="D,..",
                           help="model widths, each a separate model (default: 64)")
            p.add_argument("--lr-sweep", action="store_true",
                           help="train every model at learning rates 1e-3, 3e-3, 1e-2 and keep its best (Zoology)")
        p.add_argument("--train-lengths", type=int_list, metavar="N,..",
                       help="training sequence lengths, taken in turn (default: niah 32,128; mqar 64)")
        p.add_argument("--quick", action="store_true", help="a small run (a few minutes): fewer steps, lengths, samples")
        p.add_argument("--steps", type=positive_int, help="training steps of every model (default: niah 800, mqar 1000)")
        p.add_argument("--lr", type=positive_float, metavar="LR",
                       help="peak learning rate of every model (default: 3e-3)")
        p.add_argument("--samples", type=positive_int, metavar="N",
                       help="evaluated sequences per cell (niah: per length, and per depth for the passkey; "
                            "default: niah 16, passkey 10; mqar 16)")
        p.add_argument("--budget-minutes", type=positive_float, metavar="M",
                       help="wall-clock cap; training runs are cut to fit it (default: none; quick: 4)")
        p.add_argument("--workers", type=positive_int, help="processes of one thread each (default: 2)")
        p.add_argument("--json", type=Path, metavar="PATH", help="write the records (and settings) as JSON")
        p.add_argument("--out", type=directory_path, metavar="DIR", help="write the figures (PNG) and tables (Markdown)")
        p.add_argument("--list", action="store_true", help="list the models and exit")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    # titans bench lm: its work is in tasks/lm_bench.py; run_lm below adapts the arguments
    text = "language modelling on long held-out documents: bits per byte by position"
    p = sub.add_parser("lm", help=text, description=text)
    p.add_argument("--models", type=comma_list, metavar="A,B,..", help="models to train (default: see --list)")
    p.add_argument("--seeds", type=seed_list, metavar="S,..", help="training seeds (default: 0,1)")
    p.add_argument("--data", metavar="PATH", help="a text file or folder (default: Python's stdlib sources)")
    p.add_argument("--eval-length", type=positive_int, metavar="N", help="bytes scored per document (default: 8192)")
    p.add_argument("--carry", action="store_true", help="also score with the state carried across a folder's documents")
    p.add_argument("--quick", action="store_true", help="a small run (a few minutes)")
    p.add_argument("--steps", type=positive_int, help="training steps of every model (default: 340)")
    p.add_argument("--budget-minutes", type=positive_float, metavar="M", help="wall-clock cap (default: 58; quick: 4)")
    p.add_argument("--workers", type=positive_int, help="processes of one thread each (default: 2)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the records (and settings) as JSON")
    p.add_argument("--out", type=directory_path, metavar="DIR", help="write the figure (PNG) and tables (Markdown)")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # titans bench report: the tables and figures again, from records alone (no training)
    text = "tables and figures from the records of niah or mqar runs (--json), merged; no training"
    p = sub.add_parser("report", help=text, description=text + ". Records of one task from several files are "
                       "merged; two files holding the same cell (model, kind, length, depth, seed, width, lr) are refused.")
    p.add_argument("records", nargs="+", metavar="RECORDS.json", help="record files that titans bench niah|mqar --json wrote")
    p.add_argument("--out", type=directory_path, metavar="DIR",
                   help="write the figures (PNG) and tables (Markdown) as the run's --out does")
    p.add_argument("--readme", action="store_true",
                   help="print compact tables for the README (one row per model) instead of the full tables")
    p.add_argument("--models", type=comma_list, metavar="A,B,..",
                   help="only these models' rows (default: every model in the records)")


def run(args: argparse.Namespace) -> int:
    import time

    from titans_memory.tasks.bench import run_benchmark, settings_to_dict
    from titans_memory.tasks.longcontext import MODELS

    if args.benchmark == "lm":
        return run_lm(args)
    if args.benchmark == "report":
        return run_report(args)

    if args.list:
        for name, spec in MODELS.items():
            print(f"{name:<14} {spec.group:<13} {spec.text}")
        return 0
    settings = settings_from_flags(args.benchmark, args)
    out = output_directory(args.out) if args.out else None
    if args.json is not None:
        if args.json.is_dir():
            raise CLIError(f"--json {str(args.json)!r} is a directory; give a file path")
        if not args.json.parent.exists():
            raise CLIError(f"--json: the directory {str(args.json.parent)!r} does not exist")

    start = time.perf_counter()
    records = run_benchmark(settings, progress=not args.quiet)
    wall = time.perf_counter() - start
    result = {"settings": settings_to_dict(settings), "wall_seconds": round(wall, 1), "records": records}
    if args.json is not None:
        from titans_memory.fileio import atomic_write_text, json_text

        atomic_write_text(args.json, json_text(result, indent=1), what="benchmark results")  # NaN -> null
    tables = bench_tables(settings, records)
    print(tables)
    print(f"\n{args.benchmark}: {len(records)} records, {wall / 60:.1f} min wall", file=sys.stderr)
    if out is not None:
        write_outputs(settings, records, out, tables)
    return 0


def write_outputs(settings: Settings, records: list[dict], out: Path, tables: str | None = None) -> None:
    """Write ``<task>_tables.md`` (``tables``, made from the records if None) and the figures into
    ``out``; print the figures' paths on stderr. What ``--out`` writes after a run and ``report``
    writes from the records alone."""
    import matplotlib

    matplotlib.use("Agg")
    if tables is None:
        tables = bench_tables(settings, records)
    (out / f"{settings.task}_tables.md").write_text(tables + "\n")
    for path in bench_figures(settings, records, out):
        print(path, file=sys.stderr)


def settings_from_flags(benchmark: str, args: argparse.Namespace) -> Settings:
    """The settings of ``titans bench niah|mqar`` with the flags in ``args`` (a flag absent from
    ``args``, None or False keeps the default); bad values raise :class:`CLIError`. ``report``
    uses it too, to write the command that made a record file."""
    from dataclasses import replace

    from titans_memory.tasks.bench import LR_SWEEP, MQARSettings, NiahSettings, quick
    from titans_memory.tasks.longcontext import MODELS
    from titans_memory.tasks.needles import KINDS

    def flag(name: str):
        return getattr(args, name, None)

    def known(option: str, names: list[str], choices, what: str) -> tuple[str, ...]:
        """``names`` without repeats, each checked against ``choices`` (one line naming the unknown)."""
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise CLIError(f"--{option}: unknown {what}(s) {', '.join(unknown)}; choose among {', '.join(choices)}")
        return tuple(dict.fromkeys(names))

    settings = NiahSettings() if benchmark == "niah" else MQARSettings()
    if flag("models"):
        settings = replace(settings, models=known("models", args.models, MODELS, "model"))
    if flag("seeds"):
        settings = replace(settings, seeds=tuple(args.seeds))
    if flag("kinds"):
        settings = replace(settings, kinds=known("kinds", args.kinds, KINDS, "kind"))
    if flag("per_kind"):
        if len(settings.kinds) < 2:
            raise CLIError("--per-kind needs several --kinds")
        settings = replace(settings, per_kind=True)
    if flag("train_lengths"):
        settings = replace(settings, train_lengths=tuple(args.train_lengths))
    if flag("steps"):
        settings = replace(settings, train=replace(settings.train, steps=args.steps))
    if flag("quick"):
        settings = quick(settings)  # one width, one learning rate, unless asked for below
    if flag("widths"):
        bad = [w for w in args.widths if w < 2 or w % (2 * settings.model.heads)]
        if bad:
            raise CLIError(f"--widths: each width must be a positive multiple of {2 * settings.model.heads}, got {bad}")
        settings = replace(settings, widths=tuple(dict.fromkeys(args.widths)))
    if flag("lr_sweep"):
        if flag("lr"):
            raise CLIError("--lr and --lr-sweep exclude each other: give one learning rate or the sweep")
        settings = replace(settings, lrs=LR_SWEEP)
    if flag("lr"):
        settings = replace(settings, train=replace(settings.train, lr=args.lr))
        if isinstance(settings, MQARSettings):
            settings = replace(settings, lrs=(args.lr,))
    if flag("samples"):
        settings = replace(settings, samples=args.samples)
        if isinstance(settings, NiahSettings):
            settings = replace(settings, depth_samples=args.samples)
    if flag("budget_minutes"):
        settings = replace(settings, budget_minutes=args.budget_minutes)
    if flag("workers"):
        settings = replace(settings, workers=args.workers)
    return settings


def bench_tables(settings, records: list[dict]) -> str:
    """The Markdown tables of a benchmark's ``records``: accuracy by length, then the ablations."""
    from titans_memory.tasks import report
    from titans_memory.tasks.bench import ABLATIONS, MIRAS

    window = settings.model.window
    ablations = [m for m in ABLATIONS + MIRAS if m in settings.models]
    parts = []
    if settings.task == "niah":
        for task in settings.kinds:
            parts.append(f"### {task}\n\n" + report.length_table(records, task, settings.models, window=window))
        if 16384 in settings.lengths and {"passkey", "number", "word"} & set(settings.kinds):
            parts.append("### Titans' S-NIAH at 16K beside ours\n\n" + report.paper_comparison(records))
    else:
        from titans_memory.tasks.bench import mqar_view

        view, names = mqar_view(settings, records)
        lrs = "" if len(settings.lrs) == 1 else f" (best of learning rates {', '.join(f'{lr:g}' for lr in settings.lrs)})"
        parts.append(f"### MQAR{lrs}\n\n" + report.mqar_table(view, names))
        parts.append("### MQAR, pairs averaged\n\n" + report.length_table(view, "mqar", names))
    several = settings.task == "mqar" and (len(settings.widths) > 1 or len(settings.lrs) > 1)
    if "lmm" in settings.models and ablations and not several:  # MQAR's grid: the tables above
        parts.append("### Ablations and MIRAS memories beside the LMM\n\n" + report.ablation_table(records, "lmm", ablations))
    return "\n\n".join(parts)


def bench_figures(settings, records: list[dict], out: Path) -> list[Path]:
    """Write the benchmark's figures (PNG) into ``out``; return their paths."""
    from titans_memory.fileio import save_figure
    from titans_memory.viz.longcontext import (
        plot_accuracy_vs_length,
        plot_depth_heatmaps,
        plot_mqar,
    )

    paths = []
    if settings.task == "niah":
        figs = {
            "niah_accuracy.png": plot_accuracy_vs_length(records, settings.kinds, settings.models, window=settings.model.window),
            "niah_depth.png": plot_depth_heatmaps(records, settings.models),
        }
    else:
        from titans_memory.tasks.bench import mqar_view

        view, names = mqar_view(settings, records)
        figs = {
            "mqar_pairs.png": plot_mqar(view, names),
            "mqar_accuracy.png": plot_accuracy_vs_length(view, ["mqar"], names, window=settings.model.window),
        }
    for name, fig in figs.items():
        path = out / name
        save_figure(fig, path, dpi=120)
        paths.append(path)
    return paths


def run_lm(args: argparse.Namespace) -> int:
    """``titans bench lm`` from parsed arguments (see ``titans bench lm --help``).

    Bad settings raise ValueError (the CLI prints one line and exits with status 2).
    """
    import time
    from dataclasses import replace

    from titans_memory.fileio import atomic_write_text, json_text, save_figure
    from titans_memory.tasks.lm_bench import (
        MODEL_TEXT,
        LMSettings,
        evaluation_documents,
        lm_model_names,
        quick,
        run_benchmark,
        settings_to_dict,
        tables,
    )
    from titans_memory.tasks.longcontext import MODELS
    from titans_memory.training.data import open_corpus

    if args.list:
        for name in lm_model_names():
            text = MODEL_TEXT.get(name) or MODELS[name].text
            print(f"{name:<14} {text}")
        return 0
    settings = LMSettings()
    if args.models:
        settings = replace(settings, models=tuple(dict.fromkeys(args.models)))
    if args.seeds:
        settings = replace(settings, seeds=tuple(args.seeds))
    if args.data:
        settings = replace(settings, data=str(args.data))
    if args.steps:
        settings = replace(settings, train=replace(settings.train, steps=args.steps))
    if args.quick:
        settings = quick(settings)
    if args.eval_length:
        edges = tuple(e for e in settings.buckets if e < args.eval_length) + (args.eval_length,)
        settings = replace(settings, eval_length=args.eval_length, buckets=edges)
    if args.carry:
        settings = replace(settings, carry=True)
    if args.budget_minutes:
        settings = replace(settings, budget_minutes=args.budget_minutes)
    if args.workers:
        settings = replace(settings, workers=args.workers)
    settings.check()
    if args.json is not None:
        if Path(args.json).is_dir():
            raise ValueError(f"--json {str(args.json)!r} is a directory; give a file path")
        if not Path(args.json).parent.exists():
            raise ValueError(f"--json: the directory {str(Path(args.json).parent)!r} does not exist")
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    # fail early (before any training) when the corpus has no document long enough
    evaluation_documents(open_corpus(settings.data, settings.held_out_fraction), settings.eval_length, 1)

    start = time.perf_counter()
    result = run_benchmark(settings, progress=not args.quiet)
    wall = time.perf_counter() - start
    text = tables(result, settings)
    print(text)
    print(f"\nlm: {len(result['records'])} records, {wall / 60:.1f} min wall", file=sys.stderr)
    if args.json is not None:
        payload = {"settings": settings_to_dict(settings), "wall_seconds": round(wall, 1), **result}
        atomic_write_text(Path(args.json), json_text(payload, indent=1), what="benchmark results")
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        from titans_memory.viz.lm import plot_bits_vs_position

        out = Path(args.out)
        atomic_write_text(out / "lm_tables.md", text + "\n", what="tables")
        fig = plot_bits_vs_position(result["records"], settings.models, unigram=result.get("unigram"),
                                    window=settings.model.window, train_length=settings.train_length)
        save_figure(fig, out / "lm_position.png", dpi=120)
        print(out / "lm_position.png", file=sys.stderr)
        if settings.carry:
            fig = plot_bits_vs_position(result["records"], settings.models, unigram=result.get("unigram"),
                                        window=settings.model.window, train_length=settings.train_length, carry=True)
            save_figure(fig, out / "lm_position_carry.png", dpi=120)
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``titans bench report``: load, check and merge the record files, then print the tables (or the
    README's, ``--readme``) and write what a run's ``--out`` writes. Bad input: ``ValueError`` or
    :class:`CLIError` (one line, exit status 2)."""
    from titans_memory.tasks.records import load_run, merge_runs

    out = output_directory(args.out) if args.out else None  # a file given as --out fails before any work
    runs = [load_run(path) for path in args.records]
    settings, records = merge_runs(runs)
    models = getattr(args, "models", None)
    if models:
        settings, records = keep_models(settings, records, models)
    if args.readme:
        print(readme_tables(runs, settings, records, models))
    else:
        print(bench_tables(settings, records))
    if out is not None:
        write_outputs(settings, records, out)
    return 0


def keep_models(settings: Settings, records: list[dict], models: list[str]) -> tuple[Settings, list[dict]]:
    """``report --models``: the settings and records of these models only, in the order given;
    a name with no record is a :class:`CLIError` naming the models the records hold."""
    from dataclasses import replace

    held = list(dict.fromkeys(r["model"] for r in records))
    unknown = [m for m in models if m not in held]
    if unknown:
        raise CLIError(f"--models: no records of {', '.join(unknown)}; the records hold {', '.join(held)}")
    wanted = tuple(dict.fromkeys(models))
    return replace(settings, models=wanted), [r for r in records if r["model"] in wanted]


def command_for(settings_dict: dict) -> tuple[str, list[str]]:
    """The ``titans bench niah|mqar`` command that makes ``settings_dict`` (as a record file holds
    it), best effort: the fewest flags that give the same settings with today's defaults, and
    the settings no flag gives (``"field=value"``; e.g. a default that has changed since)."""
    from dataclasses import asdict

    from titans_memory.tasks.bench import LR_SWEEP
    from titans_memory.tasks.records import settings_from_dict

    target = settings_from_dict(settings_dict)
    task = target.task
    # every flag at the recorded value, in the order of --help
    flags: dict = dict(models=list(target.models), seeds=list(target.seeds))
    if task == "niah":
        flags.update(kinds=list(target.kinds), per_kind=target.per_kind)
    else:
        flags.update(widths=list(target.widths), lr_sweep=target.lrs == LR_SWEEP)
    # one learning rate: --lr (MQAR's sweep is --lr-sweep, and the two exclude each other)
    lr = target.train.lr if task == "niah" else (target.lrs[0] if len(target.lrs) == 1 else None)
    # --samples sets the passkey's samples per depth too: it makes only settings where the two agree
    samples = target.samples if task == "mqar" or target.samples == target.depth_samples else None
    flags.update(train_lengths=list(target.train_lengths), steps=target.train.steps, lr=lr, samples=samples,
                 budget_minutes=target.budget_minutes, workers=target.workers)

    def flat(data: dict, prefix: str = "") -> dict:
        items = {}
        for k, v in data.items():
            items.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return items

    want = flat(asdict(target))

    def residue(chosen: dict) -> list[str]:
        try:
            got = flat(asdict(settings_from_flags(task, argparse.Namespace(**chosen))))
        except CLIError:
            return [f"{k}={want[k]}" for k in want] + ["?"]  # cannot be made by flags at all
        return [f"{k}={want[k]!r}" for k in want if got.get(k) != want[k]]

    best: tuple[dict, list[str]] | None = None
    for with_quick in (False, True):
        chosen = {**flags, "quick": with_quick}
        for name in [n for n in flags]:  # drop every flag that the result does not need
            trial = {k: v for k, v in chosen.items() if k != name}
            if len(residue(trial)) <= len(residue(chosen)):
                chosen = trial
        if best is None or len(residue(chosen)) < len(best[1]):
            best = (chosen, residue(chosen))
    chosen, rest = best
    words = ["titans", "bench", task]
    if chosen.get("quick"):
        words.append("--quick")
    for name, value in chosen.items():
        if name == "quick" or value is None or value is False:
            continue
        option = "--" + name.replace("_", "-")
        if value is True:
            words.append(option)
        else:
            words += [option, ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}"]
    return " ".join(words), rest


def _provenance(runs: list, what: str) -> str:
    """One line: which files hold the records of ``what`` and the command behind each."""
    parts = []
    for run in runs:
        command, rest = command_for(run.raw_settings)
        extra = f"; settings no flag sets: {', '.join(rest)}" if rest else ""
        parts.append(f"`{run.path}` (`{command}`{extra})")
    return f"{what}; records: " + ", ".join(parts) + "."


def readme_tables(runs: list, settings: Settings, records: list[dict], models: list[str] | None = None) -> str:
    """The README's compact tables (``--readme``), each after a line naming its files and commands;
    rows in the order of :data:`~titans_memory.tasks.longcontext.MODELS`."""
    from titans_memory.tasks import report
    from titans_memory.tasks.longcontext import MODELS

    order = {m: i for i, m in enumerate(MODELS)}
    paths = " ".join(run.path for run in runs)
    chosen = f" --models {','.join(models)}" if models else ""
    remake = f"Made by `titans bench report {paths} --readme{chosen}`."
    parts = []
    if settings.task == "niah":
        for kind in dict.fromkeys(r["task"] for r in records):
            models = sorted({r["model"] for r in records if r["task"] == kind}, key=lambda m: (order.get(m, len(order)), m))
            mine = [run for run in runs if any(r["task"] == kind for r in run.records)]
            line = _provenance(mine, f"**{kind}**: accuracy (%), mean over seeds [range]")
            parts.append(f"{line} {remake}\n\n" + report.readme_niah_table(records, kind, models))
    else:
        from titans_memory.tasks.bench import mqar_view

        view, names = mqar_view(settings, records)
        base = {n: n.split(" d")[0] for n in names}
        names = sorted(names, key=lambda n: (order.get(base[n], len(order)), names.index(n)))
        evaluated = {r["context_length"] for r in view}
        train_length = max([n for n in settings.train_lengths if n in evaluated] or settings.train_lengths)
        line = _provenance(runs, "**MQAR**: accuracy (%), mean over seeds [range]")
        parts.append(f"{line} {remake}\n\n" + report.readme_mqar_table(view, names, train_length))
    return "\n\n".join(parts)
