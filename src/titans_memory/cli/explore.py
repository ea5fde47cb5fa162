"""``titans explore``: serve the interactive explorer (the ``explore`` extra) on 127.0.0.1."""

from __future__ import annotations

import argparse

from titans_memory.cli._common import CLIError

HELP = "open the interactive explorer in the browser (extra 'explore')"

_INSTALL = (
    "needs the 'explore' extra: pip install 'titans-miras[explore]' "
    "(or: uv run --extra explore titans explore)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open the page in a web browser"
    )
    parser.add_argument(
        "--lang", choices=("en", "vi"), default="en", help="language the page opens in"
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    try:
        import panel  # noqa: F401
    except ImportError:
        raise CLIError(_INSTALL) from None
    from titans_memory.explore.app import serve

    def ready(url: str) -> None:
        print(f"titans explore: serving on {url}  (Ctrl+C to stop)", flush=True)

    try:
        serve(args.port, show=not args.no_browser, lang=args.lang, on_ready=ready)
    except OSError as err:
        raise CLIError(f"cannot listen on 127.0.0.1:{args.port}: {err}") from None
    return 0
