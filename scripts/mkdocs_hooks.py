"""MkDocs hooks of the documentation site (``mkdocs.yml`` names this file).

The figures live in the repository's ``figures/`` (the commands ``titans figures`` and
``titans bench`` write them there), not under ``docs/``. The pages link them as
``../figures/NAME.png``, a path that resolves from ``docs/`` on disk (and on GitHub); this hook
serves the same files at ``figures/`` inside the site and rewrites those links to match, so
``mkdocs build --strict`` checks every one of them and nothing is copied into ``docs/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
SUFFIXES = {".png", ".svg", ".jpg", ".gif"}

# "../figures/" one level deeper than the page: the link as written on disk, from docs/
_LINK = re.compile(r"(\]\(|src=\")((?:\.\./)+)figures/")


def on_files(files, config):
    """Add every image under figures/ to the site as figures/<its path>."""
    for path in sorted(FIGURES.rglob("*")):
        if path.suffix.lower() in SUFFIXES:
            uri = "figures/" + path.relative_to(FIGURES).as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    """``../figures/x`` (relative to the page's file on disk) becomes the site's ``figures/x``."""
    return _LINK.sub(lambda m: m.group(1) + m.group(2)[3:] + "figures/", markdown)
