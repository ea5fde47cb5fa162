"""``titans figures``: the demo's five figures and the MIRAS presets' comparison, as PNG files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from titans_memory.cli._common import directory_path, output_directory, positive_int

HELP = "write the figures (PNG): the demo's five and the MIRAS presets' comparison"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=directory_path,
        default=Path("figures"),
        metavar="DIR",
        help="directory to write the PNG files to (default: ./figures)",
    )
    parser.add_argument("--dpi", type=positive_int, default=150, help="resolution in dots per inch (default: 150)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no file list")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    from titans_memory.validate import check_dpi, check_output_path
    from titans_memory.viz.demo import save_demo_figures
    from titans_memory.viz.miras import write_miras_figure

    check_dpi(args.dpi)
    out = output_directory(check_output_path(args.out, "--out"))
    paths = save_demo_figures(out, progress=not args.quiet, dpi=args.dpi)
    if not args.quiet:
        print("MIRAS presets: recall vs age and an outlier burst ...", file=sys.stderr)
    paths.append(write_miras_figure(out, dpi=args.dpi))
    if not args.quiet:
        for path in paths:
            print(path)
    return 0
