"""The ``titans`` command.

One module per subcommand (``figures``, ``presets``, ``explore``, ``bench``, and ``training`` for
``train``, ``sample`` and ``eval``); :mod:`titans_memory.cli._common` holds what they share. The
subcommands are registered in :data:`SUBCOMMANDS`. To add one, write a function that configures
its parser and one that runs it, and register them::

    def configure_train(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--steps", type=int, default=1000)

    def run_train(args: argparse.Namespace) -> int:
        ...
        return 0

    register(Subcommand("train", "train a model", configure_train, run_train))

Keep the heavy imports (torch, numpy, matplotlib) inside the run function: ``titans --help`` and
argument errors then answer without importing torch (a test checks it). Bad input ends with one
line on stderr and exit status 2, never a traceback: raise :class:`CLIError` (or let a library
``ValueError``/``TypeError`` through) and :func:`main` prints ``titans <command>: error: <message>``.

No module outside this package imports it: the library does not depend on its command line.
"""

from __future__ import annotations

import argparse
import os  # noqa: F401  (tests patch cli.os.access)
import sys
from collections.abc import Sequence

from titans_memory.cli import bench, explore, figures, presets, training
from titans_memory.cli._common import (
    CLIError,
    Subcommand,
    directory_path,
    output_directory,
    parse_override,
    positive_int,
)

__all__ = [
    "SUBCOMMANDS",
    "CLIError",
    "Subcommand",
    "build_parser",
    "directory_path",
    "main",
    "output_directory",
    "parse_override",
    "positive_int",
    "register",
]

#: Registered subcommands, by name, in the order ``titans --help`` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {}


def register(command: Subcommand) -> Subcommand:
    """Add ``command`` to :data:`SUBCOMMANDS` (an existing name is an error)."""
    if command.name in SUBCOMMANDS:
        raise ValueError(f"subcommand {command.name!r} is already registered")
    SUBCOMMANDS[command.name] = command
    return command


register(Subcommand("figures", figures.HELP, figures.configure, figures.run))
register(Subcommand("presets", presets.HELP, presets.configure, presets.run))
register(Subcommand("explore", explore.HELP, explore.configure, explore.run))
register(Subcommand("bench", bench.HELP, bench.configure, bench.run))
register(Subcommand("train", training.TRAIN_HELP, training.configure_train, training.run_train))
register(Subcommand("sample", training.SAMPLE_HELP, training.configure_sample, training.run_sample))
register(Subcommand("eval", training.EVAL_HELP, training.configure_eval, training.run_eval))


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
