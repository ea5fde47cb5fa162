"""A release a user can install: ``uv build`` makes a wheel and an sdist that hold the package and
not the repository's tests, figures or benchmark records; the wheel, installed into a fresh virtual
environment outside the repository, runs ``titans`` and imports every public module.

Slow (a build and an install); it uses uv's cache, so torch is not downloaded again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "titans_memory"
LEFT_OUT = ("tests/", "figures/", "benchmarks/", "notebooks/", "docs/", "scripts/", ".ci/")

pytestmark = pytest.mark.slow


def _uv() -> list[str]:
    """The uv command: the binary on PATH, else ``python -m uv`` of this or the system Python
    (how .ci/run reaches a uv that pip installed off PATH)."""
    for cmd in (["uv"], [sys.executable, "-m", "uv"], ["python3", "-m", "uv"]):
        try:
            if subprocess.run([*cmd, "--version"], capture_output=True).returncode == 0:
                return cmd
        except OSError:
            continue
    pytest.skip("uv is not installed (python3 -m pip install uv)")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([*_uv(), "build", "--out-dir", str(out)], cwd=ROOT)
    return out


def _package_files() -> set[str]:
    return {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_and_the_sdist_hold_the_package_and_nothing_of_the_repository(dist):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    (wheel,) = dist.glob(f"titans_miras-{version}-*.whl")
    (sdist,) = dist.glob(f"titans_miras-{version}.tar.gz")
    package = _package_files()
    assert "titans_memory/__init__.py" in package and "titans_memory/explore/app.py" in package

    names = set(zipfile.ZipFile(wheel).namelist())
    assert package <= names, f"missing from the wheel: {sorted(package - names)[:10]}"
    dist_info = f"titans_miras-{version}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    assert {n.split("/")[0] for n in names} == {"titans_memory", dist_info}

    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name and m.isfile()}
    assert {f"src/{p}" for p in package} <= members
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= members
    strays = sorted(m for m in members if m.startswith(LEFT_OUT) or m.endswith((".png", ".json", ".ipynb")))
    assert not strays, f"the sdist holds files of the repository: {strays[:10]}"


def test_the_wheel_installs_and_runs_outside_the_repository(dist, tmp_path):
    """A fresh environment, the wheel with its ``explore`` and ``hf`` extras: ``titans presets``,
    ``titans figures`` and an import of every module of the package, from a folder outside it."""
    (wheel,) = dist.glob("titans_miras-*.whl")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    _run([*_uv(), "venv", "--python", sys.executable, str(venv)], cwd=tmp_path, env=env)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run([*_uv(), "pip", "install", "--python", str(python), f"{wheel}[explore,hf]"], cwd=tmp_path, env=env)

    env = {**env, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    titans = str(bindir / "titans")
    presets = _run([titans, "presets"], cwd=tmp_path, env=env).stdout
    assert "moneta" in presets and "gated_deltanet" in presets

    out = tmp_path / "figs"
    _run([titans, "figures", "--out", str(out)], cwd=tmp_path, env=env)
    written = sorted(p.name for p in out.glob("*.png"))
    assert {"full_pipeline.png", "surprise_over_time.png", "miras_presets.png"} <= set(written), written

    check = (
        "import importlib, pkgutil, titans_memory\n"
        f"assert titans_memory.__file__.startswith({str(venv)!r}), titans_memory.__file__\n"
        # every module but the `python -m` entry points (importing one runs the command)
        "names = [m.name for m in pkgutil.walk_packages(titans_memory.__path__, 'titans_memory.')\n"
        "         if not m.name.endswith('.__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "import titans_memory.explore.app\n"
        "print(len(names), titans_memory.__version__)\n"
    )
    count, version = _run([str(python), "-c", check], cwd=tmp_path, env=env).stdout.split()
    assert int(count) >= 40
    assert version == tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
