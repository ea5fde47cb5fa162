"""``titans bench``: the benchmark runner (needles in a haystack, MQAR, language modelling by position).

The benchmarks themselves live in :mod:`titans_memory.tasks.bench`; this module turns the command
line into their settings and writes the tables and figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
                           help="model widths, each a separate model (default: 64,128)")
            p.add_argument("--lr-sweep", action="store_true",
                           help="train every model at learning rates 1e-3, 3e-3, 1e-2 and keep its best (Zoology)")
        p.add_argument("--train-lengths", type=int_list, metavar="N,..",
                       help="training sequence lengths, taken in turn (default: niah 32,128; mqar 128)")
        p.add_argument("--quick", action="store_true", help="a small run (a few minutes): fewer steps, lengths, samples")
        p.add_argument("--steps", type=positive_int, help="training steps of every model (default: niah 800, mqar 1500)")
        p.add_argument("--budget-minutes", type=positive_float, metavar="M",
                       help="wall-clock cap; training runs are cut to fit it (default: niah 50, mqar none; quick: 4)")
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


def run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from titans_memory.tasks.bench import (
        MQARSettings,
        NiahSettings,
        quick,
        run_benchmark,
        settings_to_dict,
    )
    from titans_memory.tasks.longcontext import MODELS

    if args.benchmark == "lm":
        return run_lm(args)

    if args.list:
        for name, spec in MODELS.items():
            print(f"{name:<14} {spec.group:<13} {spec.text}")
        return 0
    settings = NiahSettings() if args.benchmark == "niah" else MQARSettings()
    if args.models:
        unknown = [m for m in args.models if m not in MODELS]
        if unknown:
            raise CLIError(f"--models: unknown model(s) {', '.join(unknown)}; choose among {', '.join(MODELS)}")
        settings = replace(settings, models=tuple(dict.fromkeys(args.models)))
    if args.seeds:
        settings = replace(settings, seeds=tuple(args.seeds))
    if getattr(args, "kinds", None):
        from titans_memory.tasks.needles import KINDS

        unknown = [k for k in args.kinds if k not in KINDS]
        if unknown:
            raise CLIError(f"--kinds: unknown kind(s) {', '.join(unknown)}; choose among {', '.join(KINDS)}")
        settings = replace(settings, kinds=tuple(dict.fromkeys(args.kinds)))
    if getattr(args, "per_kind", False):
        if len(settings.kinds) < 2:
            raise CLIError("--per-kind needs several --kinds")
        settings = replace(settings, per_kind=True)
    if args.train_lengths:
        settings = replace(settings, train_lengths=tuple(args.train_lengths))
    if args.steps:
        settings = replace(settings, train=replace(settings.train, steps=args.steps))
    if args.quick:
        settings = quick(settings)  # one width, one learning rate, unless asked for below
    if getattr(args, "widths", None):
        bad = [w for w in args.widths if w < 2 or w % (2 * settings.model.heads)]
        if bad:
            raise CLIError(f"--widths: each width must be a positive multiple of {2 * settings.model.heads}, got {bad}")
        settings = replace(settings, widths=tuple(dict.fromkeys(args.widths)))
    if getattr(args, "lr_sweep", False):
        from titans_memory.tasks.bench import LR_SWEEP

        settings = replace(settings, lrs=LR_SWEEP)
    if args.budget_minutes:
        settings = replace(settings, budget_minutes=args.budget_minutes)
    if args.workers:
        settings = replace(settings, workers=args.workers)
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
        import matplotlib

        matplotlib.use("Agg")
        (out / f"{args.benchmark}_tables.md").write_text(tables + "\n")
        for path in bench_figures(settings, records, out):
            print(path, file=sys.stderr)
    return 0


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
