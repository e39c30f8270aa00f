"""Turning a message and its attachments into the prompt the model sees.

Text files are inlined (within one shared character budget, and within the room the context
window leaves), images go to vision models, and everything left out is explained in a note for
the user. The message itself is never cut: one that cannot fit is refused. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.conversation.history import CHARS_PER_TOKEN
from bot.errors import InputRejected
from bot.turn import Attachment
from bot.types import ModelInfo


@dataclass(frozen=True, slots=True)
class ComposedPrompt:
    """The prompt text, the images for the model, and notes about what was left out."""

    text: str
    images: tuple[bytes, ...] = ()
    notes: tuple[str, ...] = field(default=())


def compose_prompt(
    text: str,
    attachments: Sequence[Attachment],
    model: ModelInfo,
    *,
    max_chars: int,
    room_chars: int | None = None,
    context_length: int | None = None,
) -> ComposedPrompt:
    """Inline text attachments after ``text``; keep images only for a vision model.

    Args:
        text: The user's (already validated) message.
        attachments: The files that came with it, in order.
        model: The model that will answer (for its vision capability).
        max_chars: Characters of attached text allowed in all, shared by the files in order.
        room_chars: The longest the whole prompt may be to fit the context window beside the
            system prompt and the room kept for the reply; ``None``: no such limit. Attached
            text is cut to fit it, with a note.
        context_length: The context window in tokens, named in the notes and the refusal.

    Raises:
        InputRejected: ``text`` alone is longer than ``room_chars``; the refusal states the
            limit.
    """
    window = f"{context_length:,}-token " if context_length else ""
    if room_chars is not None and len(text) > room_chars:
        raise InputRejected(
            f"This message is about {_tokens(len(text)):,} tokens, but the model's {window}"
            f"context window has room for {_tokens(room_chars):,} here (the rest holds the "
            "system prompt and the reply). Send a shorter message, or ask a moderator for a "
            "larger `context_length`."
        )
    room = None if room_chars is None else room_chars - len(text)
    parts = [text]
    images: list[bytes] = []
    notes: list[str] = []
    budget = max_chars
    for attachment in attachments:
        name = attachment.filename
        if attachment.is_image:
            if model.supports_vision:
                images.append(attachment.data)
            else:
                notes.append(
                    f"The model `{model.name}` cannot see images, so `{name}` was left out. "
                    "A moderator can pick a vision model with `model set`."
                )
            continue
        if not attachment.is_text:
            notes.append(f"`{name}` is not a text file; it was left out.")
            continue
        if budget == 0:
            notes.append(
                f"`{name}` was left out: the attachments before it already fill the "
                f"{max_chars:,}-character budget."
            )
            continue
        head = f"Attached file `{name}`:\n```\n"
        wrapping = len(_SEPARATOR) + len(head) + len(_TAIL)
        fits = None if room is None else room - wrapping
        if fits is not None and fits <= 0:
            notes.append(
                f"`{name}` was left out: the model's {window}context window has no room left "
                "for it."
            )
            continue
        body = attachment.data.decode("utf-8", errors="replace")
        if fits is not None and len(body) > fits and fits < budget:
            body = body[:fits]
            notes.append(
                f"`{name}` was cut to its first {fits:,} characters to fit the model's "
                f"{window}context window."
            )
        elif len(body) > budget:
            body = body[:budget]
            notes.append(f"`{name}` is long; only its first {budget:,} characters were read.")
        budget -= len(body)
        if room is not None:
            room -= wrapping + len(body)
        parts.append(f"{head}{body}{_TAIL}")
    return ComposedPrompt(_SEPARATOR.join(parts), tuple(images), tuple(notes))


_SEPARATOR = "\n\n"
_TAIL = "\n```"


def _tokens(chars: int) -> int:
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
