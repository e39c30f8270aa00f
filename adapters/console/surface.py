"""Showing one streamed reply in a terminal.

A terminal cannot edit what it already printed (not through a pipe, at least), so an "edit" here
prints only what is new: the part of the text beyond what is already on screen. The message limit
is effectively unlimited and the pacer never waits, because a terminal has no rate limit.
"""

from __future__ import annotations

from itertools import count
from typing import TextIO

from bot.reply.streamer import ReplyStatus
from bot.types import Outcome

__all__ = ["CONSOLE_MAX_CHARS", "ConsoleSurface", "ImmediatePacer"]

# Large enough that a reply never needs a continuation message, small enough to stay a sane
# bound on one message's memory.
CONSOLE_MAX_CHARS = 1_000_000


class ImmediatePacer:
    """A pacer that never waits: a terminal accepts every write at once."""

    async def acquire(self) -> None:
        """Grant the operation at once."""

    def penalize(self, retry_after: float) -> None:
        """Nothing to do: a terminal never refuses a write."""


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _stable_part(text: str) -> str:
    """The text minus a trailing unfinished line that starts with a backtick.

    While a reply is inside a code block, the streamer may close the fence provisionally so that
    platforms render it; that closing line disappears with the next edit. Holding back a
    trailing fence line until something follows it keeps it from being printed twice.
    """
    head, sep, last = text.rpartition("\n")
    if sep and last.startswith("`"):
        return head + sep
    return text


class ConsoleSurface:
    """A :class:`bot.reply.streamer.ReplySurface` that writes to a text stream.

    Args:
        out: Where to write (standard output in the terminal chat).
        max_chars: The longest message accepted.
    """

    def __init__(self, out: TextIO, *, max_chars: int = CONSOLE_MAX_CHARS) -> None:
        self._out = out
        self._max_chars = max_chars
        self._pacer = ImmediatePacer()
        self._ids = count(1)
        self._shown: dict[str, str] = {}
        self._final: dict[str, str] = {}
        self._wrote_anything = False

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def pacer(self) -> ImmediatePacer:
        return self._pacer

    @property
    def wrote_anything(self) -> bool:
        """Whether any reply text reached the terminal."""
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
        self._final[message_id] = text
        shown = self._shown.get(message_id, "")
        target = _stable_part(text)
        common = _common_prefix_length(shown, target)
        if common < len(shown):
            # The text changed behind the cursor: a terminal cannot take it back, so the
            # changed part is printed again on a fresh line rather than garbled.
            self._write("\n")
        self._write(target[common:])
        self._shown[message_id] = target

    def flush_pending(self) -> None:
        """Print whatever was held back (a trailing fence line) once the reply is over."""
        for message_id, text in self._final.items():
            shown = self._shown.get(message_id, "")
            if text != shown and text.startswith(shown):
                self._write(text[len(shown) :])
                self._shown[message_id] = text

    def render_status(self, status: ReplyStatus) -> str:
        """A one-line footer: model and speed, or how the reply ended."""
        parts: list[str] = []
        if status.model:
            parts.append(status.model)
        if status.outcome is Outcome.COMPLETE:
            if status.tokens_per_second is not None:
                parts.append(f"{status.tokens_per_second:.1f} tokens/s")
        elif status.outcome is Outcome.LENGTH:
            parts.append("cut at the length limit")
        elif status.outcome is Outcome.STOPPED:
            parts.append("stopped")
        elif status.outcome is Outcome.INTERRUPTED:
            parts.append(f"interrupted: {status.error}" if status.error else "interrupted")
        else:
            parts.append(f"error: {status.error}" if status.error else "error")
        return f"[{' · '.join(parts)}]" if parts else ""

    async def typing(self) -> None:
        """Nothing to show: the prompt stays quiet until the first token."""

    def _write(self, text: str) -> None:
        if not text:
            return
        self._wrote_anything = True
        self._out.write(text)
        self._out.flush()
