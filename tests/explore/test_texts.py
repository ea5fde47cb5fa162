"""The page's two languages: same keys, same placeholders, errors in both."""

from __future__ import annotations

import string

import pytest

from titans_memory.explore.texts import LANGUAGES, TEXTS, ExploreInputError, text


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_every_key():
    assert set(TEXTS) == set(LANGUAGES) == {"en", "vi"}
    assert set(TEXTS["en"]) == set(TEXTS["vi"])


@pytest.mark.parametrize("key", sorted(TEXTS["en"]))
def test_each_key_is_translated_with_the_same_placeholders(key):
    en, vi = TEXTS["en"][key], TEXTS["vi"][key]
    assert en.strip() and vi.strip()
    assert _fields(en) == _fields(vi), key


def test_text_formats_and_checks():
    assert text("en", "status_ok", steps=60, ms=12.4) == "60 steps, computed in 12 ms."
    assert text("vi", "status_ok", steps=60, ms=12.4) == "60 bước, tính trong 12 ms."
    with pytest.raises(ValueError, match="lang must be one of en, vi"):
        text("fr", "title")
    with pytest.raises(KeyError):
        text("en", "no_such_key")


def test_input_error_in_both_languages():
    err = ExploreInputError("err_anomaly_step", t=70, last=59)
    assert isinstance(err, ValueError)
    assert str(err) == "anomaly at t=70: the sequence has timesteps 0 to 59"
    assert err.message("vi") == "điểm bất thường tại t=70: chuỗi chỉ có các bước từ 0 đến 59"
    named = ExploreInputError("err_not_finite", what=("what_anomaly", {"t": 4}), value=float("inf"))
    assert str(named) == "anomaly at t=4: inf is not a finite number"
    assert named.message("vi").startswith("điểm bất thường tại t=4: inf")
