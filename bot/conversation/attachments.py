"""Turning a message and its attachments into the prompt the model sees.

Text files are inlined (within one shared character budget), images go to vision models, and
everything left out is explained in a note for the user. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.turn import Attachment
from bot.types import ModelInfo


@dataclass(frozen=True, slots=True)
class ComposedPrompt:
    """The prompt text, the images for the model, and notes about what was left out."""

    text: str
    images: tuple[bytes, ...] = ()
    notes: tuple[str, ...] = field(default=())


def compose_prompt(
    text: str, attachments: Sequence[Attachment], model: ModelInfo, *, max_chars: int
) -> ComposedPrompt:
    """Inline text attachments after ``text``; keep images only for a vision model.

    Args:
        text: The user's (already validated) message.
        attachments: The files that came with it, in order.
        model: The model that will answer (for its vision capability).
        max_chars: Characters of attached text allowed in all, shared by the files in order.
    """
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
        body = attachment.data.decode("utf-8", errors="replace")
        if len(body) > budget:
            body = body[:budget]
            notes.append(f"`{name}` is long; only its first {budget:,} characters were read.")
        budget -= len(body)
        parts.append(f"Attached file `{name}`:\n```\n{body}\n```")
    return ComposedPrompt("\n\n".join(parts), tuple(images), tuple(notes))
