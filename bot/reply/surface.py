"""The port a platform implements to show a reply: a surface to send and edit messages on,
and the pacer that guards the destination's rate limit.

Adapters implement :class:`ReplySurface`; :class:`bot.reply.streamer.ReplyStreamer` drives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.types import Outcome

__all__ = ["Pacer", "ReplyStatus", "ReplySurface", "is_append_only"]


class Pacer(Protocol):
    """Grants permission to send one message or edit to a destination (a channel, a room).

    One pacer is shared by every reply going to the same destination, because the platform's
    budget is per destination. ``penalize`` is called when the platform answered 429.
    """

    async def acquire(self) -> None:
        """Wait until one more operation is allowed, then take it."""
        ...

    def penalize(self, retry_after: float) -> None:
        """The platform refused an operation; allow nothing for ``retry_after`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class ReplyStatus:
    """What the finished reply says about itself (rendered by the surface as a footer)."""

    outcome: Outcome
    model: str | None = None
    tokens_per_second: float | None = None
    error: str | None = None


class ReplySurface(Protocol):
    """Where one reply is shown. Adapters implement it.

    ``send`` and ``edit`` raise :class:`bot.errors.RateLimited` on a platform 429 (the streamer
    waits and retries with the newest text) and may raise other :class:`bot.errors.OllabotError`.
    """

    @property
    def max_chars(self) -> int:
        """The longest message body the platform accepts, footer included."""
        ...

    @property
    def pacer(self) -> Pacer: ...

    async def send(self, text: str) -> str:
        """Post a new message with ``text``; returns its id."""
        ...

    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of a message this surface sent."""
        ...

    def render_status(self, status: ReplyStatus) -> str:
        """The footer appended to the last message when the reply ends ("" for none)."""
        ...

    async def typing(self) -> None:
        """Show that the bot is working (called while waiting for the first token)."""
        ...


def is_append_only(surface: ReplySurface) -> bool:
    """Whether ``surface`` can only add to what it showed (it sets ``append_only = True``).

    A terminal prints a reply as it grows and cannot edit a line it printed. The streamer then
    gives it texts that only grow at their end while the reply streams: no provisional closing
    fence inside a code block (chat platforms need one, since they render each message on its
    own). The final text may still add a notice and the footer after the answer. The attribute
    is optional, so the platform surfaces need not declare it.
    """
    return getattr(surface, "append_only", False) is True
