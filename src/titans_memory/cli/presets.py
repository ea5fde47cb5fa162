"""``titans presets``: list the MIRAS presets, or print one as a JSON ``MemoryConfig``."""

from __future__ import annotations

import argparse

from titans_memory.cli._common import CLIError, parse_override

HELP = "list the MIRAS presets, or print one as a MemoryConfig (JSON)"


def configure(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
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
