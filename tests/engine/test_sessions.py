"""Session scheduling: order, place reporting, global cap, rate limit, stop."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import Busy
from bot.sessions import SessionManager
from bot.turn import SessionKey

KEY = SessionKey("test", "room")


async def test_turns_of_one_session_run_in_arrival_order_and_waiters_learn_their_place() -> None:
    sessions = SessionManager(max_concurrent=4)
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
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == [0]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert notices[0] == []
    assert "number 1 in the queue" in notices[1][0]
    assert "number 2 in the queue" in notices[2][0]


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
    for _ in range(10):
        await asyncio.sleep(0)
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
    for _ in range(5):
        await asyncio.sleep(0)
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
