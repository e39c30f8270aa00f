"""In-memory :class:`bot.reply.streamer.ReplySurface` fakes and a hand-driven pacer.

- :class:`FakeSurface` behaves like a platform channel: it enforces ``max_chars`` and refuses
  empty messages (as Discord does), can answer chosen calls with a 429 or another error, and
  records every send and edit so tests assert on what the user saw.
- :class:`NoopSurface` does nothing, as fast as possible: for measuring the engine's own overhead.
- :class:`GatePacer` grants operations only when the test says so, which makes coalescing
  deterministic without any timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Literal

from bot.errors import OllabotError, RateLimited
from bot.reply.pacing import IntervalPacer
from bot.reply.streamer import Pacer, ReplyStatus
from bot.types import Outcome

_WAIT_LIMIT = 5.0  # seconds; only reached when a test is already failing

__all__ = ["FakeSurface", "GatePacer", "NoopSurface", "SurfaceCall", "default_footer"]


@dataclass(frozen=True, slots=True)
class SurfaceCall:
    """One successful send or edit."""

    kind: Literal["send", "edit"]
    message_id: str
    text: str


def default_footer(status: ReplyStatus) -> str:
    """A footer like an adapter's: "-# model · outcome" plus the error when there is one."""
    parts = [status.model or "model", status.outcome.value]
    if status.outcome is not Outcome.COMPLETE and status.error:
        parts.append(status.error)
    return "-# " + " · ".join(parts)


class GatePacer:
    """A pacer that grants exactly as many operations as :meth:`grant` allows (FIFO).

    ``open()`` turns it into an unlimited pacer. Penalties are recorded, not waited for.
    """

    def __init__(self) -> None:
        self._grants = asyncio.Semaphore(0)
        self._open = False
        self.penalties: list[float] = []
        self.waiting = 0

    def grant(self, n: int = 1) -> None:
        """Allow ``n`` more operations."""
        for _ in range(n):
            self._grants.release()

    def open(self) -> None:
        """Allow everything from now on."""
        self._open = True
        self.grant(self.waiting)  # release those already waiting; later callers pass at once

    async def acquire(self) -> None:
        if self._open:
            return
        self.waiting += 1
        try:
            await self._grants.acquire()
        finally:
            self.waiting -= 1

    def penalize(self, retry_after: float) -> None:
        self.penalties.append(retry_after)


class FakeSurface:
    """A recording reply surface that fails the way platforms do.

    Args:
        max_chars: The platform's message limit; longer messages are refused (a test failure).
        pacer: The destination's pacer (default: no pacing but 429s).
        fail_with_429: Numbers of calls (0-based, sends and edits together, every attempt
            counted) answered with :class:`RateLimited`.
        retry_after: The ``retry_after`` of those 429s.
        errors: Calls (same numbering) answered with the given error instead.
        footer: Renders the status footer.
    """

    def __init__(
        self,
        max_chars: int = 2000,
        *,
        pacer: Pacer | None = None,
        fail_with_429: Iterable[int] = (),
        retry_after: float = 0.001,
        errors: Mapping[int, OllabotError] | None = None,
        footer: Callable[[ReplyStatus], str] = default_footer,
    ) -> None:
        self._max_chars = max_chars
        self._pacer: Pacer = pacer if pacer is not None else IntervalPacer(0.0)
        self._fail_with_429 = set(fail_with_429)
        self._retry_after = retry_after
        self._errors = dict(errors or {})
        self._footer = footer
        self._ids = count(1)
        self._calls = 0
        self._changed = asyncio.Condition()
        self.messages: dict[str, str] = {}
        self.calls: list[SurfaceCall] = []
        self.refused: list[str] = []
        self.typing_count = 0

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    @property
    def texts(self) -> list[str]:
        """The messages as the user sees them now, in order."""
        return list(self.messages.values())

    @property
    def edits(self) -> list[SurfaceCall]:
        return [c for c in self.calls if c.kind == "edit"]

    @property
    def sends(self) -> list[SurfaceCall]:
        return [c for c in self.calls if c.kind == "send"]

    async def send(self, text: str) -> str:
        self._attempt(text)
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = text
        await self._record(SurfaceCall("send", message_id, text))
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        if message_id not in self.messages:
            raise AssertionError(f"edit of unknown message {message_id}")
        self._attempt(text)
        self.messages[message_id] = text
        await self._record(SurfaceCall("edit", message_id, text))

    def render_status(self, status: ReplyStatus) -> str:
        return self._footer(status)

    async def typing(self) -> None:
        self.typing_count += 1

    async def wait_calls(self, n: int) -> None:
        """Wait (at most 5 s, then fail) until at least ``n`` sends and edits succeeded."""
        async with asyncio.timeout(_WAIT_LIMIT), self._changed:
            await self._changed.wait_for(lambda: len(self.calls) >= n)

    async def wait_for_text(self, fragment: str) -> None:
        """Wait (at most 5 s, then fail) until a message shows ``fragment``."""
        async with asyncio.timeout(_WAIT_LIMIT), self._changed:
            await self._changed.wait_for(lambda: any(fragment in t for t in self.texts))

    def _attempt(self, text: str) -> None:
        call = self._calls
        self._calls += 1
        if not text.strip() or len(text) > self._max_chars:
            self.refused.append(text)
            raise AssertionError(f"platform would refuse a message of {len(text)} characters")
        if call in self._fail_with_429:
            raise RateLimited(self._retry_after, detail=f"fake 429 on call {call}")
        if call in self._errors:
            raise self._errors[call]

    async def _record(self, call: SurfaceCall) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()


class _Unpaced:
    async def acquire(self) -> None:
        return None

    def penalize(self, retry_after: float) -> None:
        return None


class NoopSurface:
    """A surface that accepts everything instantly and keeps only counts (for benchmarks)."""

    def __init__(self, max_chars: int = 2000) -> None:
        self._max_chars = max_chars
        self._pacer = _Unpaced()
        self._ids = count(1)
        self.sends = 0
        self.edits = 0

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    async def send(self, text: str) -> str:
        self.sends += 1
        return str(next(self._ids))

    async def edit(self, message_id: str, text: str) -> None:
        self.edits += 1

    def render_status(self, status: ReplyStatus) -> str:
        return ""

    async def typing(self) -> None:
        return None
