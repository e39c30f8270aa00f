"""Stopping replies: one rule, kept by the engine, used by every adapter.

Every turn the engine has accepted is tracked from the moment it is accepted until it ends,
queued or running, with who asked for it. ``stop`` in a place stops the replies there that the
person asked for; a moderator of the place stops them all (:func:`may_stop`). A running reply
ends at once with its text kept, marked stopped; a queued one never starts and says it was
stopped. The answer counts them.

The place of a ``stop`` is the session key it was given in: a thread (or a reply chain) covers
that conversation only; a channel or room without a thread covers every conversation in it,
its threads and reply chains included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from bot.conversation.permissions import may_stop, place_kind
from bot.turn import Author, SessionKey

__all__ = ["ActiveTurn", "ActiveTurns", "StopReport"]

Stopper = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class ActiveTurn:
    """One accepted turn, queued or running.

    Attributes:
        key: Its conversation.
        asker_id: Who asked for the reply.
        stop_requested: Set when someone stopped it; a queued turn waits on it too.
    """

    key: SessionKey
    asker_id: str
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _stopper: Stopper | None = None

    async def on_stop(self, stopper: Stopper) -> None:
        """The turn is generating: ``stopper`` ends it. Called at once if already stopped."""
        self._stopper = stopper
        if self.stop_requested.is_set():
            await stopper()

    async def stop(self) -> bool:
        """Stop it; ``False`` when it was already being stopped."""
        if self.stop_requested.is_set():
            return False
        self.stop_requested.set()
        if self._stopper is not None:
            await self._stopper()
        return True


@dataclass(frozen=True, slots=True)
class StopReport:
    """What a ``stop`` did.

    Attributes:
        stopped: Replies stopped (running or queued).
        refused: Replies in the place that the person could not stop (someone else's).
    """

    stopped: int
    refused: int


def covers(place: SessionKey, key: SessionKey) -> bool:
    """Whether a ``stop`` given at ``place`` reaches the conversation ``key``."""
    if (place.platform, place.room) != (key.platform, key.room):
        return False
    return place.thread is None or place.thread == key.thread


class ActiveTurns:
    """The turns the engine is answering or about to answer."""

    def __init__(self) -> None:
        self._turns: list[ActiveTurn] = []

    @contextlib.contextmanager
    def track(self, key: SessionKey, asker_id: str) -> Iterator[ActiveTurn]:
        """Track one turn for as long as the ``with`` block runs."""
        turn = ActiveTurn(key, asker_id)
        self._turns.append(turn)
        try:
            yield turn
        finally:
            self._turns.remove(turn)

    def in_place(self, place: SessionKey) -> list[ActiveTurn]:
        """The turns a ``stop`` at ``place`` reaches, oldest first."""
        return [t for t in self._turns if covers(place, t.key)]

    async def stop(self, place: SessionKey, by: Author) -> StopReport:
        """Stop the replies at ``place`` that ``by`` may stop (see the module's rule)."""
        kind = place_kind(place)
        stopped = refused = 0
        for turn in self.in_place(place):
            if turn.stop_requested.is_set():
                continue
            if not may_stop(by, turn.asker_id, kind):
                refused += 1
                continue
            stopped += await turn.stop()
        return StopReport(stopped, refused)

    async def stop_all(self, key: SessionKey) -> int:
        """Stop every reply of exactly ``key`` (the terminal's owner, a reset)."""
        stopped = 0
        for turn in [t for t in self._turns if t.key == key]:
            stopped += await turn.stop()
        return stopped
