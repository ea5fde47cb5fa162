"""No import cycles between the package's modules: the imports are read from the sources (AST),
so the test sees every module, imported or not.

An edge ``a -> b`` is an import in ``a`` of module ``b`` (``from pkg import sub`` is an edge to
the submodule ``pkg.sub``; ``from pkg import name`` one to ``pkg``, whose ``__init__`` defines the
name). Imports under ``if TYPE_CHECKING:`` never run and are not edges. A cycle means one of its
modules runs while another is half initialised; the second test also counts imports made inside
functions (deferred imports hide a cycle but keep the coupling).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "titans_memory"
PACKAGE = "titans_memory"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _edges(name: str, path: Path, modules: dict[str, Path], deferred: bool) -> set[str]:
    """The package modules ``name`` imports (at module level; with ``deferred``, in functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:  # the else branch runs
                    visit(sub, in_function)
                continue
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import | ast.ImportFrom) and (deferred or not in_function):
                if isinstance(child, ast.Import):
                    targets = [owner(alias.name) for alias in child.names]
                else:
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join([*up, base] if base else up)
                    targets = [
                        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else owner(base)
                        for alias in child.names
                    ]
                found.update(t for t in targets if t is not None and t != name)
            visit(child, nested)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _graph(deferred: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules, deferred) for name, path in modules.items()}


def test_the_walk_sees_the_package():
    graph = _graph(deferred=False)
    assert len(graph) > 50
    assert "titans_memory.core.ops.chunked" in graph["titans_memory.core.ops"]  # from pkg.sub import name
    assert "titans_memory.core.algorithms" in graph["titans_memory.core.rule"]
    assert "titans_memory.core.config" not in graph["titans_memory.core.rule"]  # only under TYPE_CHECKING
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_at_module_level():
    assert _cycles(_graph(deferred=False)) == []


def test_no_import_cycles_with_deferred_imports():
    """Also counting imports inside functions. Imports of the CLI are left out here: that no module
    imports the CLI is the CLI's own test."""
    graph = _graph(deferred=True)
    graph = {name: {t for t in targets if not t.startswith(f"{PACKAGE}.cli")} for name, targets in graph.items()}
    assert _cycles(graph) == []
