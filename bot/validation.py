"""Checking what a user typed before it reaches the model.

Input is cleaned first (control characters, zero-width spaces and lone surrogates removed),
then rejected if nothing is left or if it is too long. Text is otherwise passed on as written:
the zero-width joiner and non-joiner stay (emoji sequences such as 👩‍👩‍👧 and Persian need
them), and so do bidirectional controls, which the model may need to read the text right.
Where the bot echoes user text back into a platform message (names, commands, quotes),
:func:`neutralise_bidi` removes the bidirectional overrides, so that they cannot reorder the
bot's own words around them. Callers get
:class:`bot.errors.InputRejected` with one line fit to show the user, never a pydantic error.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from bot.errors import InputRejected

__all__ = [
    "DEFAULT_MAX_CHARS",
    "ChatInput",
    "clean_text",
    "neutralise_bidi",
    "validate_input",
    "validate_system_prompt",
]

DEFAULT_MAX_CHARS = 4096

# C0 controls except \t and \n, DEL, C1 controls, the zero-width space, word joiner and BOM.
# The zero-width non-joiner and joiner (U+200C, U+200D) are kept: they are part of the text
# (emoji sequences, Persian and Indic scripts). \r is removed too: Windows line endings become
# plain newlines. Lone surrogates (a JSON "\ud800" escape decodes to one) are no characters at
# all and cannot be encoded as UTF-8: left in, they would fail the first write to the database
# or a socket.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff\ud800-\udfff]")

# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def neutralise_bidi(text: str) -> str:
    """``text`` without bidirectional embeddings, overrides and isolates.

    For user text the bot echoes into its own platform messages (a quoted prompt, a name, a
    command): an unterminated right-to-left override there would reverse the bot's words that
    follow it. What goes to the model keeps them.
    """
    return _BIDI_CONTROLS.sub("", text)


def clean_text(text: str) -> str:
    """Remove control characters (except newline and tab), zero-width spaces, lone surrogates.

    Args:
        text: Raw user text.

    Returns:
        The text without invisible characters; ``\\r\\n`` becomes ``\\n``.
    """
    return _INVISIBLE.sub("", text.replace("\r\n", "\n"))


def _too_long_message(what: str, length: int, limit: int) -> str:
    return f"{what} is {length:,} characters; the limit is {limit:,}."


class ChatInput(BaseModel):
    """A user's message (and optional system prompt), cleaned and checked.

    The length limit is ``max_chars`` in the validation context, else the class's
    ``max_chars`` (4096). ``ChatInput.with_limit(n)`` makes a subclass with another default.

    Raises:
        pydantic.ValidationError: On direct construction. Use :func:`validate_input` or
            :meth:`parse` to get :class:`bot.errors.InputRejected` instead.
    """

    model_config = ConfigDict(frozen=True)

    max_chars: ClassVar[int] = DEFAULT_MAX_CHARS

    message: str
    system_prompt: str | None = None

    @classmethod
    def with_limit(cls, max_chars: int) -> type[ChatInput]:
        """A ``ChatInput`` class whose messages may be at most ``max_chars`` long."""
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        return type(f"ChatInput{max_chars}", (cls,), {"max_chars": max_chars})

    @classmethod
    def parse(cls, message: str, system_prompt: str | None = None) -> ChatInput:
        """Validate, translating pydantic's error into :class:`InputRejected`.

        Raises:
            InputRejected: The message or system prompt is empty or too long.
        """
        try:
            return cls.model_validate({"message": message, "system_prompt": system_prompt})
        except ValidationError as err:
            raise _rejected(err) from err

    @classmethod
    def _limit(cls, info: ValidationInfo) -> int:
        context: Any = info.context
        if isinstance(context, dict) and isinstance(context.get("max_chars"), int):
            return int(context["max_chars"])
        return cls.max_chars

    @field_validator("message")
    @classmethod
    def _check_message(cls, value: str, info: ValidationInfo) -> str:
        value = clean_text(value)
        if not value.strip():
            raise ValueError("Your message is empty.")
        limit = cls._limit(info)
        if len(value) > limit:
            raise ValueError(_too_long_message("Your message", len(value), limit))
        return value

    @field_validator("system_prompt")
    @classmethod
    def _check_system_prompt(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = clean_text(value)
        if not value.strip():
            # An empty system prompt means "none", not an error: it is how users clear it.
            return None
        limit = cls._limit(info)
        if len(value) > limit:
            raise ValueError(_too_long_message("The system prompt", len(value), limit))
        return value


def _rejected(err: ValidationError) -> InputRejected:
    """The first error's own message, without pydantic's "Value error, " prefix and location."""
    errors = err.errors(include_url=False)
    first = errors[0] if errors else None
    if first is not None and first.get("type") == "value_error":
        ctx = first.get("ctx") or {}
        cause = ctx.get("error")
        text = str(cause) if cause is not None else str(first.get("msg", ""))
    elif first is not None and first.get("type") == "string_type":
        text = "The message must be text."
    else:
        text = "Your message could not be read."
    return InputRejected(text, detail=str(err))


def validate_input(text: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Clean and check one user message.

    Args:
        text: What the user typed.
        max_chars: The longest message accepted, counted after cleaning.

    Returns:
        The cleaned message.

    Raises:
        InputRejected: The message is empty (after cleaning) or longer than ``max_chars``, e.g.
            "Your message is 5,123 characters; the limit is 4,096."
    """
    try:
        checked = ChatInput.model_validate({"message": text}, context={"max_chars": max_chars})
    except ValidationError as err:
        raise _rejected(err) from err
    return checked.message


def validate_system_prompt(text: str | None, *, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Clean and check a system prompt; blank means "no system prompt".

    Raises:
        InputRejected: The prompt is longer than ``max_chars`` after cleaning.
    """
    if text is None:
        return None
    try:
        checked = ChatInput.model_validate(
            {"message": "-", "system_prompt": text}, context={"max_chars": max_chars}
        )
    except ValidationError as err:
        raise _rejected(err) from err
    return checked.system_prompt
