"""Showing one streamed reply in a terminal, as plain text.

A terminal cannot take back what it printed (not through a pipe, at least), so this surface is
``append_only``: the streamer then only ever hands it text that grows at its end (no provisional
closing fence while a code block is open), and an "edit" prints the part beyond what is already
shown. Standard output carries exactly the model's text; the status footer ("[llama3.2 · 12.3
tokens/s]", "[stopped]", an error) goes to standard error, so a script that reads the answer
gets the answer. The pacer never waits, because a terminal has no rate limit.
"""

from __future__ import annotations

from itertools import count
from typing import TextIO

from bot.reply.surface import ReplyStatus
from bot.types import Outcome

__all__ = [
    "CONSOLE_MAX_CHARS",
    "ConsoleSurface",
    "ImmediatePacer",
    "plain_footer",
    "without_footer",
]

# Large enough that a reply never needs a continuation message, small enough to stay a sane
# bound on one message's memory.
CONSOLE_MAX_CHARS = 1_000_000


class ImmediatePacer:
    """A pacer that never waits: a terminal accepts every write at once."""

    async def acquire(self) -> None:
        """Grant the operation at once."""

    def penalize(self, retry_after: float) -> None:
        """Nothing to do: a terminal never refuses a write."""


def plain_footer(status: ReplyStatus) -> str:
    """A one-line footer: model and speed, or how the reply ended."""
    parts: list[str] = []
    if status.model:
        parts.append(status.model)
    if status.outcome is Outcome.COMPLETE:
        if status.tokens_per_second is not None:
            parts.append(f"{status.tokens_per_second:.1f} tokens/s")
    elif status.outcome is Outcome.LENGTH:
        parts.append("cut at the length limit")
    elif status.error:
        parts.append(f"{status.outcome.value}: {status.error}")
    else:
        parts.append(status.outcome.value)
    return f"[{' · '.join(parts)}]" if parts else ""


def without_footer(text: str, footer: str) -> str:
    """The reply's text without the footer the streamer appended to its last message.

    The streamer appends ``"\\n" + footer``, or shows the footer alone when there is no text.
    """
    if not footer or not text.endswith(footer):
        return text
    return text[: -len(footer)].removesuffix("\n")


class ConsoleSurface:
    """A :class:`bot.reply.surface.ReplySurface` that prints to a text stream.

    Args:
        out: Where the reply's text goes (standard output).
        err: Where the footer goes (standard error).
        max_chars: The longest message accepted.
    """

    append_only = True
    """Tells the streamer to hand over text that only grows (see the module docstring)."""

    def __init__(
        self, out: TextIO, err: TextIO | None = None, *, max_chars: int = CONSOLE_MAX_CHARS
    ) -> None:
        self._out = out
        self._err = err
        self._max_chars = max_chars
        self._pacer = ImmediatePacer()
        self._ids = count(1)
        self._shown: dict[str, str] = {}
        self._footer = ""
        self._status: ReplyStatus | None = None
        self._wrote_anything = False

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def pacer(self) -> ImmediatePacer:
        return self._pacer

    @property
    def status(self) -> ReplyStatus | None:
        """How the reply ended, once the streamer said so."""
        return self._status

    @property
    def wrote_anything(self) -> bool:
        """Whether any reply text reached the stream."""
        return self._wrote_anything

    async def send(self, text: str) -> str:
        """Start a new message (a continuation starts on a new line)."""
        message_id = str(next(self._ids))
        if self._shown:
            self._write("\n")
        self._shown[message_id] = ""
        await self.edit(message_id, text)
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        """Print what ``text`` adds to what is already shown for this message."""
        text = without_footer(text, self._footer)
        shown = self._shown.get(message_id, "")
        if text.startswith(shown):
            self._write(text[len(shown) :])
        else:
            # Never expected from an append-only stream; a terminal cannot take text back,
            # so the new text is printed whole on a fresh line rather than garbled.
            self._write("\n" + text)
        self._shown[message_id] = text

    def render_status(self, status: ReplyStatus) -> str:
        """The footer, remembered so that the last edit's copy of it is not printed as text."""
        self._status = status
        self._footer = plain_footer(status)
        return self._footer

    async def typing(self) -> None:
        """Nothing to show: the prompt stays quiet until the first token."""

    def finish(self) -> None:
        """End the reply: a line break after its text, then the footer on ``err``."""
        if self._wrote_anything:
            self._write("\n")
        if self._footer and self._err is not None:
            self._err.write(self._footer + "\n")
            self._err.flush()

    def _write(self, text: str) -> None:
        if not text:
            return
        self._wrote_anything = True
        self._out.write(text)
        self._out.flush()
