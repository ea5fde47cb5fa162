"""End to end, in a real headless Chromium: ``titans explore`` started as a user starts it.

The browser is the system's Chromium (Debian: ``apt-get install chromium``), driven by
Playwright; Playwright's own browser download is not used. Without a browser the tests skip and
say how to install one. Every plotted number is read from the page itself (the named Bokeh data
sources of :data:`~titans_memory.explore.app.PLAYGROUND_SOURCES`) and compared with what the
library computes.

The screenshots of README are taken here. To write them into ``figures/``::

    TITANS_EXPLORE_SCREENSHOTS=figures uv run pytest tests/explore/test_browser.py

(without the variable they go to a temporary folder, and are checked all the same).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "panel",
    reason="the explorer needs the 'explore' extra: uv sync --extra explore "
    "(or pip install 'titans-miras[explore]')",
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright: uv sync (the dev group)"
)

from titans_memory.explore import core_text as ct  # noqa: E402
from titans_memory.explore import playground as pg  # noqa: E402
from titans_memory.explore.app import PLAYGROUND_SOURCES, TEXT_SOURCES  # noqa: E402

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_NO_BROWSER = (
    "no Chromium found for the browser test: install Debian's with `sudo apt-get install "
    "chromium` (.ci/run does it when run as root), or point TITANS_CHROMIUM at a Chrome or "
    "Chromium executable"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT_MS = 60_000  # a loaded 2-core machine can take a while for the first page
pytestmark = pytest.mark.slow  # a server and a browser: ~1-2 minutes on 2 cores


def _chromium() -> str | None:
    path = os.environ.get("TITANS_CHROMIUM")
    if path:
        return path if Path(path).exists() else None
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _source(key: str, column: str) -> str:
    """JavaScript giving one column of a playground data source, as a plain array."""
    name = PLAYGROUND_SOURCES[key]
    return f"Array.from(Bokeh.documents[0].get_model_by_name('{name}').data['{column}'])"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``titans explore --no-browser`` in a subprocess; yields the printed URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "titans_memory.cli", "explore", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"titans explore printed no URL: {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    if executable is None:
        pytest.skip(_NO_BROWSER)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):  # the browser first: without one, skip before starting a server
    """A fresh page on the explorer, loaded, with every request off this machine refused."""
    context = browser.new_context(viewport={"width": 1320, "height": 1480})
    page = context.new_page()
    outside: list[str] = []

    def only_local(route):
        url = route.request.url
        if url.startswith(server) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server, timeout=TIMEOUT_MS)  # the first page load builds the app: slow on a busy machine
    page.wait_for_function(
        f"() => window.Bokeh && Bokeh.documents.length > 0 "
        f"&& Bokeh.documents[0].get_model_by_name('{PLAYGROUND_SOURCES['norm']}') "
        f"&& {_source('norm', 'norm')}.length > 0",
        timeout=TIMEOUT_MS,
    )
    yield page
    context.close()
    assert outside == [], f"the page asked for something off this machine: {outside}"


def _wait_for(page, js_array: str, want: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """Wait until the array ``js_array`` in the page equals ``want``; return what it holds."""
    check = (
        "([want, rtol]) => { const got = " + js_array + "; return got.length === want.length && "
        "got.every((g, i) => Math.abs(g - want[i]) <= rtol * Math.abs(want[i]) + 1e-300); }"
    )
    page.wait_for_function(
        check,
        arg=[want.tolist(), rtol],
        timeout=TIMEOUT_MS,
    )
    return np.array(page.evaluate(f"() => {js_array}"))


def _slider_handle(page, label: str):
    """The handle of the slider whose label starts with ``label``."""
    handles = page.locator(".noUi-handle")
    group = page.locator(".bk-input-group", has=handles, has_text=label).first
    return group, group.locator(".noUi-handle").first


def test_the_page_plots_the_library_numbers(page):
    series, settings = pg.scenario_input("full_pipeline")
    want = pg.run_playground(series, settings)
    got = _wait_for(page, _source("gate", "gate"), want.write_gate)
    np.testing.assert_allclose(got, want.write_gate, rtol=1e-12)
    _wait_for(page, _source("raw", "raw"), want.raw_surprise)
    _wait_for(page, _source("input", "value"), want.inputs)
    assert page.get_by_text("60 steps, computed in").count() == 1


def test_a_slider_change_replots_as_the_library_computes(page):
    series, settings = pg.scenario_input("full_pipeline")
    before = pg.run_playground(series, settings).weight_norm
    _wait_for(page, _source("norm", "norm"), before)

    group, handle = _slider_handle(page, "forget_rate")
    handle.focus()
    for _ in range(5):  # the slider's step is 0.001
        handle.press("ArrowRight")
    assert re.search(r"forget_rate.*: 0\.015", group.inner_text())

    want = pg.run_playground(series, settings.replace(forget_rate=0.015)).weight_norm
    got = _wait_for(page, _source("norm", "norm"), want)
    assert not np.allclose(got, before)
    # forgetting shrinks the memory: a faster one leaves a smaller norm
    assert got[-1] < before[-1]


def test_a_click_on_the_input_panel_places_an_anomaly(page):
    anomalies = page.locator("input[type=text]").first
    assert anomalies.input_value() == "12: 50, 30: 50, 48: 50"
    canvas = page.locator(".bk-Canvas, canvas").first
    box = canvas.bounding_box()
    assert box is not None
    # a click in the plot frame, about a third of the way along the x axis
    page.mouse.click(box["x"] + box["width"] * 0.36, box["y"] + box["height"] * 0.5)
    sync_api.expect(anomalies).not_to_have_value("12: 50, 30: 50, 48: 50", timeout=TIMEOUT_MS)
    series = _read_series(page)
    assert len(series.anomalies) == 4
    (new_t,) = set(series.anomalies) - {12, 30, 48}
    assert series.anomalies[new_t] == 50.0  # the height field's value
    want = pg.run_playground(series, pg.scenario_input("full_pipeline")[1])
    _wait_for(page, _source("anomalies", "t"), np.array(want.anomalies, dtype=float))
    _wait_for(page, _source("gate", "gate"), want.write_gate)


def _read_series(page) -> pg.SeriesInput:
    base = page.locator("textarea").first.input_value()
    anomalies = page.locator("input[type=text]").first.input_value()
    values = pg.parse_series(base)
    return pg.SeriesInput(values, pg.parse_anomalies(anomalies, len(values)))


def test_bad_input_is_a_message_in_the_page(page):
    box = page.locator("textarea").first
    box.fill("1, 2, three")
    box.blur()
    page.get_by_text("sequence value #3: 'three' is not a number").wait_for(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    box.fill("")
    box.blur()
    page.get_by_text("the sequence is empty").wait_for(timeout=TIMEOUT_MS)
    anomalies = page.locator("input[type=text]").first
    anomalies.fill("")
    anomalies.press("Enter")
    box.fill("1, 2, 3, 1, 2, 3, 40, 1, 2, 3")
    box.blur()
    series, settings = pg.scenario_input("full_pipeline")
    want = pg.run_playground(pg.SeriesInput(pg.parse_series(box.input_value()), {}), settings)
    _wait_for(page, _source("raw", "raw"), want.raw_surprise)  # the page still works


def test_language_switch(page):
    page.get_by_role("button", name="Tiếng Việt").click()
    page.get_by_text("Sân chơi (tầng demo)").wait_for(timeout=TIMEOUT_MS)
    # the tab title and the slider labels are separate updates: wait for the label too, not count()
    page.get_by_text("forget_rate (mức quên mỗi bước)").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="English").click()
    page.get_by_text("Playground (demo layer)").wait_for(timeout=TIMEOUT_MS)


def _open_text_tab(page) -> None:
    page.get_by_role("button", name="The core, on text").click()
    # the first opening computes the default preset's recall curve too
    page.locator("span.tok[data-signal=surprise]").first.wait_for(timeout=TIMEOUT_MS)


def test_text_tab_colours_the_typed_text(page):
    _open_text_tab(page)
    assert page.get_by_text("No trained checkpoint: the gates are untrained.").count() == 1
    typed = "abc abc abc. Xin chào!"
    box = page.locator("textarea").nth(1)  # the playground's sequence is the first
    box.fill(typed)
    box.blur()
    spans = page.locator("span.tok[data-signal=surprise]")
    sync_api.expect(spans).to_have_count(len(typed), timeout=TIMEOUT_MS)
    got = [float(v) for v in spans.evaluate_all("els => els.map(e => e.dataset.value)")]
    signals = ct.text_signals(ct.preset_memory("titans"), typed)
    want = [v for _, v, _ in ct.char_values(typed, signals.surprise)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    colours = spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) > 3  # coloured, not one flat shade
    assert page.locator("span.tok[data-signal=forget]").count() == len(typed)
    recall = page.evaluate(
        f"() => Array.from(Bokeh.documents[0].get_model_by_name('{TEXT_SOURCES['recall']}')"
        ".data['cosine'])"
    )
    np.testing.assert_allclose(recall, ct.recall_curve("titans").cosine, rtol=1e-12)


def test_a_checkpoint_that_does_not_load_is_a_message(page, tmp_path):
    _open_text_tab(page)
    field = page.get_by_placeholder("runs/my-model")
    field.fill(str(tmp_path))  # a directory without the two files
    field.press("Enter")
    page.get_by_role("button", name="Load the checkpoint").click()
    page.get_by_text("lacks config.json, model.safetensors").wait_for(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()


def _shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("TITANS_EXPLORE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def test_screenshot_playground(page, tmp_path):
    path = _shots_dir(tmp_path) / "explore_playground.png"
    page.screenshot(path=str(path), full_page=True)
    _check_png(path)


def test_screenshot_text_tab(page, tmp_path):
    _open_text_tab(page)
    path = _shots_dir(tmp_path) / "explore_text.png"
    page.screenshot(path=str(path), full_page=True)
    _check_png(path)
