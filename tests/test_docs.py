"""The documentation: the site builds with ``mkdocs build --strict``, the Python examples of its
pages run, the API reference lists every public name, and README.vi.md mirrors README.md.

Nothing here needs the network: mkdocs, Material and mkdocstrings come with the ``docs``
dependency group, which ``uv run`` installs by default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"

# ---------------------------------------------------------------------------------------------
# Markdown helpers


def fenced_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """Every fenced code block: ``(line number of the fence, language, code, line before)``.

    Fences may be indented (a block inside a list item); the code is dedented.
    """
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append((start + 1, lang, textwrap.dedent("\n".join(body)), before))
        i += 1
    return blocks


def headings(text: str) -> list[tuple[int, str]]:
    """``(level, title)`` of every Markdown heading outside code blocks."""
    out, fence = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (match := re.match(r"^(#{1,6}) (.+)$", line)):
            out.append((len(match.group(1)), match.group(2).strip()))
    return out


def python_examples(page: Path) -> list[tuple[int, str]]:
    """The runnable ``python`` blocks of a page: those not preceded by ``<!-- no-run -->``."""
    return [(line, code) for line, lang, code, before in fenced_blocks(page.read_text("utf-8"))
            if lang == "python" and before != NO_RUN]


PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
EXAMPLE_PAGES = [p for p in PAGES if python_examples(DOCS / p)]

# ---------------------------------------------------------------------------------------------
# The site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once by ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + proc.stdout + proc.stderr
    return out


def test_the_site_builds_strictly_with_every_page_and_figure(site):
    for page in PAGES:
        name = page.removesuffix(".md")
        html = site / ("index.html" if name == "index" else f"{name.removesuffix('/index')}/index.html")
        assert html.is_file(), f"{page} was not built"
    # every figure a page links is served from the repository's figures/
    linked = set()
    for page in PAGES:
        linked |= set(re.findall(r"\]\((?:\.\./)+(figures/[^)\s]+)\)", (DOCS / page).read_text("utf-8")))
    assert linked, "no page links a figure"
    for path in linked:
        assert (ROOT / path).is_file(), f"a page links {path}, which does not exist"
        assert (site / path).is_file(), f"{path} is not in the site"


def test_the_benchmark_tables_are_included_as_the_commands_wrote_them(site):
    """``--8<--`` includes are expanded (a row of each included file appears in the HTML)."""
    text = (DOCS / "evidence.md").read_text("utf-8")
    included = re.findall(r'^--8<-- "([^"]+)"$', text, flags=re.M)
    assert "figures/longcontext/niah_tables.md" in included
    html = (site / "evidence" / "index.html").read_text("utf-8")
    for spec in included:
        path, _, lines = spec.partition(":")  # "file:start:end" includes those lines (1-based)
        start = int(lines.split(":")[0]) - 1 if lines else 0
        first_row = next(ln for ln in (ROOT / path).read_text("utf-8").splitlines()[start:] if ln.startswith("| "))
        cell = first_row.split("|")[1].strip()
        assert f"<th>{cell}</th>" in html, f"{spec} was not included"


def test_the_included_vs_peer_tables_are_what_the_command_writes_from_the_records():
    """``benchmarks/results/vs_peer_tables.md`` (included by the Performance page) equals
    ``vs_peer.py --markdown`` of the committed runs: regenerate it when the records change."""
    import importlib.util

    bench = ROOT / "benchmarks"
    sys.path.insert(0, str(bench))  # vs_peer.py imports _timing from beside it
    try:
        spec = importlib.util.spec_from_file_location("_docs_vs_peer", bench / "vs_peer.py")
        vs_peer = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vs_peer)
    finally:
        sys.path.remove(str(bench))
    runs = sorted(str(p) for p in (bench / "results").glob("vs_peer_idle_run*.json"))
    assert len(runs) == 4
    committed = (bench / "results" / "vs_peer_tables.md").read_text("utf-8")
    assert committed == vs_peer.markdown(runs) + "\n", (
        "regenerate: uv run python benchmarks/vs_peer.py --markdown "
        "benchmarks/results/vs_peer_idle_run*.json > benchmarks/results/vs_peer_tables.md"
    )


def _inventory(site: Path) -> set[str]:
    """The identifiers of mkdocstrings' Sphinx inventory (``objects.inv``)."""
    header, _, rest = (site / "objects.inv").read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2")
    return {line.split(" ", 1)[0] for line in zlib.decompress(rest).decode().splitlines()}


@pytest.mark.parametrize(
    "module", ["titans_memory", "titans_memory.core", "titans_memory.models",
               "titans_memory.training", "titans_memory.tasks", "titans_memory.viz"],
)
def test_the_api_reference_lists_every_public_name(site, module):
    import importlib

    mod = importlib.import_module(module)
    documented = _inventory(site)
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        # a name documented at the package, or (a function that shares its module's name) where
        # it is defined
        canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if f"{module}.{name}" not in documented and canonical not in documented:
            missing.append(name)
    assert not missing, f"not in the API reference: {module}.{{{', '.join(missing)}}}"


# ---------------------------------------------------------------------------------------------
# The pages' Python examples

_RUNNER = r"""
import json, sys, traceback
import matplotlib
matplotlib.use("Agg")
import torch
torch.set_num_threads(1)
results = {}
for page in json.load(sys.stdin):
    namespace = {"__name__": "__docs__"}
    torch.manual_seed(0)
    try:
        for line, code in page["blocks"]:
            exec(compile(code, f"docs/{page['page']}:{line}", "exec"), namespace)
        results[page["page"]] = None
    except BaseException:
        results[page["page"]] = traceback.format_exc()
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def example_results(tmp_path_factory) -> dict[str, str | None]:
    """Every page's examples run once, in one fresh process (the examples register parts in the
    core's registries; a process of their own keeps those out of the other tests), each page in
    a namespace of its own, in a temporary working directory."""
    pages = [{"page": p, "blocks": python_examples(DOCS / p)} for p in EXAMPLE_PAGES]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER], input=json.dumps(pages), capture_output=True, text=True,
        cwd=tmp_path_factory.mktemp("examples"), env=env, timeout=600,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    assert line is not None, "the example runner failed:\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line.removeprefix("RESULTS "))


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_the_python_examples_of_the_page_run(example_results, page):
    assert example_results[page] is None, f"an example of docs/{page} failed:\n{example_results[page]}"


def test_examples_are_found_and_no_run_is_rare():
    """The extraction itself: the pages that teach the API have examples, and only a few blocks
    are marked not runnable."""
    assert {"getting-started.md", "core.md", "miras.md", "models.md", "contributing.md"} <= set(EXAMPLE_PAGES)
    skipped = [p for p in PAGES for _, lang, _, before in fenced_blocks((DOCS / p).read_text("utf-8"))
               if lang == "python" and before == NO_RUN]
    assert len(skipped) <= 3, skipped


def test_fenced_block_parser():
    text = "x\n<!-- no-run -->\n```python\na = 1\n```\n- item\n\n  ```python\n  b = 2\n  ```\n"
    assert fenced_blocks(text) == [(3, "python", "a = 1", NO_RUN), (8, "python", "b = 2", "- item")]


# ---------------------------------------------------------------------------------------------
# README.md, the front door, and its Vietnamese mirror


def test_readme_is_short_and_links_existing_files():
    for name in ("README.md", "README.vi.md"):
        text = (ROOT / name).read_text("utf-8")
        if name == "README.md":
            assert len(text.splitlines()) <= 250, "README.md is meant to stay short: 250 lines at most"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+://", target):
                assert (ROOT / target).exists(), f"{name} links {target}, which does not exist"


def test_readme_vi_mirrors_readme_section_for_section():
    """Same heading levels in the same order, each Vietnamese heading preceded by a comment naming
    the English one; the same code blocks (the commands), in the same order."""
    en = (ROOT / "README.md").read_text("utf-8")
    vi = (ROOT / "README.vi.md").read_text("utf-8")
    en_h, vi_h = headings(en), headings(vi)
    assert [lvl for lvl, _ in vi_h] == [lvl for lvl, _ in en_h], (en_h, vi_h)
    markers = re.findall(r"^<!-- README\.md: (#+ .+?) -->$", vi, flags=re.M)
    assert markers == [f"{'#' * lvl} {title}" for lvl, title in en_h[1:]], "README.vi.md's markers"
    blocks = lambda text: [(lang, code) for _, lang, code, _ in fenced_blocks(text)]  # noqa: E731
    assert blocks(vi) == blocks(en), "README.vi.md's code blocks differ from README.md's"
