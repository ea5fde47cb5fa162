"""The command line sits on top of the library: nothing imports it, and it starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import titans_memory

PACKAGE = Path(titans_memory.__file__).parent
CLI = "titans_memory.cli"


def _imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module named by an import statement of ``path`` (relative imports resolved).

    ``from a import b`` names both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


LIBRARY_MODULES = sorted(p for p in PACKAGE.rglob("*.py") if (PACKAGE / "cli") not in p.parents)


def test_the_walk_finds_the_library_and_skips_the_cli():
    names = {p.relative_to(PACKAGE).as_posix() for p in LIBRARY_MODULES}
    assert {"__init__.py", "training/loop.py", "tasks/bench.py", "models/lm.py"} <= names
    assert not any(n.startswith("cli/") for n in names)


def test_the_import_reader_sees_every_form_of_import():
    loop = PACKAGE / "training" / "loop.py"  # fixes the package that relative imports start from
    for source, expected in [
        ("import titans_memory.cli", {CLI}),
        ("from titans_memory import cli", {"titans_memory", CLI}),
        ("from ..cli import main", {CLI, CLI + ".main"}),
        ("from .sample import stream_tokens", {"titans_memory.training.sample", "titans_memory.training.sample.stream_tokens"}),
    ]:
        assert _imported_modules(loop, source) == expected, source


@pytest.mark.parametrize("path", LIBRARY_MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_library_module_imports_the_cli(path):
    bad = sorted(n for n in _imported_modules(path) if n == CLI or n.startswith(CLI + "."))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {', '.join(bad)}"


def test_the_parser_is_built_without_importing_torch():
    code = (
        "import sys\n"
        "from titans_memory.cli import build_parser, main\n"
        "parser = build_parser()\n"
        "parser.parse_args(['bench', 'niah', '--quick'])\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_an_argument_error_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from titans_memory.cli import main\n"
        "try:\n"
        "    main(['train', '--set'])\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]
    assert out.stderr.strip().splitlines()[-1] == "titans train: error: argument --set: expected one argument"


@pytest.mark.parametrize("name", titans_memory.__all__)
def test_every_public_name_is_importable_from_the_package(name):
    namespace: dict = {}
    exec(f"from titans_memory import {name}", namespace)
    assert namespace[name] is getattr(titans_memory, name)
    assert name in dir(titans_memory)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        titans_memory.nothing_here  # noqa: B018
