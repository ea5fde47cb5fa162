"""``titans explore``: the missing extra, bad ports, and a real server answering on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request

import pytest

from titans_memory import cli

_NEEDS_EXTRA = "needs the 'explore' extra: uv sync --extra explore (pip install 'titans-miras[explore]')"


def test_missing_extra_is_one_line_and_status_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "panel", None)  # `import panel` now raises ImportError
    assert cli.main(["explore", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("titans explore: error: needs the 'explore' extra")
    assert "pip install 'titans-miras[explore]'" in err
    assert "uv run --extra explore titans explore" in err


def test_port_out_of_range(capsys):
    assert cli.main(["explore", "--no-browser", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_port_in_use_is_one_line_and_status_2(capsys):
    pytest.importorskip("panel", reason=_NEEDS_EXTRA)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["explore", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.slow  # a server process: ~37 s on the 2-core machine under load
def test_serves_the_page_on_a_free_port():
    pytest.importorskip("panel", reason=_NEEDS_EXTRA)
    proc = subprocess.Popen(
        [sys.executable, "-m", "titans_memory.cli", "explore", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:(\d+)/)", line)
        assert match, f"no URL printed: {line!r}"
        with urllib.request.urlopen(match.group(1), timeout=60) as response:
            assert response.status == 200
            page = response.read().decode()
        assert "<title>titans explore</title>" in page
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(timeout=30)
