"""The page's wiring, without a browser: widgets in, plotted data out, errors in the page.

Each test builds one :class:`Explorer` (what a browser session gets) and drives its widgets as
the page would; the data sources must then hold what the playground functions compute.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pytest.importorskip(
    "panel",
    reason="the explorer needs the 'explore' extra: uv sync --extra explore "
    "(or pip install 'titans-miras[explore]')",
)

from bokeh.events import Tap  # noqa: E402

from titans_memory import NeuralMemory, preset  # noqa: E402
from titans_memory.explore import core_text as ct  # noqa: E402
from titans_memory.explore import playground as pg  # noqa: E402
from titans_memory.explore.app import PLAYGROUND_SOURCES, TEXT_SOURCES, Explorer  # noqa: E402
from titans_memory.explore.tab_cms import CMS_TEXTS  # noqa: E402
from titans_memory.explore.texts import TEXTS  # noqa: E402


def _expected(explorer: Explorer) -> pg.PanelData:
    return pg.run_playground(explorer.series(), explorer.settings())


def _assert_plotted(explorer: Explorer, data: pg.PanelData) -> None:
    src = explorer.src
    np.testing.assert_array_equal(src["input"].data["value"], data.inputs)
    np.testing.assert_array_equal(src["raw"].data["raw"], data.raw_surprise)
    np.testing.assert_array_equal(src["smooth"].data["smooth"], data.smooth_surprise)
    np.testing.assert_array_equal(src["gate"].data["gate"], data.write_gate)
    np.testing.assert_array_equal(src["norm"].data["t"], data.norm_steps)
    np.testing.assert_array_equal(src["norm"].data["norm"], data.weight_norm)
    np.testing.assert_array_equal(src["heat"].data["image"][0], data.write_heatmap)
    np.testing.assert_array_equal(src["anomalies"].data["t"], np.array(data.anomalies, float))


@pytest.fixture
def explorer() -> Explorer:
    return Explorer("en")


def test_opens_on_the_full_pipeline_figure(explorer):
    series, settings = pg.scenario_input("full_pipeline")
    assert explorer.settings() == settings
    data = pg.run_playground(series, settings)
    _assert_plotted(explorer, data)
    assert explorer.error.visible is False
    assert explorer.status.object == TEXTS["en"]["status_ok"].format(
        steps=60, ms=explorer._last_ms
    )
    names = {source.name for source in explorer.src.values()}
    assert names == set(PLAYGROUND_SOURCES.values())


@pytest.mark.parametrize(
    ("widget", "value"),
    [
        ("write_lr", 0.1),
        ("forget_rate", 0.05),
        ("momentum", 0.3),
        ("memory_dim", 4),
        ("seed", 7),
    ],
)
def test_a_slider_change_replots(explorer, widget, value):
    before = np.array(explorer.src["norm"].data["norm"])
    getattr(explorer, widget).value = value
    assert getattr(explorer.settings(), widget) == value
    data = _expected(explorer)
    _assert_plotted(explorer, data)
    if widget != "momentum":  # momentum only smooths the reported surprise
        assert not np.array_equal(before, data.weight_norm)


def test_scenario_select_loads_series_and_settings(explorer):
    explorer.scenario.value = "surprise_over_time"
    series, settings = pg.scenario_input("surprise_over_time")
    assert explorer.settings() == settings
    assert explorer.anomalies.value == "14: 99, 35: 99, 50: 99"
    _assert_plotted(explorer, pg.run_playground(series, settings))
    explorer.momentum.value = 0.1
    explorer.reset.clicks += 1  # back to the scenario's own settings
    assert explorer.settings() == settings


def test_editing_the_sequence(explorer):
    explorer.anomalies.value = ""
    explorer.base.value = "1 2 3 1 2 3 1 2 3 50 1 2 3"
    data = _expected(explorer)
    assert len(data.steps) == 13 and data.anomalies == []
    _assert_plotted(explorer, data)
    assert explorer.x_range.end == 12.5  # the x axis fits the new length


def test_a_click_on_the_input_panel_places_then_removes_an_anomaly(explorer):
    explorer.anomaly_height.value = 33.0
    fig = explorer.figs["input"]
    fig._trigger_event(Tap(fig, x=20.3, y=1.0))
    assert explorer.anomalies.value == "12: 50, 20: 33, 30: 50, 48: 50"
    data = _expected(explorer)
    assert data.inputs[20] == 33.0 and 20 in data.anomalies
    _assert_plotted(explorer, data)
    fig._trigger_event(Tap(fig, x=19.8, y=1.0))  # nearest step 20 again: removed
    assert explorer.anomalies.value == "12: 50, 30: 50, 48: 50"
    fig._trigger_event(Tap(fig, x=500.0, y=1.0))  # beyond the series: nothing
    assert explorer.anomalies.value == "12: 50, 30: 50, 48: 50"


@pytest.mark.parametrize(
    ("field", "text", "fragment"),
    [
        ("base", "", "the sequence is empty"),
        ("base", "1, 2, abc", "'abc' is not a number"),
        ("anomalies", "99: 5", "anomaly at t=99"),
        ("anomalies", "12 50", "expected 'timestep: height'"),
    ],
)
def test_bad_input_is_a_message_and_the_plots_stay(explorer, field, text, fragment):
    before = {key: dict(source.data) for key, source in explorer.src.items()}
    getattr(explorer, field).value = text
    assert explorer.error.visible
    assert fragment in explorer.error.object
    assert "Traceback" not in explorer.error.object
    for key, source in explorer.src.items():
        assert source.data == before[key], key  # the last good plots stay
    explorer.scenario.value = "momentum_vs_raw"  # and the page goes on working
    assert not explorer.error.visible
    _assert_plotted(explorer, _expected(explorer))


def test_an_unexpected_failure_is_a_message_too(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pg, "run_playground", broken)
    explorer.seed.value = 1
    assert explorer.error.visible
    assert "unexpected error (RuntimeError): boom" in explorer.error.object


def test_language_switch(explorer):
    explorer.base.value = "1, x"  # an error on screen, said again in the new language
    explorer.language.value = "Tiếng Việt"
    assert explorer.lang == "vi"
    assert explorer.forget_rate.name == TEXTS["vi"]["forget_rate"]
    assert explorer.figs["gate"].title.text == TEXTS["vi"]["panel_gate"]
    assert explorer.notes["heat"].object == TEXTS["vi"]["look_heat"]
    assert "không phải là một số" in explorer.error.object
    assert explorer.scenario.value == "full_pipeline"  # the choice survives new labels
    assert TEXTS["vi"]["scenario_full_pipeline"] in explorer.scenario.options
    explorer.language.value = "English"
    assert explorer.forget_rate.name == TEXTS["en"]["forget_rate"]
    assert "is not a number" in explorer.error.object


def test_unknown_language():
    with pytest.raises(ValueError, match="lang must be one of en, vi"):
        Explorer("fr")


# --- the core, on text ------------------------------------------------------------------------


def _span_values(markup: str) -> list[float]:
    return [float(v) for v in re.findall(r'data-value="([^"]+)"', markup)]


def test_text_tab_colours_the_text_by_the_memory_s_signals(explorer):
    assert explorer._text_signals is None  # nothing computed before the tab is opened
    explorer.preset.value = "deltanet"  # a cheap preset; choosing it computes
    explorer.text_input.value = "abcabc Việt"
    assert not explorer.text_error.visible
    signals = ct.text_signals(ct.preset_memory("deltanet"), "abcabc Việt")
    values = ct.char_values("abcabc Việt", signals.surprise)
    markup = explorer.signal_html["surprise"].object
    assert _span_values(markup) == [v for _, v, _ in values]
    assert len(_span_values(explorer.signal_html["lr"].object)) == len("abcabc Việt")
    assert explorer.signal_html["forget"].object == ""  # DeltaNet never forgets
    assert TEXTS["en"]["no_gate"] in explorer.signal_titles["forget"].object
    assert "the gates are untrained" in explorer.gate_notice.object
    curve = ct.recall_curve("deltanet")
    np.testing.assert_array_equal(explorer.recall_source.data["cosine"], curve.cosine)
    assert explorer.recall_source.name == TEXT_SOURCES["recall"]


def test_opening_the_text_tab_computes_it(explorer):
    explorer.section.value = "text"
    assert explorer.sections["text"].visible and not explorer.sections["playground"].visible
    assert explorer._text_signals is not None and explorer.loaded.label == "titans"
    assert len(_span_values(explorer.signal_html["momentum"].object)) == len(
        explorer.text_input.value
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "the text is empty"), ("é" * 400, "the text is 800 bytes")],
)
def test_bad_text_is_a_message(explorer, text, fragment):
    explorer.preset.value = "deltanet"
    before = explorer.signal_html["surprise"].object
    explorer.text_input.value = text
    assert explorer.text_error.visible and fragment in explorer.text_error.object
    assert explorer.signal_html["surprise"].object == before
    explorer.text_input.value = "ok"
    assert not explorer.text_error.visible


def test_checkpoints_in_the_page(explorer, tmp_path):
    explorer.preset.value = "deltanet"
    explorer.checkpoint.value = str(tmp_path / "missing")
    explorer.load.clicks += 1
    assert explorer.text_error.visible and "is not a directory" in explorer.text_error.object
    assert "the gates are untrained" in explorer.gate_notice.object  # still the preset

    torch.manual_seed(0)
    memory = NeuralMemory(preset("gated_deltanet", dim=ct.TEXT_DIM)).eval()
    folder = ct.save_checkpoint(tmp_path / "ckpt", memory)
    explorer.checkpoint.value = str(folder)
    explorer.load.clicks += 1
    assert not explorer.text_error.visible
    assert "Trained checkpoint" in explorer.gate_notice.object
    want = ct.text_signals(ct.load_checkpoint(folder), explorer.text_input.value)
    got = _span_values(explorer.signal_html["forget"].object)
    assert got == [v for _, v, _ in ct.char_values(explorer.text_input.value, want.forget)]
    explorer.use_preset.clicks += 1
    assert "the gates are untrained" in explorer.gate_notice.object


def test_text_tab_language(explorer):
    explorer.preset.value = "deltanet"
    explorer.text_input.value = ""
    explorer.language.value = "Tiếng Việt"
    assert "văn bản đang trống" in explorer.text_error.object
    assert explorer.section.options == {
        TEXTS["vi"]["tab_playground"]: "playground",
        TEXTS["vi"]["tab_text"]: "text",
        CMS_TEXTS["vi"]["tab_cms"]: "cms",
    }
    assert explorer.recall_fig.title.text == TEXTS["vi"]["recall_title"].format(name="deltanet")
    explorer.text_input.value = "xin chào"
    assert "chưa được huấn luyện" in explorer.gate_notice.object
