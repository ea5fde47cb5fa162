"""The ``titans`` command.

Subcommands are registered in :data:`SUBCOMMANDS`. To add one, write a function that configures
its parser and one that runs it, and register them::

    def _configure_train(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--steps", type=int, default=1000)

    def _run_train(args: argparse.Namespace) -> int:
        ...
        return 0

    register(Subcommand("train", "train a model", _configure_train, _run_train))

Keep the heavy imports (torch, matplotlib) inside the run function, so that ``titans --help``
stays instant. Bad input ends with one line on stderr and exit status 2, never a traceback: raise
:class:`CLIError` (or let a library ``ValueError``/``TypeError`` through) and :func:`main`
prints ``titans <command>: error: <message>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path


class CLIError(Exception):
    """Bad input on the command line: :func:`main` prints the message on one line, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def directory_path(text: str) -> Path:
    """argparse type: a non-empty path (``Path("")`` would silently mean the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty path")
    return Path(text)


def output_directory(path: Path) -> Path:
    """``path`` as a directory to write into: created if missing; a clear error if it cannot be."""
    if path.exists() and not path.is_dir():
        raise CLIError(f"--out {str(path)!r} is a file, not a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"--out {str(path)!r} lies under {str(parent)!r}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create the directory {str(path)!r}: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"the directory {str(path)!r} is not writable")
    return path


def parse_override(text: str, cls: type) -> tuple[str, object]:
    """``FIELD=VALUE`` for a field of the dataclass ``cls``, the value parsed by the field's type.

    Booleans are ``true``/``false``; ``none`` (or ``null``) sets an optional field to None; numbers
    are parsed as numbers; strings are taken as they are.
    """
    if "=" not in text:
        raise CLIError(f"--set expects FIELD=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    if name not in known:
        raise CLIError(f"--set: unknown field {name!r}; fields: {', '.join(known)}")
    return name, _parse_typed(name, raw, hints[name])


def _parse_typed(name: str, raw: str, hint: object) -> object:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if type(None) in options and raw.strip().lower() in ("none", "null"):
        return None
    for kind in (t for t in options if t is not type(None)):
        if kind is bool:
            if raw.strip().lower() in ("true", "false"):
                return raw.strip().lower() == "true"
            continue
        if kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                continue
        if kind is str:
            return raw
    wanted = " or ".join("none" if t is type(None) else ("true/false" if t is bool else t.__name__) for t in options)
    raise CLIError(f"--set {name}={raw!r}: expected {wanted}")


@dataclass(frozen=True)
class Subcommand:
    """One ``titans <name>`` subcommand.

    Attributes:
        name: what the user types after ``titans``.
        help: one line for ``titans --help``.
        configure: adds the subcommand's arguments to its parser.
        run: does the work; returns the process exit status.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: Registered subcommands, by name, in the order ``titans --help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {}


def register(command: Subcommand) -> Subcommand:
    """Add ``command`` to :data:`SUBCOMMANDS` (an existing name is an error)."""
    if command.name in SUBCOMMANDS:
        raise ValueError(f"subcommand {command.name!r} is already registered")
    SUBCOMMANDS[command.name] = command
    return command


# --- titans figures ---------------------------------------------------------------------------


def _configure_figures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=directory_path,
        default=Path("figures"),
        metavar="DIR",
        help="directory to write the PNG files to (default: ./figures)",
    )
    parser.add_argument("--dpi", type=positive_int, default=150, help="resolution in dots per inch (default: 150)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no file list")


def _run_figures(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from titans_memory.viz.demo import save_demo_figures
    from titans_memory.viz.miras import write_miras_figure

    out = output_directory(args.out)
    paths = save_demo_figures(out, progress=not args.quiet, dpi=args.dpi)
    if not args.quiet:
        print("MIRAS presets: recall vs age and an outlier burst ...", file=sys.stderr)
    paths.append(write_miras_figure(out, dpi=args.dpi))
    if not args.quiet:
        for path in paths:
            print(path)
    return 0


register(
    Subcommand(
        "figures",
        "write the figures (PNG): the demo's five and the MIRAS presets' comparison",
        _configure_figures,
        _run_figures,
    )
)


# --- titans presets ---------------------------------------------------------------------------


def _configure_presets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", nargs="?", help="a preset to print as a JSON MemoryConfig (default: list them all)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field, e.g. --set dim=128 --set heads=4 (repeatable)",
    )


def _run_presets(args: argparse.Namespace) -> int:
    import json

    from titans_memory.core.config import MemoryConfig
    from titans_memory.core.presets import describe_presets, preset

    if args.name is None:
        if args.set:
            raise CLIError("--set needs a preset name")
        width = max(map(len, describe_presets()))
        for name, text in describe_presets().items():
            print(f"{name:<{width}}  {text}")
        return 0
    overrides = dict(parse_override(text, MemoryConfig) for text in args.set)
    config = preset(args.name, **overrides)  # a ValueError names the field: main() prints it
    print(json.dumps(config.to_dict(), indent=2))
    return 0


register(
    Subcommand(
        "presets",
        "list the MIRAS presets, or print one as a MemoryConfig (JSON)",
        _configure_presets,
        _run_presets,
    )
)


# --- titans explore ---------------------------------------------------------------------------

_EXPLORE_INSTALL = (
    "needs the 'explore' extra: pip install 'titans-miras[explore]' "
    "(or: uv run --extra explore titans explore)"
)


def _configure_explore(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open the page in a web browser"
    )
    parser.add_argument(
        "--lang", choices=("en", "vi"), default="en", help="language the page opens in"
    )


def _run_explore(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    try:
        import panel  # noqa: F401
    except ImportError:
        raise CLIError(_EXPLORE_INSTALL) from None
    from titans_memory.explore.app import serve

    def ready(url: str) -> None:
        print(f"titans explore: serving on {url}  (Ctrl+C to stop)", flush=True)

    try:
        serve(args.port, show=not args.no_browser, lang=args.lang, on_ready=ready)
    except OSError as err:
        raise CLIError(f"cannot listen on 127.0.0.1:{args.port}: {err}") from None
    return 0


register(
    Subcommand(
        "explore",
        "open the interactive explorer in the browser (extra 'explore')",
        _configure_explore,
        _run_explore,
    )
)


# --- titans bench -----------------------------------------------------------------------------


def _comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in _comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return seeds


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    helps = {
        "niah": "needles in a haystack (passkey, number, word, multi-key): train short, test long",
        "mqar": "multi-query associative recall: accuracy by number of pairs and length",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--models", type=_comma_list, metavar="A,B,..",
                       help="models to train (default: all; see --list)")
        p.add_argument("--seeds", type=_seed_list, metavar="S,..", help="training seeds (default: 0,1)")
        if name == "niah":
            p.add_argument("--kinds", type=_comma_list, metavar="K,..",
                           help="needle kinds among passkey, number, word, multikey; several are "
                                "trained as a mixture (default: passkey)")
        p.add_argument("--train-lengths", type=_int_list, metavar="N,..",
                       help="training sequence lengths, taken in turn (default: niah 32,128; mqar 128)")
        p.add_argument("--quick", action="store_true", help="a small run (a few minutes): fewer steps, lengths, samples")
        p.add_argument("--steps", type=positive_int, help="training steps of every model (default: niah 800, mqar 600)")
        p.add_argument("--budget-minutes", type=_positive_float, metavar="M",
                       help="wall-clock cap; training runs are cut to fit it (default: niah 50, mqar 12; quick: 4)")
        p.add_argument("--workers", type=positive_int, help="processes of one thread each (default: 2)")
        p.add_argument("--json", type=Path, metavar="PATH", help="write the records (and settings) as JSON")
        p.add_argument("--out", type=directory_path, metavar="DIR", help="write the figures (PNG) and tables (Markdown)")
        p.add_argument("--list", action="store_true", help="list the models and exit")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    # titans bench lm: its work is in tasks/lm_bench.py (run_cli)
    text = "language modelling on long held-out documents: bits per byte by position"
    p = sub.add_parser("lm", help=text, description=text)
    p.add_argument("--models", type=_comma_list, metavar="A,B,..", help="models to train (default: see --list)")
    p.add_argument("--seeds", type=_seed_list, metavar="S,..", help="training seeds (default: 0,1)")
    p.add_argument("--data", metavar="PATH", help="a text file or folder (default: Python's stdlib sources)")
    p.add_argument("--eval-length", type=positive_int, metavar="N", help="bytes scored per document (default: 8192)")
    p.add_argument("--carry", action="store_true", help="also score with the state carried across a folder's documents")
    p.add_argument("--quick", action="store_true", help="a small run (a few minutes)")
    p.add_argument("--steps", type=positive_int, help="training steps of every model (default: 340)")
    p.add_argument("--budget-minutes", type=_positive_float, metavar="M", help="wall-clock cap (default: 58; quick: 4)")
    p.add_argument("--workers", type=positive_int, help="processes of one thread each (default: 2)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the records (and settings) as JSON")
    p.add_argument("--out", type=directory_path, metavar="DIR", help="write the figure (PNG) and tables (Markdown)")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_bench(args: argparse.Namespace) -> int:
    import json
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
        from titans_memory.tasks.lm_bench import run_cli

        return run_cli(args)
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
    if args.train_lengths:
        settings = replace(settings, train_lengths=tuple(args.train_lengths))
    if args.steps:
        settings = replace(settings, train=replace(settings.train, steps=args.steps))
    if args.quick:
        settings = quick(settings)
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
        args.json.write_text(json.dumps(result, indent=1))
    tables = _bench_tables(settings, records)
    print(tables)
    print(f"\n{args.benchmark}: {len(records)} records, {wall / 60:.1f} min wall", file=sys.stderr)
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        (out / f"{args.benchmark}_tables.md").write_text(tables + "\n")
        for path in _bench_figures(settings, records, out):
            print(path, file=sys.stderr)
    return 0


def _bench_tables(settings, records: list[dict]) -> str:
    from titans_memory.tasks import report
    from titans_memory.tasks.bench import ABLATIONS, ARCHITECTURES, MIRAS

    window = settings.model.window
    ablations = [m for m in ABLATIONS + MIRAS if m in settings.models]
    parts = []
    if settings.task == "niah":
        for task in settings.kinds:
            parts.append(f"### {task}\n\n" + report.length_table(records, task, settings.models, window=window))
        if 16384 in settings.lengths and "passkey" in settings.kinds:
            parts.append("### Titans' S-NIAH at 16K beside ours\n\n" + report.paper_comparison(records))
    else:
        parts.append("### MQAR\n\n" + report.mqar_table(records, settings.models))
        parts.append("### MQAR, pairs averaged\n\n" + report.length_table(records, "mqar", settings.models))
    if "lmm" in settings.models and ablations:
        parts.append("### Ablations and MIRAS memories beside the LMM\n\n" + report.ablation_table(records, "lmm", ablations))
    del ARCHITECTURES
    return "\n\n".join(parts)


def _bench_figures(settings, records: list[dict], out: Path) -> list[Path]:
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
        figs = {
            "mqar_pairs.png": plot_mqar(records, settings.models),
            "mqar_accuracy.png": plot_accuracy_vs_length(records, ["mqar"], settings.models, window=settings.model.window),
        }
    for name, fig in figs.items():
        path = out / name
        fig.savefig(path, dpi=120)
        paths.append(path)
    return paths


register(
    Subcommand(
        "bench",
        "long-context benchmarks: train small models, test them far beyond their window",
        _configure_bench,
        _run_bench,
    )
)


# --- titans train / sample / eval -----------------------------------------------------------
# The work is done in titans_memory.training (loop.run_train, sample.run_sample, evaluate.run_eval);
# these blocks only declare the arguments.


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="a JSON file of TrainConfig fields")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override a TrainConfig field, e.g. --set arch=mag --set steps=500 (repeatable)",
    )
    parser.add_argument(
        "--out", type=directory_path, default=Path("runs/titans"), metavar="DIR",
        help="run folder: log.jsonl, train_config.json, checkpoints/ (default: runs/titans)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--quiet", action="store_true", help="no config print-out, no progress bar")


def _run_train(args: argparse.Namespace) -> int:
    from titans_memory.training.loop import run_train

    return run_train(args)


register(Subcommand("train", "train a Titans language model (bytes of Python's stdlib by default)",
                    _configure_train, _run_train))


def _configure_sample(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=directory_path, required=True, metavar="DIR",
                        help="a checkpoint folder, or a run folder (its best checkpoint)")
    parser.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: keep mass p")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads on CPU")


def _run_sample(args: argparse.Namespace) -> int:
    from titans_memory.training.sample import run_sample

    return run_sample(args)


register(Subcommand("sample", "continue a prompt with a trained model, streaming the tokens",
                    _configure_sample, _run_sample))


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=directory_path, required=True, metavar="DIR",
                        help="a checkpoint folder, or a run folder (its best checkpoint)")
    parser.add_argument("--contexts", type=_int_list, default=[128, 512, 2048, 8192], metavar="N,N,...",
                        help="context lengths (default: 128,512,2048,8192)")
    parser.add_argument("--tokens", type=positive_int, default=32768,
                        help="held-out tokens scored at every context length (default: 32768)")
    parser.add_argument("--data", default=None, help="data to score (default: the checkpoint's own held-out set)")
    parser.add_argument("--batch", type=positive_int, default=8, help="windows per forward call")
    parser.add_argument("--piece", type=positive_int, default=1024, help="tokens per forward call")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads on CPU")


def _run_eval(args: argparse.Namespace) -> int:
    from titans_memory.training.evaluate import run_eval

    return run_eval(args)


register(Subcommand("eval", "held-out bits per byte of a checkpoint at several context lengths",
                    _configure_eval, _run_eval))


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``titans`` parser, with one subparser per registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="titans",
        description="Neural long-term memory (Titans, MIRAS): demo figures and tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS.values():
        sub_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``titans`` with ``argv`` (default: the process arguments); return the exit status.

    Bad input (argparse's own errors, :class:`CLIError`, a library ``ValueError``/``TypeError``,
    an ``OSError`` on a path) ends with one line on stderr and status 2.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except (CLIError, ValueError, TypeError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__  # one line
        print(f"titans {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
