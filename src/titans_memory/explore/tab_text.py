"""The explorer's second tab: the core's memory on text (surprise, gates, recall by age).

The numbers come from :mod:`~titans_memory.explore.core_text`; this module holds the widgets,
the coloured text and the recall plot, as a mixin of :class:`~titans_memory.explore.app.Explorer`
(which provides ``lang``, ``_guarded`` and the language switch).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import panel as pn
from bokeh.models import ColumnDataSource, HoverTool, Range1d
from bokeh.plotting import figure

from titans_memory.explore import core_text as ct
from titans_memory.explore.texts import text

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

class TextTab:
    """The text tab's widgets, plots and callbacks (a mixin of the explorer's page)."""

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
