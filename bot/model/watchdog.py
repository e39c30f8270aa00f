"""Generation timeouts, and the coarse watchdog timer that enforces them without a per-token cost.

:class:`Timeouts` says how long a reply may take; :class:`Watchdog` times the waits of one
:class:`bot.model.stream.ResponseStream` for its next delta (see the class docstring for why it
is a timer that wakes at a coarse interval rather than a deadline per token).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

FIRST = "first token"
"""The phase from sending a request to its first delta."""
BETWEEN = "between tokens"
"""The phase between two deltas."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a generation may take, in seconds.

    Attributes:
        connect: TCP connect to Ollama (applied by the backend, e.g. ``OllamaChatModel``).
        first_token: From sending a request to the first streamed delta (covers model loading
            and prompt evaluation).
        between_tokens: The longest gap between two deltas.
        total: The whole reply, retries and tool rounds included.
    """

    connect: float = 5.0
    first_token: float = 120.0
    between_tokens: float = 60.0
    total: float = 600.0


class WatchedStream(Protocol):
    """What the watchdog reads and sets on the stream it watches (its intimate collaborator).

    Attributes:
        _ticks: Deltas received so far (the stream's only per-token bookkeeping).
        _inside: The task waiting inside the stream for a delta; ``None`` while a chunk is out
            with the consumer.
        _halt: Set once the total deadline passed: the stream's next wait ends at once.
    """

    _ticks: int
    _inside: asyncio.Task[Any] | None
    _halt: bool


# The watchdog checks at least this often (seconds) while a limit is being timed, so a limit
# fires at most this late (or an eighth of the limit, when that is shorter).
MAX_CHECK_INTERVAL = 1.0


class Watchdog:
    """Times the waits for deltas with a timer that fires at a coarse interval, not per token.

    ``asyncio.timeout()`` pushes and cancels a timer per delta (about 13 us each), and even moving
    one deadline costs a clock read per token. Here the stream only counts deltas (``_ticks``);
    this timer wakes every ``min(limit / 8, 1 s)``, counts a changed tick or a chunk out with the
    consumer as progress, and once nothing moved for the phase's limit (or the total deadline
    passed) cancels the waiting task, which the stream turns into
    :class:`~bot.errors.GenerationTimeout` (or ``_Stopped``). A limit thus fires between ``limit``
    and ``limit + interval`` after the last delta. Time the consumer spends holding a chunk never
    counts as a gap.
    """

    __slots__ = (
        "_cancelling",
        "_fired",
        "_handle",
        "_limit",
        "_loop",
        "_seen",
        "_since",
        "_stream",
        "deadline",
        "hit_total",
        "phase",
    )

    def __init__(self, stream: WatchedStream) -> None:
        self._stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.phase: str | None = None  # what is being timed; ``None``: not waiting for deltas
        self._limit = 0.0
        self._since = 0.0  # when progress was last seen
        self._seen = 0  # the stream's ``_ticks`` then
        self._cancelling = 0
        self._fired = False
        self.hit_total = False
        self.deadline = float("inf")

    @property
    def armed(self) -> bool:
        """Whether waits for deltas are being timed (a cancellation from here is a timeout)."""
        return self.phase is not None

    def start(self, total: float) -> None:
        """Every wait from now on also ends ``total`` seconds from now."""
        self._loop = loop = asyncio.get_running_loop()
        self.deadline = loop.time() + total

    def watch(self, phase: str, limit: float) -> None:
        """Time waits for deltas from now on: at most ``limit`` seconds without one."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self.phase = phase
        self._limit = limit
        self._since = now
        self._seen = self._stream._ticks
        self._fired = False
        self._schedule(now)

    def disarm(self) -> None:
        """Stop timing (the waits are over: tool runs, retries and closing are timed elsewhere)."""
        self.phase = None
        self.close()

    def fired_for(self, task: asyncio.Task[Any]) -> bool:
        """Whether a ``CancelledError`` in ``task`` came from this watchdog (then it is absorbed,
        like ``asyncio.timeout`` does) rather than from someone cancelling the task."""
        return self._fired and task.uncancel() <= self._cancelling

    def fire(self, task: asyncio.Task[Any]) -> None:
        """End ``task``'s wait now, as a timeout."""
        if not self._fired:
            self._fired = True
            self._cancelling = task.cancelling()
            task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, now: float) -> None:
        interval = min(self._limit / 8, MAX_CHECK_INTERVAL)
        at = min(now + interval, self._since + self._limit)
        if self.deadline > now:
            at = min(at, self.deadline)
        if self._handle is not None:
            self._handle.cancel()
        assert self._loop is not None
        self._handle = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        self._handle = None
        if self.phase is None or self._fired:
            return
        assert self._loop is not None
        now = self._loop.time()
        stream = self._stream
        task = stream._inside
        if task is None or stream._ticks != self._seen:
            # A delta arrived, or a chunk is out with the consumer: progress.
            self._seen = stream._ticks
            self._since = now
            if now >= self.deadline:
                stream._halt = True  # the next wait ends at once, as "total"
                if task is None:
                    return
        if task is not None and (now >= self._since + self._limit or now >= self.deadline):
            self.hit_total = self.deadline <= self._since + self._limit
            self.fire(task)
            return
        self._schedule(now)
