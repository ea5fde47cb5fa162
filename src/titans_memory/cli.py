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
stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


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
        type=Path,
        default=Path("figures"),
        metavar="DIR",
        help="directory to write the PNG files to (default: ./figures)",
    )
    parser.add_argument("--dpi", type=int, default=150, help="resolution (default: 150)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no file list")


def _run_figures(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from titans_memory.viz.demo import save_demo_figures
    from titans_memory.viz.miras import write_miras_figure

    paths = save_demo_figures(args.out, progress=not args.quiet, dpi=args.dpi)
    if not args.quiet:
        print("MIRAS presets: recall vs age and an outlier burst ...", file=sys.stderr)
    paths.append(write_miras_figure(args.out, dpi=args.dpi))
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


def _parse_override(text: str, types: dict[str, type]) -> tuple[str, object]:
    import json

    if "=" not in text:
        raise SystemExit(f"titans presets: --set expects FIELD=VALUE, got {text!r}")
    field, raw = text.split("=", 1)
    if field not in types:
        raise SystemExit(f"titans presets: unknown field {field!r}; fields: {', '.join(types)}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as gelu
    return field, value


def _run_presets(args: argparse.Namespace) -> int:
    import json
    from dataclasses import fields

    from titans_memory.core.config import MemoryConfig
    from titans_memory.core.presets import describe_presets, preset

    if args.name is None:
        if args.set:
            raise SystemExit("titans presets: --set needs a preset name")
        width = max(map(len, describe_presets()))
        for name, text in describe_presets().items():
            print(f"{name:<{width}}  {text}")
        return 0
    types = {f.name: f.type for f in fields(MemoryConfig)}
    overrides = dict(_parse_override(text, types) for text in args.set)
    try:
        config = preset(args.name, **overrides)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"titans presets: {err}") from err
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
    "titans explore needs the 'explore' extra: pip install 'titans-miras[explore]' "
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
        print(f"titans explore: --port must be in 0..65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        import panel  # noqa: F401
    except ImportError:
        print(_EXPLORE_INSTALL, file=sys.stderr)
        return 2
    from titans_memory.explore.app import serve

    def ready(url: str) -> None:
        print(f"titans explore: serving on {url}  (Ctrl+C to stop)", flush=True)

    try:
        serve(args.port, show=not args.no_browser, lang=args.lang, on_ready=ready)
    except OSError as err:
        print(f"titans explore: cannot listen on 127.0.0.1:{args.port}: {err}", file=sys.stderr)
        return 2
    return 0


register(
    Subcommand(
        "explore",
        "open the interactive explorer in the browser (extra 'explore')",
        _configure_explore,
        _run_explore,
    )
)


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
    """Run ``titans`` with ``argv`` (default: the process arguments); return the exit status."""
    args = build_parser().parse_args(argv)
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
