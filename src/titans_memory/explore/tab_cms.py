"""The explorer's third tab: HOPE's continuum memory system (CMS), its levels writing on a text.

The numbers come from :mod:`~titans_memory.explore.cms_text`; this module holds the widgets, the
per-level coloured text and the drift plot, as a mixin of
:class:`~titans_memory.explore.app.Explorer` (which provides ``lang``, ``_guarded`` and the
language switch). Its sentences live here, in both languages (:data:`CMS_TEXTS`, the same keys in
each), and are looked up with :func:`cms_text`.

What the CMS reads: the text's bytes through the fixed random byte embedding of the text tab,
into a fresh CMS (:func:`~titans_memory.explore.cms_text.fresh_cms`); or, once a HOPE checkpoint
of ``titans train`` is loaded in this tab, the stream its first HOPE block feeds its own CMS
(:func:`~titans_memory.explore.cms_text.lm_cms_inputs`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import panel as pn
import torch
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.palettes import Category10
from bokeh.plotting import figure

from titans_memory.explore import cms_text as cm
from titans_memory.explore import core_text as ct
from titans_memory.explore.texts import ExploreInputError

#: Names of the CMS tab's data sources: one drift line per level, and the bytes after which each
#: level wrote.
CMS_SOURCES = {"drift": "cms_drift", "writes": "cms_writes"}

_DEFAULT_CMS_TEXT = (
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the mat. "
    "QXZ! the cat sat on the mat. Con mèo ngồi trên tấm thảm."
)

_EN: dict[str, str] = {
    "tab_cms": "CMS levels (HOPE)",
    "cms_text_input": "Text (UTF-8 bytes, up to 600)",
    "cms_run": "Recompute",
    "cms_checkpoint": "HOPE checkpoint (a titans train folder)",
    "cms_load": "Load HOPE",
    "cms_fresh": "Fresh CMS",
    "cms_source_fresh": (
        "**A fresh, untrained CMS** (levels writing every {chunks} bytes) reads the text's bytes "
        "through the fixed random byte embedding of the text tab ({dim} numbers per byte): the "
        "rhythm of the writes is HOPE's, the weights are not trained. Load a HOPE checkpoint "
        "(`arch=hope`) on the left to see a trained model's CMS."
    ),
    "cms_source_model": (
        "**Trained HOPE checkpoint** `{path}`: the CMS of its first HOPE block (layer {layer}), "
        "levels writing every {chunks} bytes, reading what that block feeds it inside the model "
        "(the normalised stream after its self-modifying memory)."
    ),
    "cms_look": (
        "**What to look for.** HOPE's continuum memory system is a chain of MLPs, level l "
        "updating its weights only once every C_l bytes, with the gradients of its chunk summed "
        "(eq. 71). Each row below is the text as one level sees it: the colour is how far the "
        "level's weights have moved from the start, the underlined bytes are those after which "
        "it wrote. In the plot each level's drift is flat between writes and jumps at each write, "
        "a staircase whose steps are C_l bytes wide: the fast level moves early and often, the "
        "slow one rarely, so it keeps a longer summary. Compare with the surprise of the text tab: "
        "there one memory writes after every byte."
    ),
    "cms_rows_title": (
        "**Each level's drift, byte by byte** (white: 0, full colour: that level's largest; "
        "underlined: the level wrote after this byte; one cell per byte, · for a byte outside ASCII)"
    ),
    "cms_row": "level {level}, C = {chunk}",
    "cms_tip": "byte {t}: drift {drift:.3g}, write {write:.3g}",
    "cms_hover_level": "level",
    "cms_hover_bytes": "bytes read",
    "cms_hover_drift": "drift",
    "cms_hover_write": "write",
    "cms_plot_title": "Drift of each CMS level from its start, ‖θ_t − θ_0‖",
    "cms_axis_bytes": "bytes read",
    "cms_axis_drift": "drift",
    "cms_legend": "level {level} (C = {chunk})",
    "cms_plot_note": "Dots: the writes, at every multiple of C_l. Hover a dot for its values.",
    "cms_status": "{count} bytes, {levels} levels, computed in {ms:.0f} ms.",
    "cms_err_dir": "checkpoint {path!r} is not a directory",
    "cms_err_model": "the checkpoint does not load: {detail}",
    "cms_err_not_hope": (
        "checkpoint {path!r} holds a {arch} model: this view needs a HOPE model (arch=hope)"
    ),
    "cms_err_tokenizer": (
        "checkpoint {path!r} reads tokens of {name!r}: this view feeds the model bytes, so it "
        "needs a byte-level model"
    ),
}

_VI: dict[str, str] = {
    "tab_cms": "Các mức CMS (HOPE)",
    "cms_text_input": "Văn bản (byte UTF-8, tối đa 600)",
    "cms_run": "Tính lại",
    "cms_checkpoint": "Checkpoint HOPE (một thư mục của titans train)",
    "cms_load": "Nạp HOPE",
    "cms_fresh": "CMS mới",
    "cms_source_fresh": (
        "**Một CMS mới, chưa huấn luyện** (các mức ghi sau mỗi {chunks} byte) đọc các byte của "
        "văn bản qua phép nhúng byte ngẫu nhiên cố định của thẻ văn bản ({dim} số cho mỗi byte): "
        "nhịp ghi là của HOPE, còn trọng số thì chưa được huấn luyện. Hãy nạp một checkpoint "
        "HOPE (`arch=hope`) ở bên trái để xem CMS của một mô hình đã huấn luyện."
    ),
    "cms_source_model": (
        "**Checkpoint HOPE đã huấn luyện** `{path}`: CMS của khối HOPE đầu tiên (tầng {layer}), "
        "các mức ghi sau mỗi {chunks} byte, đọc đúng những gì khối đó đưa vào nó bên trong mô "
        "hình (luồng đã chuẩn hoá sau bộ nhớ tự biến đổi)."
    ),
    "cms_look": (
        "**Cần để ý gì.** Hệ bộ nhớ liên tục (CMS) của HOPE là một chuỗi MLP, mức l chỉ cập "
        "nhật trọng số một lần sau mỗi C_l byte, với tổng các gradient của cả đoạn (phương trình "
        "71). Mỗi dòng bên dưới là văn bản như một mức nhìn thấy: màu cho biết trọng số của mức "
        "đã rời xa điểm xuất phát bao nhiêu, các byte gạch chân là nơi mức đó vừa ghi. Trên đồ "
        "thị, độ trôi của mỗi mức đứng yên giữa hai lần ghi và nhảy lên ở mỗi lần ghi: một bậc "
        "thang có bậc rộng C_l byte; mức nhanh thay đổi sớm và thường xuyên, mức chậm hiếm khi "
        "thay đổi nên giữ được một bản tóm tắt dài hơn. Hãy so với độ bất ngờ ở thẻ văn bản: ở "
        "đó một bộ nhớ duy nhất ghi sau từng byte."
    ),
    "cms_rows_title": (
        "**Độ trôi của từng mức, theo từng byte** (trắng: 0, màu đậm nhất: giá trị lớn nhất của "
        "mức đó; gạch chân: mức đó ghi sau byte này; mỗi ô một byte, · cho byte ngoài ASCII)"
    ),
    "cms_row": "mức {level}, C = {chunk}",
    "cms_tip": "byte {t}: độ trôi {drift:.3g}, lần ghi {write:.3g}",
    "cms_hover_level": "mức",
    "cms_hover_bytes": "số byte đã đọc",
    "cms_hover_drift": "độ trôi",
    "cms_hover_write": "lần ghi",
    "cms_plot_title": "Độ trôi của từng mức CMS so với lúc đầu, ‖θ_t − θ_0‖",
    "cms_axis_bytes": "số byte đã đọc",
    "cms_axis_drift": "độ trôi",
    "cms_legend": "mức {level} (C = {chunk})",
    "cms_plot_note": "Các chấm: những lần ghi, tại mọi bội số của C_l. Rê chuột lên một chấm để "
    "xem giá trị.",
    "cms_status": "{count} byte, {levels} mức, tính trong {ms:.0f} ms.",
    "cms_err_dir": "checkpoint {path!r} không phải là một thư mục",
    "cms_err_model": "không nạp được checkpoint: {detail}",
    "cms_err_not_hope": (
        "checkpoint {path!r} chứa một mô hình {arch}: phần này cần một mô hình HOPE (arch=hope)"
    ),
    "cms_err_tokenizer": (
        "checkpoint {path!r} đọc token của {name!r}: phần này đưa byte vào mô hình nên cần một "
        "mô hình đọc theo byte"
    ),
}

#: The CMS tab's sentences, by language code (both tables have the same keys).
CMS_TEXTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"en": MappingProxyType(_EN), "vi": MappingProxyType(_VI)}
)

#: Colours of the levels, fastest first (the HTML rows and the plot's lines share them).
_LEVEL_RGB = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in Category10[10]]


def cms_text(lang: str, key: str, **params: Any) -> str:
    """The CMS tab's string ``key`` in language ``lang``, formatted with ``params``.

    Raises:
        ValueError: unknown language.
        KeyError: unknown key.
    """
    if lang not in CMS_TEXTS:
        raise ValueError(f"lang must be one of {', '.join(CMS_TEXTS)}, got {lang!r}")
    template = CMS_TEXTS[lang][key]
    return template.format(**params) if params else template


class CMSInputError(ExploreInputError):
    """Bad input in the CMS tab: an :class:`ExploreInputError` whose keys are in :data:`CMS_TEXTS`."""

    def message(self, lang: str) -> str:
        return cms_text(lang, self.code, **self.params)


@dataclass(frozen=True)
class HopeCheckpoint:
    """A loaded HOPE model (float32, eval mode), its folder and its first HOPE block's index."""

    model: Any
    path: str
    layer: int


def load_hope_checkpoint(path: str | Path) -> HopeCheckpoint:
    """The HOPE model of a ``titans train`` checkpoint (or run folder), read with safetensors.

    Raises:
        CMSInputError: not a directory, the checkpoint does not load, the model is not HOPE or
            does not read bytes.
    """
    from titans_memory.models.hope import HopeBlock
    from titans_memory.training.checkpoint import CheckpointError, load_model

    folder = Path(str(path).strip()).expanduser()
    if not str(path).strip() or not folder.is_dir():
        raise CMSInputError("cms_err_dir", path=str(path))
    try:
        with ct._SEED_LOCK, torch.random.fork_rng(devices=[]):  # building the model draws weights
            model, found, tokenizer = load_model(folder)
    except CheckpointError as err:
        raise CMSInputError("cms_err_model", detail=str(err)) from None
    if model.config.arch != "hope":
        raise CMSInputError("cms_err_not_hope", path=str(found), arch=model.config.arch.upper())
    if tokenizer is not None:  # a tokenizer other than bytes: the ids would not be the bytes
        raise CMSInputError("cms_err_tokenizer", path=str(found), name=tokenizer)
    layer = next(i for i, b in enumerate(model.blocks) if isinstance(b, HopeBlock))
    return HopeCheckpoint(model.to(torch.float32).eval(), str(found), layer)


def hope_cms_signals(checkpoint: HopeCheckpoint | None, body: str) -> cm.CMSSignals:
    """The CMS signals of ``body``: a fresh CMS on the byte embedding, or the checkpoint's CMS."""
    if checkpoint is None:
        return cm.cms_signals(body)
    data = ct.text_bytes(body)
    ids = torch.tensor([list(data)], dtype=torch.long)  # (1, T)
    cms, inputs = cm.lm_cms_inputs(checkpoint.model, ids, checkpoint.layer)  # (1, T, dim)
    return cm.cms_signals(body, cms, inputs)


class CMSTab:
    """The CMS tab's widgets, plot and callbacks (a mixin of the explorer's page)."""

    def _build_cms_section(self) -> None:
        self._cms_loaded = False  # computed when the tab is first shown
        self.cms_input = pn.widgets.TextAreaInput(value=_DEFAULT_CMS_TEXT, width=280, height=160)
        self.cms_run = pn.widgets.Button(width=280)
        self.cms_checkpoint = pn.widgets.TextInput(width=280, placeholder="runs/my-hope-model")
        self.cms_load = pn.widgets.Button(width=135)
        self.cms_fresh = pn.widgets.Button(width=135)
        self.cms_error = pn.pane.Alert(alert_type="danger", visible=False, width=280)
        self.cms_status = pn.pane.Markdown(width=280, styles={"color": "#555"})
        self.cms_source_note = pn.pane.Alert(alert_type="warning", width=700)
        self.cms_look = pn.pane.Markdown(width=700)
        self.cms_rows_title = pn.pane.Markdown(width=700)
        self.cms_html = pn.pane.HTML(
            width=700,
            styles={"font-size": "15px", "line-height": "1.7", "word-break": "break-all"},
        )
        self.cms_sources = {
            "drift": ColumnDataSource(
                {"xs": [], "ys": [], "label": [], "colour": []}, name=CMS_SOURCES["drift"]
            ),
            "writes": ColumnDataSource(
                {"x": [], "y": [], "level": [], "chunk": [], "write": [], "colour": []},
                name=CMS_SOURCES["writes"],
            ),
        }
        f = self.cms_fig = figure(
            width=700, height=300, tools="pan,wheel_zoom,box_zoom,reset,save"
        )
        f.title.text_font_size = "12pt"
        f.multi_line(
            xs="xs", ys="ys", line_color="colour", legend_field="label", line_width=2,
            source=self.cms_sources["drift"],
        )
        dots = f.scatter(
            "x", "y", color="colour", size=5, source=self.cms_sources["writes"]
        )
        self.cms_hover = HoverTool(renderers=[dots])  # its labels follow the language
        f.add_tools(self.cms_hover)
        f.legend.location = "top_left"
        self.cms_plot_note = pn.pane.Markdown(width=700)
        self.hope_checkpoint: HopeCheckpoint | None = None
        self._cms_signals: cm.CMSSignals | None = None

        self.cms_run.on_click(lambda _: self._update_cms())
        self.cms_input.param.watch(lambda _: self._update_cms(), "value")
        self.cms_load.on_click(lambda _: self._load_hope())
        self.cms_fresh.on_click(lambda _: self._use_fresh_cms())

    def _cms_view(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            self.cms_input,
            self.cms_run,
            self.cms_checkpoint,
            pn.Row(self.cms_load, self.cms_fresh),
            self.cms_error,
            self.cms_status,
            width=300,
        )
        right = pn.Column(
            self.cms_source_note,
            self.cms_look,
            self.cms_rows_title,
            self.cms_html,
            pn.pane.Bokeh(self.cms_fig),
            self.cms_plot_note,
        )
        return pn.Row(controls, right)

    def _on_cms_shown(self) -> None:
        if not self._cms_loaded:
            self._cms_loaded = True
            self._update_cms()

    def _update_cms(self) -> None:
        if not self._cms_loaded:
            return  # not shown yet: computed when the tab opens
        self._guarded(self._recompute_cms, self.cms_error, self.cms_status)

    def _load_hope(self) -> None:
        def action() -> None:
            self.hope_checkpoint = load_hope_checkpoint(self.cms_checkpoint.value)
            self._cms_loaded = True
            self._recompute_cms()

        self._guarded(action, self.cms_error, self.cms_status)

    def _use_fresh_cms(self) -> None:
        self.hope_checkpoint = None
        self._cms_loaded = True
        self._update_cms()

    def _recompute_cms(self) -> None:
        start = time.perf_counter()
        self._cms_signals = hope_cms_signals(self.hope_checkpoint, self.cms_input.value)
        self._cms_ms = 1000 * (time.perf_counter() - start)
        self._draw_cms()

    def _draw_cms(self) -> None:
        """The rows, the plot and the notes, in the current language (no recomputation)."""
        t = lambda key, **kw: cms_text(self.lang, key, **kw)  # noqa: E731
        signals = self._cms_signals
        if signals is None:
            return
        chunks = ", ".join(str(c) for c in signals.chunks)
        if self.hope_checkpoint is None:
            self.cms_source_note.object = t("cms_source_fresh", chunks=chunks, dim=ct.TEXT_DIM)
            self.cms_source_note.alert_type = "warning"
        else:
            self.cms_source_note.object = t(
                "cms_source_model", path=self.hope_checkpoint.path,
                layer=self.hope_checkpoint.layer, chunks=chunks,
            )
            self.cms_source_note.alert_type = "success"
        levels = range(len(signals.chunks))
        rgb = [_LEVEL_RGB[level % len(_LEVEL_RGB)] for level in levels]
        hexes = ["#{:02x}{:02x}{:02x}".format(*c) for c in rgb]
        self.cms_html.object = cm.cms_html(
            signals, rgb, label=CMS_TEXTS[self.lang]["cms_row"], tip=CMS_TEXTS[self.lang]["cms_tip"]
        )
        T = signals.drift.shape[1]
        bytes_read = list(range(1, T + 1))  # the drift after byte t is plotted at t + 1
        self.cms_sources["drift"].data = {
            "xs": [bytes_read for _ in levels],
            "ys": [signals.drift[level].tolist() for level in levels],
            "label": [t("cms_legend", level=level + 1, chunk=signals.chunks[level])
                      for level in levels],
            "colour": hexes,
        }
        writes: dict[str, list] = {key: [] for key in ("x", "y", "level", "chunk", "write", "colour")}
        for level in levels:
            for i in signals.writes[level].nonzero()[0]:
                writes["x"].append(int(i) + 1)
                writes["y"].append(float(signals.drift[level, i]))
                writes["level"].append(level + 1)
                writes["chunk"].append(signals.chunks[level])
                writes["write"].append(float(signals.writes[level, i]))
                writes["colour"].append(hexes[level])
        self.cms_sources["writes"].data = writes
        self.cms_status.object = t(
            "cms_status", count=len(signals.data), levels=len(signals.chunks), ms=self._cms_ms
        )

    def _apply_cms_language(self) -> None:
        t = lambda key: cms_text(self.lang, key)  # noqa: E731
        self.cms_input.name = t("cms_text_input")
        self.cms_run.name = t("cms_run")
        self.cms_checkpoint.name = t("cms_checkpoint")
        self.cms_load.name = t("cms_load")
        self.cms_fresh.name = t("cms_fresh")
        self.cms_look.object = t("cms_look")
        self.cms_rows_title.object = t("cms_rows_title")
        self.cms_fig.title.text = t("cms_plot_title")
        self.cms_fig.xaxis.axis_label = t("cms_axis_bytes")
        self.cms_fig.yaxis.axis_label = t("cms_axis_drift")
        self.cms_plot_note.object = t("cms_plot_note")
        self.cms_hover.tooltips = [
            (t("cms_hover_level"), "@level (C = @chunk)"),
            (t("cms_hover_bytes"), "@x"),
            (t("cms_hover_drift"), "@y{0.000}"),
            (t("cms_hover_write"), "@write{0.000}"),
        ]
        self._draw_cms()

