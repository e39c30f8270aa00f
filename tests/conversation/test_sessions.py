"""Session scheduling: order, place reporting, global cap, rate limit, stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.conversation.sessions import SessionManager
from bot.errors import Busy
from bot.turn import SessionKey

KEY = SessionKey("test", "room")


async def settle() -> None:
    """Let every runnable task run until it blocks (acquiring takes a few loop turns)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_turns_of_one_session_run_in_arrival_order_and_waiters_learn_their_place() -> None:
    sessions = SessionManager(max_concurrent=4, notice_delay=0)
    order: list[int] = []
    notices: dict[int, list[str]] = {i: [] for i in range(3)}
    release = asyncio.Event()

    async def turn(i: int) -> None:
        async def notify(text: str) -> None:
            notices[i].append(text)

        async with sessions.turn(KEY, notify):
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(turn(i)) for i in range(3)]
    await settle()
    assert order == [0]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert notices[0] == []
    assert "number 1 in the queue" in notices[1][0]
    assert "number 2 in the queue" in notices[2][0]


async def test_a_short_wait_sends_no_notice() -> None:
    sessions = SessionManager(max_concurrent=1, notice_delay=60)
    notices: list[str] = []

    async def notify(text: str) -> None:
        notices.append(text)

    async def turn(room: str) -> None:
        async with sessions.turn(SessionKey("test", room), notify):
            await asyncio.sleep(0)

    await asyncio.gather(turn("a"), turn("b"), turn("a"))
    assert notices == []


async def test_the_global_slot_is_free_once_generation_is_done_though_the_turn_goes_on() -> None:
    sessions = SessionManager(max_concurrent=1)
    delivered = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with sessions.turn(SessionKey("test", "a")) as ticket:
            order.append("a generates")
            ticket.generation_done()
            await delivered.wait()  # the last edit waits for the platform's pacing
            order.append("a delivered")

    async def second() -> None:
        async with sessions.turn(SessionKey("test", "b")):
            order.append("b generates")
            delivered.set()

    await asyncio.gather(first(), second())
    assert order == ["a generates", "b generates", "a delivered"]


async def test_the_bots_waiting_room_is_bounded_and_says_so() -> None:
    sessions = SessionManager(max_concurrent=1, max_waiting=1)
    gate = asyncio.Event()

    async def hold(room: str) -> None:
        async with sessions.turn(SessionKey("test", room)):
            await gate.wait()

    running = asyncio.create_task(hold("a"))
    waiting = asyncio.create_task(hold("b"))
    await settle()
    with pytest.raises(Busy, match="answering 1 other messages"):
        async with sessions.turn(SessionKey("test", "c")):
            pass
    gate.set()
    await asyncio.gather(running, waiting)


async def test_a_turn_cancelled_while_waiting_leaves_nothing_held() -> None:
    sessions = SessionManager(max_concurrent=1, notice_delay=0)
    gate = asyncio.Event()

    async def slow_notify(text: str) -> None:
        await asyncio.sleep(3600)

    async def hold() -> None:
        async with sessions.turn(SessionKey("test", "a")):
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(_enter(sessions, SessionKey("test", "b"), slow_notify))
    await settle()
    gate.set()  # the slot is granted while the waiter is stuck sending its notice
    await holder
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with asyncio.timeout(5), sessions.turn(SessionKey("test", "c")):
        pass  # nothing leaked: the slot can be taken again


async def _enter(sessions: SessionManager, key: SessionKey, notify: Any) -> None:
    async with sessions.turn(key, notify):
        pass


async def test_global_cap_limits_concurrent_generations_across_sessions() -> None:
    sessions = SessionManager(max_concurrent=2)
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def turn(room: str) -> None:
        nonlocal running, peak
        async with sessions.turn(SessionKey("test", room)):
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

    tasks = [asyncio.create_task(turn(str(i))) for i in range(5)]
    await settle()
    assert running == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2


async def test_full_session_queue_is_refused_with_a_clear_message() -> None:
    sessions = SessionManager(max_queue_per_session=1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with sessions.turn(KEY):
            await gate.wait()

    first = asyncio.create_task(hold())
    second = asyncio.create_task(hold())
    await settle()
    with pytest.raises(Busy, match="already waiting"):
        async with sessions.turn(KEY):
            pass
    gate.set()
    await asyncio.gather(first, second)


async def test_user_past_the_rate_limit_is_told_to_wait() -> None:
    sessions = SessionManager(user_messages_per_minute=2)
    await sessions.check_rate("alice")
    await sessions.check_rate("alice")
    with pytest.raises(Busy, match="faster than 2 a minute") as info:
        await sessions.check_rate("alice")
    assert info.value.retry_after is not None
    await sessions.check_rate("bob")  # other users are not affected


async def test_stop_calls_the_running_generations_stopper_once() -> None:
    sessions = SessionManager()
    stops: list[str] = []

    async def stopper() -> None:
        stops.append("stopped")

    assert await sessions.stop(KEY) is False
    async with sessions.turn(KEY) as ticket:
        ticket.on_stop(stopper)
        assert await sessions.stop(KEY) is True
        assert await sessions.stop(KEY) is False  # already stopping
        assert ticket.stop_requested
    assert stops == ["stopped"]
    assert await sessions.stop(KEY) is False


async def test_a_session_refused_for_a_busy_bot_leaves_no_slot_behind() -> None:
    sessions = SessionManager(max_concurrent=1, max_waiting=1, notice_delay=60)
    release = asyncio.Event()

    async def hold(key: SessionKey) -> None:
        async with sessions.turn(key):
            await release.wait()

    running = asyncio.create_task(hold(SessionKey("test", "a")))
    waiting = asyncio.create_task(hold(SessionKey("test", "b")))
    await settle()
    for i in range(20):  # each a new conversation, refused: the bot's waiting room is full
        with pytest.raises(Busy):
            async with sessions.turn(SessionKey("test", f"refused-{i}")):
                pass
    assert sessions.tracked_sessions == 2
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert sessions.tracked_sessions == 1  # a turn cancelled while it waited leaves none either
    release.set()
    await running
    assert sessions.tracked_sessions == 0


async def test_rate_limiters_are_bounded_and_the_least_recently_active_user_goes_first() -> None:
    sessions = SessionManager(user_messages_per_minute=1, max_tracked_users=2)
    await sessions.check_rate("alice")
    await sessions.check_rate("bob")
    with pytest.raises(Busy):
        await sessions.check_rate("alice")  # alice is the most recently active now
    await sessions.check_rate("carol")  # evicts bob, not alice
    assert sessions.tracked_users == 2
    with pytest.raises(Busy):
        await sessions.check_rate("alice")  # still limited: her bucket was kept
    await sessions.check_rate("bob")  # a fresh bucket


async def test_commands_have_their_own_budget_per_user() -> None:
    sessions = SessionManager(user_messages_per_minute=1, user_commands_per_minute=2)
    await sessions.check_rate("alice")
    await sessions.check_command_rate("alice")
    await sessions.check_command_rate("alice")
    with pytest.raises(Busy, match="commands faster than 2 a minute"):
        await sessions.check_command_rate("alice")
    await sessions.check_command_rate("bob")


async def test_a_full_bot_says_how_many_wait_and_when_to_retry() -> None:
    sessions = SessionManager(max_concurrent=1, max_waiting=2, notice_delay=0)
    release = asyncio.Event()
    notices: list[str] = []

    async def notify(text: str) -> None:
        notices.append(text)

    async def hold(room: str) -> None:
        async with sessions.turn(SessionKey("test", room), notify):
            await release.wait()

    tasks = [asyncio.create_task(hold(room)) for room in ("a", "b", "c")]
    await settle()
    assert notices == ["The bot is busy with other conversations; your reply starts soon."] * 2
    with pytest.raises(Busy) as refused:
        async with sessions.turn(SessionKey("test", "d")):
            pass
    assert refused.value.user_message == (
        "The bot is answering 2 other messages right now. Try again in a minute."
    )
    assert refused.value.retry_after == 60.0
    release.set()
    await asyncio.gather(*tasks)


async def test_the_rate_limit_says_the_rate_and_the_wait() -> None:
    sessions = SessionManager(user_messages_per_minute=2)
    await sessions.check_rate("u")
    await sessions.check_rate("u")
    with pytest.raises(Busy) as refused:
        await sessions.check_rate("u")
    assert refused.value.user_message == (
        "You are sending messages faster than 2 a minute. Try again in 30 s."
    )
    assert refused.value.retry_after == 30.0
