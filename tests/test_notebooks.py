"""The notebooks: every one runs headless from its jupytext source, and its .ipynb is in sync.

The sources are ``notebooks/*.py`` (jupytext percent format). Each is read through jupytext and
executed in a fresh "python3" kernel. The kernel spec is pinned to the interpreter that runs the
tests (the project's venv under ``uv run pytest``), so a user-level "python3" kernel that points
at another Python cannot shadow it. ``MPLBACKEND=Agg`` keeps matplotlib headless (the notebooks
switch to the inline backend themselves, so every figure is really drawn).

Most of a notebook's time is kernel start-up and ``import torch``, so the selected notebooks are
executed concurrently, once per module, and each parametrized test checks its own notebook. Each
kernel runs torch on one thread (``OMP_NUM_THREADS=1``): with five kernels sharing the cores, more
threads per kernel only contend (on 2 busy cores: 124 s for the five notebooks, against 66 s).

The paired ``.ipynb`` files are generated from the sources; the sync tests fail when one was not
regenerated after its source changed (``REGENERATE`` says how).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOK_DIR.glob("*.py"))
PAIRED = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
FORMATS = "ipynb,py:percent"
REGENERATE = "uv run jupytext --to ipynb --update notebooks/*.py"
CELL_TIMEOUT_S = 120
KERNEL_ENV = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory):
    """A "python3" kernel spec pointing at this interpreter, with the kernels' environment."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (project venv)",
        "language": "python",
        "env": KERNEL_ENV,  # added to the environment each kernel inherits
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))

    saved = os.environ.get("JUPYTER_PATH")
    # JUPYTER_PATH comes first in the kernel-spec search path.
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(jupyter_dir)] + ([saved] if saved else []))
    yield
    if saved is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = saved


async def _execute(source: Path) -> None:
    nb = jupytext.read(source)  # the .py source, not the generated .ipynb
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        startup_timeout=STARTUP_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    await client.async_execute()


async def _execute_all(sources: list[Path]) -> list[BaseException | None]:
    return await asyncio.gather(*(_execute(p) for p in sources), return_exceptions=True)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, kernel_env) -> dict[Path, BaseException | None]:
    """Run the notebooks selected in this session concurrently; map each to its error or None."""
    selected = [
        item.callspec.params["source"]
        for item in request.session.items
        if item.module is request.module
        and getattr(item, "originalname", None) == "test_notebook_runs"
    ]
    sources = sorted(set(selected)) or SOURCES
    return dict(zip(sources, asyncio.run(_execute_all(sources)), strict=True))


def test_every_notebook_has_a_source_and_a_pair():
    assert SOURCES, f"no notebook sources found in {NOTEBOOK_DIR}"
    assert [p.stem for p in SOURCES] == [p.stem for p in PAIRED], (
        f"each notebooks/*.py needs its .ipynb and vice versa; regenerate with: {REGENERATE}"
    )


@pytest.mark.slow  # runs every notebook in a kernel: ~4 min on the 2-core machine under load
@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_notebook_runs(source: Path, outcomes: dict[Path, BaseException | None]) -> None:
    error = outcomes[source]
    if error is not None:
        # CellExecutionError's message holds the failing cell's source and traceback.
        pytest.fail(f"{source.name} failed:\n{error}", pytrace=False)


@pytest.mark.slow  # starts a kernel: ~4 s
def test_kernels_run_this_interpreter_with_the_kernel_env(kernel_env) -> None:
    # (torch and matplotlib read these variables when imported; importing them here would only
    # add seconds)
    nb = nbformat.v4.new_notebook()
    code = "import json, os, sys\n"
    code += f"print(json.dumps([sys.executable] + [os.environ.get(k) for k in {list(KERNEL_ENV)}]))"
    nb.cells.append(nbformat.v4.new_code_cell(code))
    NotebookClient(nb, kernel_name="python3", startup_timeout=STARTUP_TIMEOUT_S).execute()
    printed = json.loads("".join(o.get("text", "") for o in nb.cells[0].outputs))
    assert printed == [sys.executable, *KERNEL_ENV.values()]


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_ipynb_is_in_sync_with_its_source(source: Path) -> None:
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing; generate it with: {REGENERATE}"
    text = jupytext.read(source)
    nb = nbformat.read(paired, as_version=4)
    nbformat.validate(nb)
    assert text.metadata.get("jupytext", {}).get("formats") == FORMATS, (
        f"{source.name} must be paired ('jupytext: formats: {FORMATS}' in its header)"
    )
    assert nb.metadata.get("jupytext", {}).get("formats") == FORMATS, paired.name
    assert _cells(nb) == _cells(text), (
        f"{paired.name} differs from its source {source.name}; regenerate it with: {REGENERATE}"
    )
    with_outputs = [
        i for i, c in enumerate(nb.cells) if c.get("outputs") or c.get("execution_count")
    ]
    assert not with_outputs, (
        f"{paired.name} is committed without outputs, but cells {with_outputs} have some; clear "
        "them: uv run --extra notebooks jupyter nbconvert --clear-output --inplace "
        f"notebooks/{paired.name}"
    )
