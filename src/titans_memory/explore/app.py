"""The explorer's page (Panel and Bokeh) and its server.

This module holds the page's frame: the tabs, the language switch, the messages and the
server; each tab is one module (:mod:`~titans_memory.explore.tab_playground`,
:mod:`~titans_memory.explore.tab_text`, :mod:`~titans_memory.explore.tab_cms`). Every number the
page shows comes from :mod:`~titans_memory.explore.playground`,
:mod:`~titans_memory.explore.core_text` and :mod:`~titans_memory.explore.cms_text`, which know
nothing about the page.

Each plot's data lives in a named Bokeh ``ColumnDataSource`` (:data:`PLAYGROUND_SOURCES`,
:data:`TEXT_SOURCES`, :data:`CMS_SOURCES`), and each coloured character carries its value
(``data-value``), so that a browser test can read, from the page itself, the numbers that were
shown.

Run it with ``titans explore`` (see :func:`serve`).
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
import webbrowser
from collections.abc import Callable
from typing import Any

import panel as pn

from titans_memory.explore import core_text as ct
from titans_memory.explore.tab_cms import CMS_SOURCES, CMSTab, cms_text
from titans_memory.explore.tab_playground import PLAYGROUND_SOURCES, PlaygroundTab
from titans_memory.explore.tab_text import _DEFAULT_TEXT, TEXT_SOURCES, TextTab
from titans_memory.explore.texts import LANGUAGES, ExploreInputError, text

__all__ = ["CMS_SOURCES", "PLAYGROUND_SOURCES", "TEXT_SOURCES", "Explorer", "create_page", "free_port", "serve"]

log = logging.getLogger(__name__)


class Explorer(PlaygroundTab, TextTab, CMSTab):
    """One browser session's page: the three tabs (their mixins), the language switch, the messages.

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
        self._build_cms_section()
        # Tabs as a button group: Panel's Tabs keep a tab's first title, and the titles have to
        # follow the language switch.
        self.section = pn.widgets.RadioButtonGroup(options={}, value="playground")
        self.sections = {
            "playground": self._playground_view(),
            "text": self._text_view(),
            "cms": self._cms_view(),
        }
        self.section.param.watch(self._on_section, "value")
        self._apply_language()
        self._on_section(None)
        self._load_scenario("full_pipeline")

    # --- messages ------------------------------------------------------------------------------
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
        for error in (self.error, self.text_error, self.cms_error):
            message = self._messages.get(id(error))
            if error.visible and message is not None:
                error.object = f"**{text(self.lang, 'error_prefix')}:** {message(self.lang)}"

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
        self.section.options = {
            t("tab_playground"): "playground",
            t("tab_text"): "text",
            cms_text(self.lang, "tab_cms"): "cms",
        }
        self._apply_text_language()
        self._apply_cms_language()
        self._apply_playground_language()

    # --- the tabs ------------------------------------------------------------------------------
    def _on_section(self, _event: Any) -> None:
        for key, view in self.sections.items():
            view.visible = key == self.section.value
        if self.section.value == "text" and not self._text_loaded:
            self._use_preset()
        if self.section.value == "cms":
            self._on_cms_shown()

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
