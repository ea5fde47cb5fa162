"""Execute every notebook in notebooks/ headless and fail on any cell error.

Each notebook runs in a fresh "python3" kernel. The kernel spec is pinned to the interpreter that
runs the tests (the project's venv under ``uv run pytest``), so a user-level "python3" kernel that
points at another Python cannot shadow it. ``MPLBACKEND=Agg`` keeps matplotlib headless (the
notebooks switch to the inline backend themselves, so every figure is really drawn).

Most of a notebook's time is kernel start-up and ``import torch``, so the selected notebooks are
executed concurrently, once per module, and each parametrized test checks its own notebook.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 120
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory):
    """Environment for the kernels: a "python3" spec pointing at this interpreter, Agg backend."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (project venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))

    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND")}
    # JUPYTER_PATH comes first in the kernel-spec search path.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(jupyter_dir)] + ([saved["JUPYTER_PATH"]] if saved["JUPYTER_PATH"] else [])
    )
    os.environ["MPLBACKEND"] = "Agg"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


async def _execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        startup_timeout=STARTUP_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    await client.async_execute()


async def _execute_all(paths: list[Path]) -> list[BaseException | None]:
    return await asyncio.gather(*(_execute(p) for p in paths), return_exceptions=True)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, kernel_env) -> dict[Path, BaseException | None]:
    """Run the notebooks selected in this session concurrently; map each to its error or None."""
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    ]
    paths = sorted(set(selected)) or NOTEBOOKS
    return dict(zip(paths, asyncio.run(_execute_all(paths)), strict=True))


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, outcomes: dict[Path, BaseException | None]) -> None:
    error = outcomes[path]
    if error is not None:
        # CellExecutionError's message holds the failing cell's source and traceback.
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
