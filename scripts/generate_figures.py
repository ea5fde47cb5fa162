"""Write the demo's five figures as PNG files (the original demo's entry point, kept).

    uv run python scripts/generate_figures.py [--out DIR] [--dpi N] [--quiet]

Same as ``titans figures``, except that the default directory is the repository's ``figures/``
(next to this ``scripts/`` folder), wherever the script is run from, as in the original.
"""

from __future__ import annotations

import sys
from pathlib import Path

from titans_memory.cli import main

REPO_FIGURES = Path(__file__).resolve().parents[1] / "figures"

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args = ["--out", str(REPO_FIGURES), *args]
    sys.exit(main(["figures", *args]))
