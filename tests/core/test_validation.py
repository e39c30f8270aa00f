"""Input validation: cleaning, empty and over-long input, and the error users see."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.errors import InputRejected
from bot.validation import (
    ChatInput,
    clean_text,
    neutralise_bidi,
    validate_input,
    validate_system_prompt,
)


def test_control_and_zero_width_characters_are_stripped_but_newline_and_tab_kept() -> None:
    raw = "he\x00l\u200blo\u2060\ufeff\x07\n\tworld\x7f\x85"
    assert validate_input(raw) == "hello\n\tworld"


FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467"  # 👩‍👩‍👧: three people joined by ZWJ
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # می‌خواهم: needs the ZWNJ


def test_joiners_and_bidi_controls_are_passed_on_as_written() -> None:
    text = f"{FAMILY} {PERSIAN} \u202eevil\u202c \u2067isolated\u2069"
    assert validate_input(text) == text


def test_bidi_overrides_are_neutralised_only_for_echoes() -> None:
    assert neutralise_bidi(f"\u202eevil\u202c {FAMILY} \u2066x\u2069") == f"evil {FAMILY} x"


def test_windows_line_endings_become_newlines() -> None:
    assert clean_text("a\r\nb\rc") == "a\nbc"


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u200b\u200b", "\x00\x01 \ufeff"])
def test_empty_or_invisible_only_input_is_rejected(text: str) -> None:
    with pytest.raises(InputRejected, match="empty"):
        validate_input(text)


def test_over_long_input_is_rejected_with_a_readable_message() -> None:
    with pytest.raises(InputRejected) as info:
        validate_input("x" * 5123)
    assert str(info.value) == "Your message is 5,123 characters; the limit is 4,096."
    assert isinstance(info.value.__cause__, ValidationError)


def test_limit_is_configurable_and_counted_after_cleaning() -> None:
    assert validate_input("x" * 10 + "\u200b" * 50, max_chars=10) == "x" * 10
    with pytest.raises(InputRejected, match="11 characters; the limit is 10"):
        validate_input("x" * 11, max_chars=10)


def test_with_limit_makes_a_model_with_another_default() -> None:
    short = ChatInput.with_limit(5)
    assert short.parse("hello").message == "hello"
    with pytest.raises(InputRejected, match="the limit is 5"):
        short.parse("hello!")
    # The base class is untouched.
    assert ChatInput.parse("hello!").message == "hello!"


def test_direct_construction_raises_pydantic_error_and_parse_translates_it() -> None:
    with pytest.raises(ValidationError):
        ChatInput(message="  ")
    with pytest.raises(InputRejected, match="empty"):
        ChatInput.parse("  ")


def test_blank_system_prompt_means_none_and_is_cleaned() -> None:
    assert ChatInput.parse("hi", system_prompt="  \u200b ").system_prompt is None
    assert ChatInput.parse("hi", system_prompt="be\x00 nice").system_prompt == "be nice"


def test_over_long_system_prompt_is_rejected() -> None:
    with pytest.raises(InputRejected, match="The system prompt is 4,097 characters"):
        ChatInput.parse("hi", system_prompt="s" * 4097)


def test_non_text_message_is_rejected_clearly() -> None:
    with pytest.raises(InputRejected, match="must be text"):
        ChatInput.parse(123)  # type: ignore[arg-type]


def test_system_prompt_helper_cleans_blanks_and_limits() -> None:
    assert validate_system_prompt(None) is None
    assert validate_system_prompt(" \u200b ") is None
    assert validate_system_prompt("be\x00 kind") == "be kind"
    with pytest.raises(InputRejected, match="The system prompt is 11 characters; the limit is 10."):
        validate_system_prompt("s" * 11, max_chars=10)
