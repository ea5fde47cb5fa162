"""The explorer's first tab: the demo layer's playground (a series, its settings, six panels).

The numbers come from :mod:`~titans_memory.explore.playground`; this module holds the widgets,
the Bokeh panels and their callbacks, as a mixin of :class:`~titans_memory.explore.app.Explorer`
(which provides ``lang``, ``_busy``, ``_guarded`` and the language switch).
"""

from __future__ import annotations

import time
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

from titans_memory.explore import playground as pg
from titans_memory.explore.texts import text

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


class PlaygroundTab:
    """The playground's widgets, panels and callbacks (a mixin of the explorer's page)."""

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

    def _apply_playground_language(self) -> None:
        t = lambda key: text(self.lang, key)  # noqa: E731
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
