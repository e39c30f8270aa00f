"""Pacers: how often a destination (a Discord channel, a Matrix room) may get a send or an edit.

Every pacer implements :class:`bot.reply.streamer.Pacer`. One pacer is shared by all the replies
going to one destination (see :class:`PacerPool`), because the platform's budget is per destination.
Waiters are served first come, first served, so one long reply cannot starve another in the same
channel. A 429 (``penalize``) blocks the destination until ``retry_after`` and slows the pacer
down, so the same refusal does not come straight back.

Clock and sleep are injectable, so the arithmetic is tested without real waiting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from bot.reply.surface import Pacer

__all__ = [
    "Clock",
    "FirstPacer",
    "IntervalPacer",
    "LastPacer",
    "PacerPool",
    "Sleep",
    "TokenBucketPacer",
    "acquire_first",
    "acquire_last",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` in production)."""

Sleep = Callable[[float], Awaitable[None]]
"""Wait some seconds (``asyncio.sleep`` in production)."""

# Tokens are floats; a grant that is short of a whole token by rounding noise still counts.
_EPSILON = 1e-9


@runtime_checkable
class FirstPacer(Protocol):
    """A pacer that can let a first message go before the edits waiting for the destination."""

    async def acquire_first(self) -> None: ...


async def acquire_first(pacer: Pacer) -> None:
    """A grant for a first message: ahead of waiting edits when the pacer can do that."""
    if isinstance(pacer, FirstPacer):
        await pacer.acquire_first()
    else:
        await pacer.acquire()


@runtime_checkable
class LastPacer(Protocol):
    """A pacer that can let a reply's last operations borrow ahead of the refill."""

    async def acquire_last(self) -> None: ...


async def acquire_last(pacer: Pacer) -> None:
    """A grant for a reply's final operations: in turn, borrowing when the pacer can do that."""
    if isinstance(pacer, LastPacer):
        await pacer.acquire_last()
    else:
        await pacer.acquire()


class TokenBucketPacer:
    """A token bucket: ``burst`` operations at once, then ``rate`` per second.

    Examples: a Discord channel (about 5 per 5 s) is ``TokenBucketPacer(rate=1.0, burst=5)``;
    Synapse's default ``rc_message`` is ``TokenBucketPacer(rate=0.2, burst=10)``.

    Each 429 (not already inside a block) makes the bucket learn: the rate drops by a quarter
    (down to an eighth of the configured rate) and the burst by one (down to 1). After
    ``recover_after`` seconds without a 429 the configured values come back.

    Args:
        rate: Tokens added per second.
        burst: The most tokens the bucket holds (and starts with).
        recover_after: Seconds without a penalty after which learned slow-downs are forgotten.
        first_borrow: Tokens :meth:`acquire_first` may borrow ahead of the refill when the
            bucket is empty (the platform's window allows more than the smoothed burst: Discord
            about 5 per 5 s); the edits that follow wait until the debt is paid back. A 429 or
            headers saying nothing remains still block everything, and once headers told how
            many operations the window has left, no grant goes beyond them before its reset
            (operations granted together are sent before any answer can say so).
        clock: Monotonic time source.
        sleep: How to wait.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        recover_after: float = 300.0,
        first_borrow: int = 0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if first_borrow < 0:
            raise ValueError(f"first_borrow must not be negative (got {first_borrow})")
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1 (got {rate}, {burst})")
        self._configured = (rate, burst)
        self._rate = rate
        self._burst = burst
        self._recover_after = recover_after
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._blocked_until = -math.inf
        self._last_penalty = -math.inf
        self._reset_at: float | None = None
        self._reset_tokens = 0
        self._window_left = 0  # operations the platform's window has left (while _reset_at)
        # asyncio.Lock wakes waiters in arrival order, which makes the pacer FIFO-fair: only
        # the head waiter sleeps for the next token, the others queue behind it.
        self._lock = asyncio.Lock()
        self._first_lock = asyncio.Lock()  # first messages among themselves: FIFO too
        self._first_waiters = 0
        self._first_borrow = first_borrow
        self._no_first = asyncio.Event()
        self._no_first.set()
        self.penalties = 0

    @property
    def rate(self) -> float:
        """The current (possibly learned) rate, tokens per second."""
        return self._rate

    @property
    def burst(self) -> int:
        """The current (possibly learned) bucket size."""
        return self._burst

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill(self._clock())
        return self._tokens

    async def acquire(self) -> None:
        """Wait for a token (behind earlier waiters and any :meth:`acquire_first`), take it."""
        await self._take(borrow=0)

    async def acquire_last(self) -> None:
        """Like :meth:`acquire`, in turn, but borrowing like :meth:`acquire_first` when it is due.

        For a reply's final operations (the end of its text, its footer): nothing of that reply
        follows them, and when the channel is done they would otherwise wait, one a second,
        for tokens nobody else needs. The window's remaining count still bounds them.
        """
        await self._take(borrow=self._first_borrow)

    async def _take(self, borrow: int) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                wait = self._wait_time(now, borrow=borrow)
                if wait > 0:
                    await self._sleep(wait)
                elif self._first_waiters:
                    # A first message waits: it goes before this edit.
                    await self._no_first.wait()
                else:
                    # Without borrowing the bucket holds at least one token here (rounding
                    # noise aside); with it, the debt is paid back by the refill.
                    self._tokens = self._tokens - 1.0 if borrow else max(0.0, self._tokens - 1.0)
                    self._window_left -= 1
                    return

    async def acquire_first(self) -> None:
        """Wait for a token ahead of every :meth:`acquire` waiter, then take it.

        For what a user waits to see at all: a reply's first message, a queue notice. The
        edits already waiting absorb the delay (they show the newest text when their turn
        comes), so a new reply does not wait behind the others' edits.
        """
        self._first_waiters += 1
        self._no_first.clear()
        try:
            async with self._first_lock:
                while True:
                    now = self._clock()
                    self._refill(now)
                    wait = self._wait_time(now, borrow=self._first_borrow)
                    if wait <= 0:
                        # Borrowed tokens are paid back by the edits, which wait for the refill.
                        self._tokens -= 1.0
                        self._window_left -= 1
                        return
                    await self._sleep(wait)
        finally:
            self._first_waiters -= 1
            if not self._first_waiters:
                self._no_first.set()

    def penalize(self, retry_after: float) -> None:
        """The platform answered 429: block until ``retry_after`` from now and slow down."""
        now = self._clock()
        self._refill(now)
        self.penalties += 1
        # A second report of a block already in force (the HTTP layer and the surface both
        # saw the same 429) must not slow the destination down twice.
        learn = now >= self._blocked_until
        self._blocked_until = max(self._blocked_until, now + max(0.0, retry_after))
        # One operation (the retry) may go at the end of the block; nothing accrues during it,
        # so a 429 is never followed by a burst.
        self._tokens = 1.0
        self._last_penalty = now
        if learn:
            self._rate = max(self._configured[0] / 8, self._rate * 0.75)
            self._burst = max(1, self._burst - 1)
        logger.info(
            "rate limited: pausing and slowing down",
            extra={"retry_after": retry_after, "rate": self._rate, "burst": self._burst},
        )

    def update_from_headers(self, limit: int, remaining: int, reset_after: float) -> None:
        """Follow a platform's ``X-RateLimit-Limit/-Remaining/-Reset-After`` headers.

        The platform knows its budget better than our estimate: never hold more tokens than it
        says remain, wait for the reset when none do, and refill to ``limit`` at the reset.

        Args:
            limit: Operations allowed per window.
            remaining: Operations left in this window.
            reset_after: Seconds until the window resets.
        """
        now = self._clock()
        self._refill(now)
        self._tokens = min(self._tokens, float(max(0, remaining)))
        if limit >= 1:
            self._burst = min(self._burst, limit)
        reset_at = now + max(0.0, reset_after)
        if remaining <= 0:
            self._blocked_until = max(self._blocked_until, reset_at)
        self._reset_at = reset_at
        self._reset_tokens = max(0, limit)
        self._window_left = max(0, remaining)

    def _refill(self, now: float) -> None:
        if now - self._last_penalty >= self._recover_after and (
            (self._rate, self._burst) != self._configured
        ):
            self._rate, self._burst = self._configured
        since = max(self._updated, min(now, self._blocked_until))
        elapsed = max(0.0, now - since)
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)
        self._updated = now
        if self._reset_at is not None and now >= self._reset_at:
            # A fixed-window platform gives the whole window back at once.
            self._tokens = max(self._tokens, float(min(self._burst, self._reset_tokens)))
            self._reset_at = None

    def _wait_time(self, now: float, borrow: int) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if self._reset_at is not None and self._window_left <= 0:
            return self._reset_at - now  # the window is used up: only its reset gives more
        if self._tokens >= 1.0 - borrow - _EPSILON:
            return 0.0
        return (1.0 - borrow - self._tokens) / self._rate


class IntervalPacer:
    """At most one operation every ``interval`` seconds (``0`` for no pacing but 429s).

    Each 429 blocks until ``retry_after`` and stretches the interval by half (at least 0.1 s),
    so the same refusal does not come straight back.

    Args:
        interval: Seconds between two grants.
        clock: Monotonic time source.
        sleep: How to wait.
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must not be negative (got {interval})")
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next_at = -math.inf
        self._blocked_until = -math.inf
        self._lock = asyncio.Lock()
        self.penalties = 0

    @property
    def interval(self) -> float:
        """The current (possibly learned) interval."""
        return self._interval

    async def acquire(self) -> None:
        """Wait until the interval since the last grant has passed (behind earlier waiters)."""
        async with self._lock:
            while True:
                now = self._clock()
                wait = max(self._next_at, self._blocked_until) - now
                if wait <= 0:
                    self._next_at = now + self._interval
                    return
                await self._sleep(wait)

    def penalize(self, retry_after: float) -> None:
        """The platform answered 429: block until ``retry_after`` from now and slow down."""
        self.penalties += 1
        now = self._clock()
        if now >= self._blocked_until:  # the same block reported twice slows down once
            self._interval = max(self._interval * 1.5, 0.1)
        self._blocked_until = max(self._blocked_until, now + max(0.0, retry_after))


P = TypeVar("P")


class PacerPool(Generic[P]):
    """One shared pacer per destination key (a channel id, a room id).

    The pool keeps the ``max_size`` most recently used pacers; a destination unused for long
    starts afresh, which is harmless because an idle destination has its full budget back.

    Args:
        factory: Makes the pacer for a new destination.
        max_size: How many destinations to remember.
    """

    def __init__(self, factory: Callable[[], P], *, max_size: int = 10_000) -> None:
        self._factory = factory
        self._max_size = max_size
        self._pacers: OrderedDict[Hashable, P] = OrderedDict()

    def get(self, key: Hashable) -> P:
        """The pacer for ``key``, made on first use."""
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._factory()
            self._pacers[key] = pacer
            if len(self._pacers) > self._max_size:
                self._pacers.popitem(last=False)
        else:
            self._pacers.move_to_end(key)
        return pacer

    def __len__(self) -> int:
        return len(self._pacers)
