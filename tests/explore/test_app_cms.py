"""The CMS tab's wiring, without a browser: text in, the plotted drift and writes out.

Each test builds one :class:`Explorer` and drives the tab's widgets as the page would; its data
sources and coloured rows must then hold what :mod:`~titans_memory.explore.cms_text` computes.
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

from titans_memory.core.hope import HopeConfig  # noqa: E402
from titans_memory.explore import cms_text as cm  # noqa: E402
from titans_memory.explore.app import CMS_SOURCES, Explorer  # noqa: E402
from titans_memory.explore.tab_cms import CMS_TEXTS  # noqa: E402
from titans_memory.models import ModelConfig, TitansLM  # noqa: E402
from titans_memory.training.checkpoint import save_model_files  # noqa: E402

TEXT = "abcabc abcabc: the slow level keeps it. Việt"


@pytest.fixture
def explorer() -> Explorer:
    return Explorer("en")


def _open(explorer: Explorer) -> None:
    explorer.section.value = "cms"


def _span_values(markup: str) -> list[float]:
    return [float(v) for v in re.findall(r'data-value="([^"]+)"', markup)]


def _assert_shows(explorer: Explorer, want: cm.CMSSignals) -> None:
    """The plot's lines, its write dots and the coloured rows all hold ``want``'s numbers."""
    levels, T = want.drift.shape
    drift = explorer.cms_sources["drift"].data
    assert len(drift["ys"]) == levels
    for level in range(levels):
        np.testing.assert_array_equal(drift["xs"][level], np.arange(1, T + 1))
        np.testing.assert_array_equal(drift["ys"][level], want.drift[level])
    writes = explorer.cms_sources["writes"].data
    for level, C in enumerate(want.chunks):
        mine = np.array(writes["level"]) == level + 1
        x = np.array(writes["x"])[mine]
        np.testing.assert_array_equal(x, np.arange(C, T + 1, C))  # every C_l bytes, no other
        np.testing.assert_array_equal(np.array(writes["y"])[mine], want.drift[level, x - 1])
        np.testing.assert_array_equal(np.array(writes["write"])[mine], want.writes[level, x - 1])
        np.testing.assert_array_equal(np.array(writes["chunk"])[mine], np.full(len(x), C))
    assert _span_values(explorer.cms_html.object) == want.drift.ravel().tolist()
    assert explorer.cms_html.object.count('class="cms-level"') == levels


def test_the_tab_computes_when_first_shown(explorer):
    assert explorer._cms_signals is None  # nothing computed while the tab is hidden
    explorer.cms_input.value = TEXT  # typing in a hidden tab computes nothing either
    assert explorer._cms_signals is None
    _open(explorer)
    assert explorer.sections["cms"].visible
    assert not explorer.sections["text"].visible and not explorer.sections["playground"].visible
    assert not explorer.cms_error.visible
    _assert_shows(explorer, cm.cms_signals(TEXT))
    assert explorer.cms_sources["drift"].name == CMS_SOURCES["drift"]
    assert explorer.cms_sources["writes"].name == CMS_SOURCES["writes"]
    assert "A fresh, untrained CMS" in explorer.cms_source_note.object
    assert "4, 16, 64" in explorer.cms_source_note.object
    assert explorer.cms_status.object.startswith(f"{len(TEXT.encode())} bytes, 3 levels")


def test_changing_the_text_recomputes(explorer):
    _open(explorer)
    before = [list(ys) for ys in explorer.cms_sources["drift"].data["ys"]]
    explorer.cms_input.value = TEXT
    want = cm.cms_signals(TEXT)
    _assert_shows(explorer, want)
    assert [list(ys) for ys in explorer.cms_sources["drift"].data["ys"]] != before
    # the staircase: a level's drift changes only at the bytes after which it wrote
    for level in range(3):
        moved = np.diff(want.drift[level]) != 0
        wrote = want.writes[level, 1:] > 0
        np.testing.assert_array_equal(moved, wrote)
    # the fast level wrote 11 times on 44 bytes, the slowest not yet
    assert [int((w > 0).sum()) for w in want.writes] == [11, 2, 0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("   ", "the text is empty"), ("é" * 400, "the text is 800 bytes")],
)
def test_bad_text_is_a_message_and_the_plot_stays(explorer, text, fragment):
    _open(explorer)
    before = dict(explorer.cms_sources["drift"].data)
    explorer.cms_input.value = text
    assert explorer.cms_error.visible and fragment in explorer.cms_error.object
    assert explorer.cms_sources["drift"].data["ys"] == before["ys"]
    explorer.cms_input.value = "ok"
    assert not explorer.cms_error.visible


def test_the_tab_in_both_languages(explorer):
    assert set(CMS_TEXTS["en"]) == set(CMS_TEXTS["vi"])
    assert CMS_TEXTS["en"]["tab_cms"] in explorer.section.options
    _open(explorer)
    explorer.cms_input.value = ""  # an error on screen, said again in the new language
    explorer.language.value = "Tiếng Việt"
    vi = CMS_TEXTS["vi"]
    assert explorer.section.options[vi["tab_cms"]] == "cms" and explorer.section.value == "cms"
    assert explorer.cms_input.name == vi["cms_text_input"]
    assert explorer.cms_load.name == vi["cms_load"]
    assert explorer.cms_fig.title.text == vi["cms_plot_title"]
    assert explorer.cms_fig.xaxis.axis_label == vi["cms_axis_bytes"]
    assert explorer.cms_look.object == vi["cms_look"]
    assert "văn bản đang trống" in explorer.cms_error.object
    explorer.cms_input.value = TEXT
    assert "Một CMS mới, chưa huấn luyện" in explorer.cms_source_note.object
    assert explorer.cms_sources["drift"].data["label"][2] == "mức 3 (C = 64)"
    assert "<b>mức 1, C = 4</b>" in explorer.cms_html.object
    assert 'title="byte 3: độ trôi ' in explorer.cms_html.object
    assert explorer.cms_hover.tooltips[2] == ("độ trôi", "@y{0.000}")
    explorer.language.value = "English"
    assert explorer.cms_sources["drift"].data["label"][2] == "level 3 (C = 64)"
    assert "<b>level 1, C = 4</b>" in explorer.cms_html.object
    assert 'title="byte 3: drift ' in explorer.cms_html.object
    assert explorer.cms_hover.tooltips[2] == ("drift", "@y{0.000}")
    _assert_shows(explorer, cm.cms_signals(TEXT))  # a language switch recomputes nothing new


# --- a HOPE checkpoint ------------------------------------------------------------------------


def _save(folder, arch: str) -> TitansLM:
    torch.manual_seed(0)
    hope = HopeConfig(chunk_size=4, cms_chunks=(2, 8)) if arch == "hope" else None
    config = ModelConfig(arch=arch, vocab_size=256, dim=16, heads=2, depth=2, hope=hope)
    model = TitansLM(config)
    save_model_files(folder, config, model.state_dict())
    return model.eval()


def test_a_hope_checkpoint_shows_its_first_blocks_cms(explorer, tmp_path):
    model = _save(tmp_path / "hope", "hope")
    explorer.cms_checkpoint.value = str(tmp_path / "hope")
    explorer.cms_load.clicks += 1  # loading computes, even before the tab was opened
    assert not explorer.cms_error.visible
    ids = torch.tensor([list(TEXT.encode())])
    explorer.cms_input.value = TEXT
    want = cm.cms_signals(TEXT, *cm.lm_cms_inputs(model, ids))
    assert want.chunks == (2, 8)
    _assert_shows(explorer, want)
    assert "Trained HOPE checkpoint" in explorer.cms_source_note.object
    assert "(layer 0)" in explorer.cms_source_note.object
    assert not np.allclose(want.drift, cm.cms_signals(TEXT, cm.fresh_cms((2, 8))).drift)
    explorer.cms_fresh.clicks += 1
    _assert_shows(explorer, cm.cms_signals(TEXT))
    assert "A fresh, untrained CMS" in explorer.cms_source_note.object


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [(None, "is not a directory"), ("swa", "holds a SWA model: this view needs a HOPE model")],
)
def test_a_checkpoint_that_is_not_hope_is_a_message(explorer, tmp_path, arch, fragment):
    _open(explorer)
    before = explorer.cms_html.object
    if arch is not None:
        _save(tmp_path / "ckpt", arch)
    explorer.cms_checkpoint.value = str(tmp_path / "ckpt")
    explorer.cms_load.clicks += 1
    assert explorer.cms_error.visible and fragment in explorer.cms_error.object
    assert explorer.cms_html.object == before and explorer.hope_checkpoint is None


def test_a_hope_checkpoint_with_another_tokenizer_is_a_message(explorer, tmp_path, monkeypatch):
    from titans_memory.training import checkpoint

    model = _save(tmp_path / "hope", "hope")
    # a HOPE model trained on GPT-2 tokens: the page would feed it bytes as token ids
    monkeypatch.setattr(checkpoint, "load_model", lambda folder: (model, folder, "gpt2"))
    explorer.cms_checkpoint.value = str(tmp_path / "hope")
    explorer.cms_load.clicks += 1
    assert explorer.cms_error.visible and "reads tokens of 'gpt2'" in explorer.cms_error.object
    assert explorer.hope_checkpoint is None


def test_the_text_tab_sends_a_hope_checkpoint_to_this_tab(tmp_path):
    # the text tab shows one NeuralMemory; HOPE's memories are not one, and it says where to look
    from titans_memory.explore.core_text import ExploreInputError, load_checkpoint

    _save(tmp_path / "hope", "hope")
    with pytest.raises(ExploreInputError, match=r"is a HOPE model: its memories are shown on the CMS levels tab") as err:
        load_checkpoint(tmp_path / "hope")
    assert err.value.code == "err_ckpt_hope"
