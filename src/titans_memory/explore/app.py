"""The explorer's page (Panel and Bokeh) and its server.

This module holds the user interface only: widgets, plots, the language switch and the
messages. Every number it shows comes from :mod:`~titans_memory.explore.playground` and
:mod:`~titans_memory.explore.core_text`, which know nothing about the page.

Each plot's data lives in a named Bokeh ``ColumnDataSource`` (:data:`PLAYGROUND_SOURCES`,
:data:`TEXT_SOURCES`), and each coloured character carries its value (``data-value``), so that a
browser test can read, from the page itself, the numbers that were shown.

Run it with ``titans explore`` (see :func:`serve`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
import webbrowser
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
from bokeh.events import Tap
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    Range1d,
)
from bokeh.palettes import Magma256
from bokeh.plotting import figure

from titans_memory.explore import core_text as ct
from titans_memory.explore import playground as pg
from titans_memory.explore.texts import LANGUAGES, ExploreInputError, text

log = logging.getLogger(__name__)

#: Names of the playground's data sources (Bokeh model names), by panel.
PLAYGROUND_SOURCES = {
    "input": "pg_input",
    "anomalies": "pg_anomalies",
    "raw": "pg_raw_surprise",
    "smooth": "pg_smooth_surprise",
    "gate": "pg_write_gate",
    "norm": "pg_weight_norm",
    "heat": "pg_write_heatmap",
}

#: Names of the text tab's data sources.
TEXT_SOURCES = {"recall": "tx_recall"}

#: Colour of the largest value of each text signal (white is the smallest).
_SIGNAL_RGB = {
    "surprise": (255, 127, 14),
    "lr": (44, 160, 44),
    "forget": (214, 39, 40),
    "momentum": (148, 103, 189),
}
_DEFAULT_TEXT = (
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. "
    "QXZ! the cat sat on the mat. Con mèo ngồi trên tấm thảm."
)

_WRITE_LRS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
_MEMORY_DIMS = [2, 4, 8, 16, 32, 64, 128]
_FIG_WIDTH = 620
_NOTE_WIDTH = 300
_COLORS = {
    "input": "#1f77b4",
    "anomaly": "#d62728",
    "raw": "#ff7f0e",
    "smooth": "#9467bd",
    "gate": "#2ca02c",
    "norm": "#17becf",
}


def _figure(height: int, x_range: Range1d, **kwargs: Any) -> figure:
    fig = figure(
        width=_FIG_WIDTH,
        height=height,
        x_range=x_range,
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        active_scroll="xwheel_zoom",
        toolbar_location="right",
        **kwargs,
    )
    fig.title.text_font_size = "12pt"
    fig.min_border_left = 60  # aligned y axes, so that the linked x axes line up
    return fig


def _hover(fig: figure, renderer: Any, label: str, field: str) -> None:
    fig.add_tools(
        HoverTool(
            renderers=[renderer],
            tooltips=[("t", "@t{0}"), (label, f"@{field}{{0.0000g}}")],
            mode="vline",
        )
    )


def _decade_ticks(values: np.ndarray, most: int = 5) -> FixedTicker:
    """Powers of ten spanning the positive ``values``, at most ``most`` of them (a label for each
    of eight decades would not fit a short panel)."""
    positive = values[values > 0]
    if positive.size == 0:
        return FixedTicker(ticks=[1.0])
    low = int(np.floor(np.log10(positive.min())))
    high = int(np.ceil(np.log10(positive.max())))
    step = max(1, int(np.ceil((high - low + 1) / most)))
    return FixedTicker(ticks=[10.0**k for k in range(high, low - 1, -step)])


class Explorer:
    """One browser session's page: widgets, plots and their callbacks.

    Args:
        lang: ``"en"`` or ``"vi"``, the language the page opens in.
    """

    def __init__(self, lang: str = "en") -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
        self.lang = lang
        self._busy = False  # set while widgets are filled in, so they trigger one update
        self._text_loaded = False  # the text tab computes when first shown
        self._messages: dict[int, Callable[[str], str]] = {}  # error pane -> its message
        self._length = 0
        self._build_playground_widgets()
        self._build_playground_plots()
        self.language = pn.widgets.RadioButtonGroup(
            options=list(LANGUAGES.values()), value=LANGUAGES[lang]
        )
        self.language.param.watch(self._on_language, "value")
        self.title = pn.pane.Markdown(width=1000)
        self.intro = pn.pane.Markdown(width=1000)
        self._build_text_section()
        # Tabs as a button group: Panel's Tabs keep a tab's first title, and the titles have to
        # follow the language switch.
        self.section = pn.widgets.RadioButtonGroup(options={}, value="playground")
        self.sections = {
            "playground": self._playground_view(),
            "text": self._text_view(),
        }
        self.section.param.watch(self._on_section, "value")
        self._apply_language()
        self._on_section(None)
        self._load_scenario("full_pipeline")

    # --- the playground ------------------------------------------------------------------------
    def _build_playground_widgets(self) -> None:
        self.scenario = pn.widgets.Select(options={}, width=280)
        self.base = pn.widgets.TextAreaInput(width=280, height=110)
        self.anomalies = pn.widgets.TextInput(width=280)
        self.anomaly_height = pn.widgets.FloatInput(value=50.0, step=1.0, width=280)
        self.click_hint = pn.pane.Markdown(width=280, styles={"font-size": "0.85em"})
        self.write_lr = pn.widgets.DiscreteSlider(options=_WRITE_LRS, value=0.01, width=270)
        self.forget_rate = pn.widgets.FloatSlider(
            start=0.0, end=0.2, step=0.001, value=0.01, width=270, format="0.000"
        )
        self.momentum = pn.widgets.FloatSlider(start=0.0, end=0.99, step=0.01, value=0.9, width=270)
        self.memory_dim = pn.widgets.DiscreteSlider(options=_MEMORY_DIMS, value=16, width=270)
        self.seed = pn.widgets.IntSlider(start=0, end=100, value=42, width=270)
        self.reset = pn.widgets.Button(width=280)
        self.status = pn.pane.Markdown(width=280, styles={"color": "#555"})
        self.error = pn.pane.Alert(alert_type="danger", visible=False, width=280)
        self.hidden_dim = 16  # the predictor's width: the scenario's, no slider

        self.scenario.param.watch(lambda e: self._load_scenario(e.new), "value")
        self.reset.on_click(lambda _: self._load_scenario(self.scenario.value))
        for widget in (
            self.base,
            self.anomalies,
            self.write_lr,
            self.forget_rate,
            self.momentum,
            self.memory_dim,
            self.seed,
        ):
            widget.param.watch(self._on_change, "value")

    def _build_playground_plots(self) -> None:
        names = PLAYGROUND_SOURCES
        self.x_range = Range1d(-1.5, 60)
        self.src = {
            "input": ColumnDataSource({"t": [], "value": []}, name=names["input"]),
            "anomalies": ColumnDataSource({"t": [], "value": []}, name=names["anomalies"]),
            "raw": ColumnDataSource({"t": [], "raw": []}, name=names["raw"]),
            "smooth": ColumnDataSource({"t": [], "smooth": []}, name=names["smooth"]),
            "gate": ColumnDataSource({"t": [], "gate": []}, name=names["gate"]),
            "norm": ColumnDataSource({"t": [], "norm": []}, name=names["norm"]),
            "heat": ColumnDataSource(
                {"image": [], "x": [], "y": [], "dw": [], "dh": []}, name=names["heat"]
            ),
        }
        src = self.src
        fig = self.figs = {}

        fig["input"] = f = _figure(190, self.x_range)
        line = f.line("t", "value", source=src["input"], color=_COLORS["input"], line_width=1.5)
        f.scatter("t", "value", source=src["input"], color=_COLORS["input"], size=3)
        f.scatter("t", "value", source=src["anomalies"], color=_COLORS["anomaly"], size=9)
        _hover(f, line, "x_t", "value")
        f.on_event(Tap, self._on_tap)

        fig["raw"] = f = _figure(160, self.x_range, y_axis_type="log")
        line = f.line("t", "raw", source=src["raw"], color=_COLORS["raw"], line_width=1.5)
        _hover(f, line, "s_t", "raw")

        fig["smooth"] = f = _figure(160, self.x_range, y_axis_type="log")
        line = f.line("t", "smooth", source=src["smooth"], color=_COLORS["smooth"], line_width=2)
        _hover(f, line, "m_t", "smooth")

        fig["gate"] = f = _figure(160, self.x_range, y_range=Range1d(0, 1.05))
        f.varea(x="t", y1=0, y2="gate", source=src["gate"], color=_COLORS["gate"], alpha=0.25)
        line = f.step("t", "gate", source=src["gate"], mode="center", color=_COLORS["gate"])
        _hover(f, line, "g_t", "gate")

        fig["norm"] = f = _figure(160, self.x_range)
        line = f.line("t", "norm", source=src["norm"], color=_COLORS["norm"], line_width=2)
        _hover(f, line, "||θ||", "norm")

        # weight 0 at the top, as in the figure
        fig["heat"] = f = _figure(220, self.x_range, y_range=Range1d(15.5, -0.5))
        # light = no write, dark = a large one (the figure's magma_r)
        self.heat_colors = LinearColorMapper(palette=list(reversed(Magma256)), low=0.0, high=1.0)
        image = f.image(
            image="image", x="x", y="y", dw="dw", dh="dh", source=src["heat"],
            color_mapper=self.heat_colors,
        )
        f.add_tools(
            HoverTool(
                renderers=[image],
                tooltips=[("t", "$x{0}"), ("#", "$y{0}"), ("|step|", "@image{0.0000g}")],
            )
        )
        f.add_layout(ColorBar(color_mapper=self.heat_colors, width=10), "right")
        # The anomaly columns, outlined on the heatmap as on the figure.
        f.scatter("t", -0.5, source=src["anomalies"], marker="inverted_triangle",
                  color=_COLORS["anomaly"], size=10)
        self.notes = {key: pn.pane.Markdown(width=_NOTE_WIDTH) for key in fig}

    def _playground_view(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            self.scenario,
            self.base,
            self.anomalies,
            self.anomaly_height,
            self.click_hint,
            self.write_lr,
            self.forget_rate,
            self.momentum,
            self.memory_dim,
            self.seed,
            self.reset,
            self.error,
            self.status,
            width=300,
        )
        rows = [
            pn.Row(pn.pane.Bokeh(self.figs[key]), self.notes[key], name=f"panel_{key}")
            for key in ("input", "raw", "smooth", "gate", "norm", "heat")
        ]
        return pn.Row(controls, pn.Column(*rows))

    def _load_scenario(self, name: str) -> None:
        series, settings = pg.scenario_input(name)
        self._busy = True
        try:
            self.scenario.value = name
            self.base.value = pg.format_series(series.base)
            self.anomalies.value = pg.format_anomalies(series.anomalies)
            if series.anomalies:
                self.anomaly_height.value = next(iter(series.anomalies.values()))
            self.write_lr.value = settings.write_lr
            self.forget_rate.value = settings.forget_rate
            self.momentum.value = settings.momentum
            self.memory_dim.value = settings.memory_dim
            self.seed.value = settings.seed
            self.hidden_dim = settings.hidden_dim
        finally:
            self._busy = False
        self._length = 0  # a new series: fit the x axis again
        self._update()

    def settings(self) -> pg.PlaygroundSettings:
        """The playground settings the widgets hold now."""
        return pg.PlaygroundSettings(
            write_lr=float(self.write_lr.value),
            forget_rate=float(self.forget_rate.value),
            momentum=float(self.momentum.value),
            memory_dim=int(self.memory_dim.value),
            hidden_dim=self.hidden_dim,
            seed=int(self.seed.value),
        )

    def series(self) -> pg.SeriesInput:
        """The series the text fields hold now (raises ExploreInputError on bad text)."""
        base = pg.parse_series(self.base.value)
        return pg.SeriesInput(base, pg.parse_anomalies(self.anomalies.value, len(base)))

    def _on_change(self, _event: Any) -> None:
        if not self._busy:
            self._update()

    def _on_tap(self, event: Tap) -> None:
        def toggle() -> None:
            series = self.series()
            t = int(round(event.x))
            new = pg.toggle_anomaly(series.anomalies, t, self.anomaly_height.value, len(series.base))
            self.anomalies.value = pg.format_anomalies(new)  # its watcher recomputes

        self._guarded(toggle)

    def _update(self) -> None:
        self._guarded(self._recompute)

    def _guarded(
        self,
        action: Callable[[], None],
        error: pn.pane.Alert | None = None,
        status: pn.pane.Markdown | None = None,
    ) -> None:
        """Run ``action``; any failure becomes a message in the page, never a traceback.

        ``error`` and ``status`` are the section's message panes (default: the playground's).
        """
        error = self.error if error is None else error
        status = self.status if status is None else status
        try:
            action()
        except ExploreInputError as err:
            self._show_error(error, status, err.message)
        except (ValueError, TypeError) as err:  # a setting the library itself refuses
            refused = str(err)
            self._show_error(error, status, lambda lang: text(lang, "err_setting", detail=refused))
        except Exception as err:  # keep serving whatever happened; the log has the details
            log.error("titans explore: %s", traceback.format_exc())
            kind, detail = type(err).__name__, str(err)
            self._show_error(
                error, status, lambda lang: text(lang, "err_unexpected", kind=kind, detail=detail)
            )
        else:
            error.visible = False

    def _show_error(
        self, error: pn.pane.Alert, status: pn.pane.Markdown, message: Callable[[str], str]
    ) -> None:
        """Show ``message(lang)`` in ``error``; kept to say it again after a language switch."""
        self._messages[id(error)] = message
        error.object = f"**{text(self.lang, 'error_prefix')}:** {message(self.lang)}"
        error.visible = True
        status.object = ""

    def _translate_errors(self) -> None:
        for error in (self.error, self.text_error):
            message = self._messages.get(id(error))
            if error.visible and message is not None:
                error.object = f"**{text(self.lang, 'error_prefix')}:** {message(self.lang)}"

    def _recompute(self) -> None:
        start = time.perf_counter()
        data = pg.run_playground(self.series(), self.settings())
        self._draw(data)
        ms = 1000 * (time.perf_counter() - start)
        self._last_steps, self._last_ms = len(data.steps), ms
        self.status.object = text(self.lang, "status_ok", steps=len(data.steps), ms=ms)

    def _draw(self, data: pg.PanelData) -> None:
        steps = data.steps
        n = len(steps)
        self.src["input"].data = {"t": steps, "value": data.inputs}
        idx = data.anomalies
        self.src["anomalies"].data = {
            "t": steps[idx] if idx else np.zeros(0),
            "value": data.inputs[idx] if idx else np.zeros(0),
        }
        self.src["raw"].data = {"t": steps, "raw": data.raw_surprise}
        self.src["smooth"].data = {"t": steps, "smooth": data.smooth_surprise}
        for key, values in (("raw", data.raw_surprise), ("smooth", data.smooth_surprise)):
            self.figs[key].yaxis.ticker = _decade_ticks(values)
        self.src["gate"].data = {"t": steps, "gate": data.write_gate}
        self.src["norm"].data = {"t": data.norm_steps, "norm": data.weight_norm}
        heat = data.write_heatmap  # (n_weights, T)
        self.src["heat"].data = {
            "image": [heat], "x": [-0.5], "y": [-0.5], "dw": [n], "dh": [heat.shape[0]],
        }
        self.heat_colors.high = float(heat.max()) if heat.size and heat.max() > 0 else 1.0
        heat_y = self.figs["heat"].y_range
        heat_y.start, heat_y.end = heat.shape[0] - 0.5, -0.5
        if n != self._length:  # a new length: show it all (a zoom survives a slider change)
            self.x_range.start, self.x_range.end = -1.5, n - 0.5
            self._length = n

    # --- language ------------------------------------------------------------------------------
    def _on_language(self, event: Any) -> None:
        self.lang = next(code for code, name in LANGUAGES.items() if name == event.new)
        self._apply_language()
        self._translate_errors()
        if not self.error.visible and hasattr(self, "_last_ms"):
            self.status.object = text(
                self.lang, "status_ok", steps=self._last_steps, ms=self._last_ms
            )

    def _apply_language(self) -> None:
        t = lambda key: text(self.lang, key)  # noqa: E731
        self.title.object = f"## {t('title')}"
        self.intro.object = t("intro")
        self.section.options = {t("tab_playground"): "playground", t("tab_text"): "text"}
        self._apply_text_language()
        current = self.scenario.value
        self._busy = True
        try:
            self.scenario.options = {t(f"scenario_{name}"): name for name in pg.SCENARIOS}
            if current is not None:
                self.scenario.value = current
        finally:
            self._busy = False
        for widget, key in (
            (self.scenario, "scenario"),
            (self.base, "base"),
            (self.anomalies, "anomalies"),
            (self.anomaly_height, "anomaly_height"),
            (self.write_lr, "write_lr"),
            (self.forget_rate, "forget_rate"),
            (self.momentum, "momentum"),
            (self.memory_dim, "memory_dim"),
            (self.seed, "seed"),
        ):
            widget.name = t(key)
        self.reset.name = t("reset")
        self.click_hint.object = t("click_hint")
        axis_y = {
            "input": "axis_value",
            "raw": "axis_surprise",
            "smooth": "axis_surprise",
            "gate": "axis_gate",
            "norm": "axis_norm",
            "heat": "axis_weight",
        }
        for key, fig in self.figs.items():
            fig.title.text = t(f"panel_{key}")
            fig.xaxis.axis_label = t("axis_step")
            fig.yaxis.axis_label = t(axis_y[key])
            self.notes[key].object = t(f"look_{key}")

    # --- the core, on text ---------------------------------------------------------------------
    def _build_text_section(self) -> None:
        self.text_input = pn.widgets.TextAreaInput(value=_DEFAULT_TEXT, width=280, height=160)
        self.preset = pn.widgets.Select(options=list(ct.PRESETS), value="titans", width=280)
        self.checkpoint = pn.widgets.TextInput(width=280, placeholder="runs/my-model")
        self.load = pn.widgets.Button(width=135)
        self.use_preset = pn.widgets.Button(width=135)
        self.run_text = pn.widgets.Button(width=280)
        self.text_error = pn.pane.Alert(alert_type="danger", visible=False, width=280)
        self.text_status = pn.pane.Markdown(width=280, styles={"color": "#555"})
        self.gate_notice = pn.pane.Alert(alert_type="warning", width=700)
        self.tokens_note = pn.pane.Markdown(width=700, styles={"font-size": "0.9em"})
        self.look_text = pn.pane.Markdown(width=700)
        self.signal_titles = {key: pn.pane.Markdown(width=700) for key in _SIGNAL_RGB}
        self.signal_html = {
            key: pn.pane.HTML(
                width=700,
                styles={
                    "font-family": "monospace",
                    "font-size": "15px",
                    "line-height": "1.7",
                    "white-space": "pre-wrap",
                    "word-break": "break-all",
                },
            )
            for key in _SIGNAL_RGB
        }
        self.recall_source = ColumnDataSource(
            {"age": [], "cosine": [], "low": [], "high": []}, name=TEXT_SOURCES["recall"]
        )
        f = self.recall_fig = figure(
            width=700, height=260, tools="pan,wheel_zoom,box_zoom,reset,save",
            y_range=Range1d(-0.1, 1.05),
        )
        f.title.text_font_size = "12pt"
        f.varea(x="age", y1="low", y2="high", source=self.recall_source, color="#4c72b0",
                alpha=0.2)
        line = f.line("age", "cosine", source=self.recall_source, color="#4c72b0", line_width=2)
        f.add_tools(
            HoverTool(renderers=[line], mode="vline",
                      tooltips=[("age", "@age"), ("cosine", "@cosine{0.000}")])
        )
        self.recall_note = pn.pane.Markdown(width=700)
        self.loaded: ct.LoadedMemory | None = None
        self._text_signals: ct.TextSignals | None = None

        self.preset.param.watch(lambda _: self._use_preset(), "value")
        self.use_preset.on_click(lambda _: self._use_preset())
        self.load.on_click(lambda _: self._load_checkpoint())
        self.run_text.on_click(lambda _: self._update_text())
        self.text_input.param.watch(lambda _: self._update_text(), "value")

    def _text_view(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            self.text_input,
            self.run_text,
            self.preset,
            self.checkpoint,
            pn.Row(self.load, self.use_preset),
            self.text_error,
            self.text_status,
            width=300,
        )
        blocks = []
        for key in _SIGNAL_RGB:
            blocks += [self.signal_titles[key], self.signal_html[key]]
        right = pn.Column(
            self.gate_notice,
            self.tokens_note,
            self.look_text,
            *blocks,
            pn.pane.Bokeh(self.recall_fig),
            self.recall_note,
        )
        return pn.Row(controls, right)

    def _on_section(self, _event: Any) -> None:
        for key, view in self.sections.items():
            view.visible = key == self.section.value
        if self.section.value == "text" and not self._text_loaded:
            self._use_preset()

    def _use_preset(self) -> None:
        self._text_loaded = True

        def action() -> None:
            self.loaded = ct.preset_memory(self.preset.value)
            self._draw_recall(self.preset.value)
            self._recompute_text()

        self._guarded_text(action)

    def _load_checkpoint(self) -> None:
        def action() -> None:
            self.loaded = ct.load_checkpoint(self.checkpoint.value)
            self._recompute_text()

        self._guarded_text(action)

    def _update_text(self) -> None:
        if not self._text_loaded:
            return  # not shown yet: computed when the tab opens
        self._guarded_text(self._recompute_text)

    def _guarded_text(self, action: Callable[[], None]) -> None:
        self._guarded(action, self.text_error, self.text_status)

    def _recompute_text(self) -> None:
        if self.loaded is None:
            self.loaded = ct.preset_memory(self.preset.value)
            self._draw_recall(self.preset.value)
        start = time.perf_counter()
        body = self.text_input.value
        self._text_signals = ct.text_signals(self.loaded, body)
        self._text_body = body  # what the signals are about (the field may change later)
        self._text_ms = 1000 * (time.perf_counter() - start)
        self._draw_text()

    def _draw_text(self) -> None:
        """The coloured text and the notes, in the current language (no recomputation)."""
        t = lambda key, **kw: text(self.lang, key, **kw)  # noqa: E731
        loaded, signals = self.loaded, self._text_signals
        if loaded is None or signals is None:
            return
        if loaded.trained:
            notice = t("trained", path=loaded.label)
            if not loaded.trained_embedding:
                notice += t("trained_random_embedding")
            self.gate_notice.alert_type = "success"
        else:
            notice = t("untrained", name=loaded.label)
            self.gate_notice.alert_type = "warning"
        self.gate_notice.object = notice
        self.tokens_note.object = t("tokens_note", heads=signals.heads)
        self.look_text.object = t("look_text", chunk=loaded.memory.config.chunk_size)
        body = self._text_body
        for key, rgb in _SIGNAL_RGB.items():
            values = getattr(signals, key)
            title = t(f"sig_{key}")
            if values is None:
                self.signal_titles[key].object = f"**{title}**: {t('no_gate')}."
                self.signal_html[key].object = ""
                continue
            markup, low, high = ct.coloured_html(body, values, rgb, key)
            self.signal_titles[key].object = f"**{title}** ({t('range', low=low, high=high)})"
            self.signal_html[key].object = markup
        self.text_status.object = t("status_text", count=len(signals.data), ms=self._text_ms)

    def _draw_recall(self, name: str) -> None:
        curve = ct.recall_curve(name)
        self.recall_source.data = {
            "age": curve.ages.astype(float),
            "cosine": curve.cosine,
            "low": curve.cosine - curve.cosine_std,
            "high": curve.cosine + curve.cosine_std,
        }
        self._recall_name = name
        self._apply_recall_language()

    def _apply_recall_language(self) -> None:
        name = getattr(self, "_recall_name", self.preset.value)
        self.recall_fig.title.text = text(self.lang, "recall_title", name=name)
        self.recall_fig.xaxis.axis_label = text(self.lang, "axis_age")
        self.recall_fig.yaxis.axis_label = text(self.lang, "axis_cosine")
        self.recall_note.object = text(self.lang, "recall_note")

    def _apply_text_language(self) -> None:
        t = lambda key: text(self.lang, key)  # noqa: E731
        self.text_input.name = t("text_input")
        self.preset.name = t("preset")
        self.checkpoint.name = t("checkpoint")
        self.load.name = t("load")
        self.use_preset.name = t("use_preset")
        self.run_text.name = t("run_text")
        self._apply_recall_language()
        self._draw_text()

    def view(self) -> pn.viewable.Viewable:
        """The whole page."""
        header = pn.Row(self.title, pn.Spacer(), self.language)
        return pn.Column(header, self.intro, self.section, *self.sections.values())


def create_page(lang: str = "en") -> pn.viewable.Viewable:
    """A fresh page (one per browser session)."""
    return Explorer(lang).view()


def _warm_up() -> None:
    try:
        ct.recall_curve("titans")
        ct.text_signals(ct.preset_memory("titans"), _DEFAULT_TEXT)
    except Exception:  # only a head start: the page computes it again if this failed
        log.warning("titans explore: warm-up failed: %s", traceback.format_exc())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    port: int = 0,
    *,
    show: bool = True,
    lang: str = "en",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the explorer on ``http://127.0.0.1:port/`` until interrupted.

    Args:
        port: TCP port; 0 picks a free one.
        show: open the page in the default web browser once the server listens.
        lang: the language pages open in.
        on_ready: called with the page's URL once the server listens (e.g. to print it).

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """
    port = port or free_port()
    server = pn.serve(
        {"/": lambda: create_page(lang)},
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
        show=False,
        start=False,
        title="titans explore",
        verbose=False,
    )
    from titans_memory.explore.server import guard_routes

    guard_routes(server)  # only the explorer's own pages: no import of other modules by URL
    url = f"http://127.0.0.1:{server.port}/"
    # The text tab's first opening would compute the default preset's recall curve and pay
    # torch's first-call costs (~2-3 s on 2 busy cores): do it now, while the learner reads.
    threading.Thread(target=_warm_up, name="titans-explore-warm-up", daemon=True).start()
    server.start()
    if on_ready is not None:
        on_ready(url)
    if show:
        server.io_loop.add_callback(webbrowser.open, url)
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
