"""The explorer's server answers its own pages and nothing else: no import of a module named in a
URL, no path traversal, no server error."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

pytest.importorskip("panel", reason="the explore extra: pip install 'titans-miras[explore]'")

from titans_memory.explore.server import allowed_component_path  # noqa: E402

# each module is importable, and importing it has an effect we can see (or could be harmful)
FOREIGN = [
    "/components/antigravity/X/__css__/a.css",  # opens a web browser when imported
    "/components/this/X/__css__/a.css",  # prints the Zen of Python when imported
    "/components/os/path/__css__/x",
    "/components/subprocess/Popen/__javascript__/x.js",
    "/components/titans_memory.training.loop/X/__css__/a",
]
TRAVERSAL = [
    "/components/../..",
    "/components/../a/b/c",
    "/components/..%2F..%2F..%2Fetc/X/__css__/passwd",
    "/components/panel/../../etc/passwd",
    "/components/panel/Row/__css__/../../../../../etc/passwd",
    "/components/.hidden/X/__css__/a",
    "/static/extensions/panel/../../../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
]


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "titans_memory.cli", "explore", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:(\d+))/", line)
        assert match, f"no URL printed: {line!r}"
        yield match.group(1), int(match.group(2)), proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_page_and_its_static_files_are_served(server):
    base, _, _ = server
    with urllib.request.urlopen(base + "/", timeout=120) as response:
        page = response.read().decode()
    assert response.status == 200 and "<title>titans explore</title>" in page
    for src in re.findall(r'src="(static/[^"]+)"', page):
        assert status(f"{base}/{src}") == 200, src


@pytest.mark.parametrize("path", FOREIGN + TRAVERSAL)
def test_other_modules_and_traversal_are_refused(server, path):
    base, _, proc = server
    code = status(base + path)
    assert code in (400, 403, 404), (path, code)
    assert proc.poll() is None


@pytest.mark.parametrize("path, ok", [
    ("panel/Row/__css__/a.css", True),
    ("panel.layout.base/Row/_stylesheets/x/y.css", True),
    ("os/path/__css__/x", False),
    ("../a/b/c", False),
    ("panel/../x/y", False),
    ("panel/Row/__css__/../../x", False),
    ("panel/Row", False),
])
def test_allowed_component_path(path, ok):
    assert allowed_component_path(path) is ok


def test_no_foreign_module_was_imported(server):
    """Last (it stops the server). ``this`` prints the Zen of Python on import: nothing of it reached the server's output."""
    base, _, proc = server
    assert status(base + "/components/this/X/__css__/a.css") == 404
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    assert "Beautiful is better than ugly" not in out
    assert "Traceback" not in out and " 500 " not in out
