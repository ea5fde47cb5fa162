"""How fast ``titans explore`` starts and answers: start-up, a slider change, the text tab.

    uv run python benchmarks/explore.py [--changes 20] [--quick]

Prints one JSON object:

* ``compute``: the functions behind the panels, in this process (no server, no browser): the
  playground at its default size (the full-pipeline scenario, 60 steps) and the text tab on its
  default text (136 bytes) for every preset, median seconds;
* ``startup``: ``titans explore --no-browser`` started as a user starts it, in a subprocess:
  seconds until it prints its URL, then until a headless Chromium has the page with the first
  panels plotted;
* ``slider``: in that page, one step of the forget_rate slider (a key press on its handle), then
  the time until the weight-norm panel holds the new numbers in the browser: the latency a
  learner sees, Python, websocket and BokehJS included. ``--changes`` of them, one after the
  other, each waiting for the previous one's result;
* ``text_tab``: the first opening of the text tab (it computes the default preset's recall
  curve), until the coloured text shows.

The browser parts need Debian's ``chromium`` and Playwright (as the browser test); without them
they are reported as skipped. Timing depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine_info, median_seconds  # noqa: E402

NORM = "Array.from(Bokeh.documents[0].get_model_by_name('pg_weight_norm').data['norm'])"


def compute_times(reps: int) -> dict[str, Any]:
    from titans_memory.explore import core_text as ct
    from titans_memory.explore import playground as pg
    from titans_memory.explore.app import _DEFAULT_TEXT

    series, settings = pg.scenario_input("full_pipeline")
    out: dict[str, Any] = {
        "playground_default_s": median_seconds(
            {"run": lambda: pg.run_playground(series, settings)}, reps
        )["run"]
    }
    memories = {name: ct.preset_memory(name) for name in ct.PRESETS}
    out["text_tab_default_text_s"] = median_seconds(
        {name: (lambda m=m: ct.text_signals(m, _DEFAULT_TEXT)) for name, m in memories.items()},
        max(1, reps // 3),
    )
    out["text_bytes"] = len(_DEFAULT_TEXT.encode("utf-8"))
    return out


def browser_times(changes: int) -> dict[str, Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (uv sync)"}
    if chromium is None:
        return {"skipped": "no chromium (apt-get install chromium)"}

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "titans_memory.cli", "explore", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url_s = time.perf_counter() - start
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1320, "height": 1480})
            page.goto(url)
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && "
                "Bokeh.documents[0].get_model_by_name('pg_weight_norm') && "
                f"{NORM}.length > 0",
                timeout=120_000,
            )
            page_s = time.perf_counter() - start

            handles = page.locator(".noUi-handle")
            group = page.locator(".bk-input-group", has=handles, has_text="forget_rate").first
            handle = group.locator(".noUi-handle").first
            handle.focus()
            latencies = []
            for i in range(changes):
                before = page.evaluate(f"() => {NORM}.slice(-1)[0]")
                tick = time.perf_counter()
                handle.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
                page.wait_for_function(
                    f"(b) => {NORM}.slice(-1)[0] !== b", arg=before, timeout=60_000
                )
                latencies.append(time.perf_counter() - tick)

            tick = time.perf_counter()
            page.get_by_role("button", name="The core, on text").click()
            page.locator("span.tok[data-signal=surprise]").first.wait_for(timeout=120_000)
            text_tab_s = time.perf_counter() - tick
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "startup": {"url_printed_s": url_s, "first_panels_in_browser_s": page_s},
        "slider": {
            "changes": changes,
            "median_s": statistics.median(latencies),
            "max_s": max(latencies),
            "all_s": latencies,
        },
        "text_tab_first_open_s": text_tab_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20, help="slider changes timed")
    parser.add_argument("--reps", type=int, default=15, help="repeats of the compute timings")
    parser.add_argument("--quick", action="store_true", help="few repeats, no browser")
    args = parser.parse_args()
    reps = 2 if args.quick else args.reps
    out: dict[str, Any] = {"machine": machine_info(), "compute": compute_times(reps)}
    out["browser"] = (
        {"skipped": "--quick"} if args.quick else browser_times(args.changes)
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
