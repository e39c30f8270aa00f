"""Composing the prompt from a message and its attachments."""

from __future__ import annotations

from bot.conversation.attachments import compose_prompt
from bot.turn import Attachment
from bot.types import ModelInfo

TEXT_MODEL = ModelInfo(name="llama3.2", capabilities=frozenset({"completion"}))
VISION_MODEL = ModelInfo(name="llava", capabilities=frozenset({"completion", "vision"}))
PNG = Attachment("cat.png", "image/png", b"\x89PNG")


def test_a_vision_model_gets_the_image_and_no_note() -> None:
    composed = compose_prompt("look", [PNG], VISION_MODEL, max_chars=100)
    assert composed.images == (b"\x89PNG",)
    assert composed.notes == ()
    assert composed.text == "look"


def test_a_text_model_gets_a_note_instead_of_the_image() -> None:
    composed = compose_prompt("look", [PNG], TEXT_MODEL, max_chars=100)
    assert composed.images == ()
    assert "cannot see images" in composed.notes[0]


def test_invalid_utf8_is_read_with_replacement_characters_not_a_crash() -> None:
    bad = Attachment("log.txt", "text/plain", b"ok \xff\xfe end")
    composed = compose_prompt("see", [bad], TEXT_MODEL, max_chars=100)
    assert "ok \ufffd\ufffd end" in composed.text


def test_binary_files_are_left_out_with_a_note() -> None:
    blob = Attachment("a.bin", "application/octet-stream", b"\x00\x01")
    composed = compose_prompt("see", [blob], TEXT_MODEL, max_chars=100)
    assert composed.text == "see"
    assert composed.notes == ("`a.bin` is not a text file; it was left out.",)
