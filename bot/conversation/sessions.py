"""Who may generate now: one generation per session, a global cap, a per-user rate limit.

Turns of one session run one at a time in arrival order; a waiting user is told their place.
At most ``max_concurrent`` generations run at once across all sessions (Ollama's own
parallelism). A user past the rate limit, or a session whose queue is full, gets a clear
:class:`bot.errors.Busy`; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter
from cachetools import LRUCache

from bot.errors import Busy
from bot.turn import SessionKey

Notify = Callable[[str], Awaitable[None]]


class StoppedWhileQueued(Exception):
    """The user stopped a turn before it got its turn to generate (control flow, not an error)."""


@dataclass
class _SessionSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    stopper: Callable[[], Awaitable[None]] | None = None
    stop_requested: bool = False
    running: bool = False  # a ticket is out: a turn of this session is being answered


@dataclass
class Ticket:
    """Held while a turn generates. ``stop_requested`` turns true when someone stops it."""

    key: SessionKey
    slot: _SessionSlot
    queue_wait: float = 0.0
    _release: Callable[[], None] | None = None

    @property
    def stop_requested(self) -> bool:
        return self.slot.stop_requested

    def on_stop(self, stopper: Callable[[], Awaitable[None]]) -> None:
        """Register what ``SessionManager.stop`` calls to stop this generation."""
        self.slot.stopper = stopper

    def generation_done(self) -> None:
        """Give the global generation slot back once the model has stopped generating.

        Delivering the last edit can wait on the platform's pacing for a second or more; the
        model is free by then, so another conversation may start. The session itself stays
        busy until the turn ends, so its replies keep their order.
        """
        if self._release is not None:
            release, self._release = self._release, None
            release()


class SessionManager:
    """Queues, caps and rate-limits generations."""

    def __init__(
        self,
        *,
        max_concurrent: int = 4,
        user_messages_per_minute: float = 10.0,
        max_queue_per_session: int = 5,
        max_waiting: int = 64,
        notice_delay: float = 1.5,
        user_commands_per_minute: float = 20.0,
        max_tracked_users: int = 10_000,
    ) -> None:
        self._slots: dict[SessionKey, _SessionSlot] = {}
        self._global = asyncio.Semaphore(max_concurrent)
        self._rate = user_messages_per_minute
        self._command_rate = user_commands_per_minute
        # Bounded: the least recently active user's bucket goes first. A user who comes back
        # after being evicted gets a full bucket, which their long absence had refilled anyway.
        self._limiters: LRUCache[str, AsyncLimiter] = LRUCache(max_tracked_users)
        self._command_limiters: LRUCache[str, AsyncLimiter] = LRUCache(max_tracked_users)
        self._max_queue = max_queue_per_session
        self._max_waiting = max_waiting
        self._waiting_global = 0
        self._notice_delay = notice_delay

    def _slot(self, key: SessionKey) -> _SessionSlot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _SessionSlot()
        return slot

    @property
    def tracked_sessions(self) -> int:
        """Conversations with a turn running or waiting (their slots are kept in memory)."""
        return len(self._slots)

    @property
    def tracked_users(self) -> int:
        """Users whose message budget is kept in memory (at most ``max_tracked_users``)."""
        return len(self._limiters)

    async def check_rate(self, user_id: str) -> None:
        """Take one message from the user's budget, or raise :class:`Busy`."""
        await _take(self._limiters, user_id, self._rate, "messages")

    async def check_command_rate(self, user_id: str) -> None:
        """Take one command from the user's budget (apart from messages), or raise :class:`Busy`."""
        await _take(self._command_limiters, user_id, self._command_rate, "commands")

    @contextlib.asynccontextmanager
    async def turn(
        self, key: SessionKey, notify: Notify | None = None, *, stop: asyncio.Event | None = None
    ) -> AsyncIterator[Ticket]:
        """Wait for this session's turn and a global slot; tell the user when they must wait.

        A notice is only sent when the wait lasts longer than ``notice_delay``: on platforms
        that pace edits, a notice for a short wait would delay the reply itself.

        Args:
            key: The conversation.
            notify: Tells the user they wait (their place in the queue).
            stop: Set when the user stops the turn: the wait ends at once.

        Raises:
            Busy: the session's queue, or the bot's queue of waiting turns, is full.
            StoppedWhileQueued: ``stop`` was set before the turn got its slots.
        """
        slot = self._slot(key)
        if slot.waiting >= self._max_queue:
            raise Busy(
                f"{slot.waiting} messages are already waiting in this conversation. "
                "Try again when the bot has answered them."
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        place = slot.waiting + (1 if slot.lock.locked() else 0)
        slot.waiting += 1
        try:
            await self._acquire(
                slot.lock,
                notify,
                f"You are number {place} in the queue; the bot answers one message at a time here.",
                stop,
            )
            try:
                await self._take_global(None if place else notify, stop)
            except BaseException:
                slot.lock.release()
                raise
        except BaseException:
            # Refused ("busy") or cancelled while waiting: a slot nobody uses any more goes.
            slot.waiting -= 1
            self._forget_if_idle(key, slot)
            raise
        slot.waiting -= 1
        ticket = Ticket(key, slot, queue_wait=loop.time() - started)
        ticket._release = self._global.release
        slot.stop_requested = False
        slot.running = True
        try:
            yield ticket
        finally:
            ticket.generation_done()
            slot.stopper = None
            slot.stop_requested = False
            slot.running = False
            slot.lock.release()
            self._forget_if_idle(key, slot)

    def _forget_if_idle(self, key: SessionKey, slot: _SessionSlot) -> None:
        if not slot.lock.locked() and not slot.waiting and self._slots.get(key) is slot:
            del self._slots[key]

    async def _take_global(self, notify: Notify | None, stop: asyncio.Event | None) -> None:
        """Wait for a generation slot, unless too many turns already wait for one."""
        if self._global.locked() and self._waiting_global >= self._max_waiting:
            raise Busy(
                f"The bot is answering {self._waiting_global} other messages right now. "
                "Try again in a minute.",
                retry_after=60.0,
            )
        self._waiting_global += 1
        try:
            await self._acquire(
                self._global,
                notify,
                "The bot is busy with other conversations; your reply starts soon.",
                stop,
            )
        finally:
            self._waiting_global -= 1

    async def _acquire(
        self,
        gate: asyncio.Lock | asyncio.Semaphore,
        notify: Notify | None,
        notice: str,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Take ``gate``; if that takes longer than the notice delay, tell the user once.

        Raises:
            StoppedWhileQueued: ``stop`` was set first (the gate is not taken).
        """
        if stop is not None and stop.is_set():
            raise StoppedWhileQueued
        if not gate.locked():
            await gate.acquire()  # free: taken at once, no notice, no extra task
            return
        waiter = asyncio.ensure_future(gate.acquire())
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        watched = {waiter} if stopped is None else {waiter, stopped}
        try:
            done, _ = await asyncio.wait(
                watched, timeout=self._notice_delay, return_when=asyncio.FIRST_COMPLETED
            )
            if not done and notify is not None:
                await notify(notice)
            if waiter not in done:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                raise StoppedWhileQueued
            waiter.result()
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                gate.release()  # granted while we were being cancelled: give it back
            else:
                waiter.cancel()
            raise
        finally:
            if stopped is not None:
                stopped.cancel()

    async def stop(self, key: SessionKey) -> bool:
        """Stop the session's running generation; ``False`` when nothing is running."""
        slot = self._slots.get(key)
        if slot is None or not slot.running or slot.stop_requested:
            return False
        slot.stop_requested = True
        if slot.stopper is not None:
            await slot.stopper()
        # Else the request is still being prepared: it sees ``stop_requested`` when it starts.
        return True


async def _take(
    limiters: LRUCache[str, AsyncLimiter], user_id: str, rate: float, what: str
) -> None:
    """Take one from ``user_id``'s bucket of ``rate`` a minute, or raise :class:`Busy`."""
    limiter = limiters.get(user_id)
    if limiter is None:
        # A bucket of a minute's worth that refills continuously.
        limiter = limiters[user_id] = AsyncLimiter(max(1.0, rate), 60.0)
    if not limiter.has_capacity():
        wait = 60.0 / rate
        raise Busy(
            f"You are sending {what} faster than {rate:g} a minute. Try again in {wait:.0f} s.",
            retry_after=wait,
        )
    await limiter.acquire()  # has capacity, so this returns at once
