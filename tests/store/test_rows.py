"""What both drivers store as JSON (:mod:`bot.store.rows`), at edges no store case reaches.

A reply's refs are written by this release as a JSON list, but a row may hold anything an older
release or a hand edit left: a crash report must still come back, without the refs.
"""

from __future__ import annotations

import logging

import pytest

from bot.store.rows import decode_refs, decode_value, encode_refs, encode_value


@pytest.mark.parametrize(
    ("encoded", "refs"),
    [
        (None, ()),
        ("", ()),
        ("[]", ()),
        ('["c1/m1", "c1/m2"]', ("c1/m1", "c1/m2")),
        ("[12, 13]", ("12", "13")),
        ('{"c1": "m1"}', ()),
        ('"c1/m1"', ()),
    ],
)
def test_stored_refs_read_back_as_a_tuple_of_strings_or_none(
    encoded: str | None, refs: tuple[str, ...]
) -> None:
    assert decode_refs(encoded) == refs


def test_unreadable_refs_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.store.rows"):
        assert decode_refs('["c1/m1", ') == ()
    assert "unreadable message refs ignored" in caplog.text


def test_refs_round_trip_and_none_keeps_the_stored_ones() -> None:
    assert encode_refs(None) is None
    assert decode_refs(encode_refs(("c1/m1", "c1/m2"))) == ("c1/m1", "c1/m2")
    assert encode_refs([]) == "[]"


def test_a_setting_of_none_is_cleared_and_others_round_trip() -> None:
    assert encode_value(None) is None
    assert decode_value(None) is None
    values: list[object] = [0, False, "", [], {"temperature": 0.2}, "llama3.2"]
    for value in values:
        encoded = encode_value(value)
        assert encoded is not None
        assert decode_value(encoded) == value


def test_a_setting_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_value({1, 2})
