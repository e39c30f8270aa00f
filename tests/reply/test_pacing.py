"""Pacing arithmetic on a fake clock: bursts, refill, fairness, 429 learning, rate-limit headers."""

from __future__ import annotations

import asyncio

import pytest

from bot.reply.pacing import IntervalPacer, PacerPool, TokenBucketPacer, acquire_last
from bot.reply.streamer import Pacer


class FakeClock:
    """Time that only moves when someone sleeps; sleeps return at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def grant_times(pacer: Pacer, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await pacer.acquire()
        times.append(clock.now - 1000.0)
    return times


def bucket(clock: FakeClock, rate: float = 1.0, burst: int = 5) -> TokenBucketPacer:
    return TokenBucketPacer(rate, burst, clock=clock, sleep=clock.sleep)


async def test_token_bucket_grants_the_burst_at_once_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    assert await grant_times(pacer, clock, 7) == pytest.approx([0, 0, 0, 0, 0, 1, 2])


async def test_token_bucket_refills_while_idle_up_to_the_burst() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=0.2, burst=10)
    await grant_times(pacer, clock, 10)
    clock.now += 100.0  # idle long enough to refill far beyond the burst
    assert pacer.tokens == pytest.approx(10)


async def test_penalize_blocks_until_retry_after_and_learns_a_slower_rate() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    await pacer.acquire()
    pacer.penalize(3.0)
    assert pacer.rate < 1.0
    assert pacer.burst == 4
    times = await grant_times(pacer, clock, 2)
    # The retry goes at the retry_after, then one token per (learned) 1/rate seconds: no burst.
    assert times[0] == pytest.approx(3.0)
    assert times[1] - times[0] == pytest.approx(1 / pacer.rate)


async def test_the_same_429_reported_twice_slows_down_once() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    pacer.penalize(2.0)
    pacer.penalize(2.0)  # e.g. the HTTP layer and the reply surface both saw it
    assert (pacer.rate, pacer.burst) == (0.75, 4)
    interval = IntervalPacer(1.0, clock=clock, sleep=clock.sleep)
    interval.penalize(2.0)
    interval.penalize(2.0)
    assert interval.interval == pytest.approx(1.5)


async def test_learned_slowdown_is_forgotten_after_a_quiet_period() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 5, recover_after=60.0, clock=clock, sleep=clock.sleep)
    pacer.penalize(1.0)
    clock.now += 2.0
    pacer.penalize(1.0)
    assert pacer.rate < 0.75
    clock.now += 61.0
    assert pacer.tokens == pytest.approx(5)
    assert (pacer.rate, pacer.burst) == (1.0, 5)


async def test_rate_never_drops_below_an_eighth_of_the_configured_rate() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    for _ in range(50):
        pacer.penalize(0.0)
        clock.now += 0.001
    assert pacer.rate == pytest.approx(1 / 8)
    assert pacer.burst == 1


async def test_headers_with_nothing_remaining_block_until_the_reset_then_refill() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=0.1, burst=5)
    pacer.update_from_headers(limit=5, remaining=0, reset_after=4.0)
    times = await grant_times(pacer, clock, 5)
    # The whole window comes back at the reset, as on a fixed-window platform.
    assert times == pytest.approx([4.0] * 5)


async def test_headers_cap_our_tokens_to_what_the_platform_says_remains() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    pacer.update_from_headers(limit=5, remaining=1, reset_after=10.0)
    assert pacer.tokens == pytest.approx(1)
    pacer.update_from_headers(limit=2, remaining=2, reset_after=1.0)
    assert pacer.burst == 2


async def test_waiters_are_served_first_come_first_served() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=1)
    order: list[str] = []

    async def reply(name: str, operations: int) -> None:
        for index in range(operations):
            await pacer.acquire()
            order.append(f"{name}{index}")
            await asyncio.sleep(0)  # the caller does its send; others queue meanwhile

    await asyncio.gather(reply("a", 4), reply("b", 4), reply("c", 4))
    # A long reply does not hog the channel: the grants rotate between the three.
    firsts = [order.index(f"{name}0") for name in "abc"]
    assert max(firsts) <= 2
    assert order[:6] == ["a0", "b0", "c0", "a1", "b1", "c1"]


async def test_interval_pacer_spaces_grants_and_honours_429() -> None:
    clock = FakeClock()
    pacer = IntervalPacer(0.5, clock=clock, sleep=clock.sleep)
    assert await grant_times(pacer, clock, 3) == pytest.approx([0, 0.5, 1.0])
    pacer.penalize(2.0)
    assert pacer.interval == pytest.approx(0.75)
    times = await grant_times(pacer, clock, 1)
    assert times[0] == pytest.approx(1.0 + 2.0)


async def test_zero_interval_pacer_never_waits_until_a_429() -> None:
    clock = FakeClock()
    pacer = IntervalPacer(0.0, clock=clock, sleep=clock.sleep)
    assert await grant_times(pacer, clock, 100) == [0.0] * 100
    pacer.penalize(1.0)
    await pacer.acquire()
    assert clock.now - 1000.0 == pytest.approx(1.0)


def test_pool_shares_one_pacer_per_destination() -> None:
    pool = PacerPool(lambda: IntervalPacer(1.0), max_size=2)
    room = pool.get("!room:a")
    assert pool.get("!room:a") is room
    assert pool.get("!room:b") is not room
    pool.get("!room:c")
    assert len(pool) == 2  # least recently used forgotten
    assert pool.get("!room:a") is not room


def test_pacers_reject_impossible_settings() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucketPacer(0, 5)
    with pytest.raises(ValueError, match="interval"):
        IntervalPacer(-1)


# --- exact 429 learning (each value pinned: mutation testing found these unchecked) ------------


async def test_a_429_blocks_exactly_its_retry_after_then_lets_one_operation_through() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    pacer.penalize(2.5)
    assert pacer.tokens == 1.0  # nothing saved up for a burst after the block
    assert await grant_times(pacer, clock, 2) == [2.5, pytest.approx(2.5 + 1 / 0.75)]
    assert pacer.penalties == 1


async def test_each_new_429_slows_by_a_quarter_and_a_burst_of_one_down_to_the_floors() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=8.0, burst=3)
    expected_rates = [6.0, 4.5, 3.375, 2.53125, 1.8984375, 1.423828125, 1.0678710937, 1.0]
    for rate in expected_rates:
        pacer.penalize(0.1)
        clock.now += 0.2  # past the block: the next 429 is a new one
        assert pacer.rate == pytest.approx(rate)
    assert pacer.burst == 1  # 3 -> 2 -> 1, never 0
    pacer.penalize(-5)  # a negative retry_after blocks nothing
    assert await grant_times(pacer, clock, 1) == [pytest.approx(1.6)]


async def test_a_repeated_429_keeps_the_longer_block_and_learns_once() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=4)
    pacer.penalize(3.0)
    clock.now += 1.0
    pacer.penalize(1.0)  # inside the first block: the same 429 again
    assert (pacer.rate, pacer.burst, pacer.penalties) == (0.75, 3, 2)
    assert await grant_times(pacer, clock, 1) == [3.0]  # the longer block stands


async def test_interval_pacer_learns_from_a_new_429_once_and_never_below_a_tenth() -> None:
    clock = FakeClock()
    pacer = IntervalPacer(0.0, clock=clock, sleep=clock.sleep)
    pacer.penalize(1.0)
    assert pacer.interval == 0.1
    pacer.penalize(5.0)  # inside the block: not learnt again, but the block grows
    assert pacer.interval == 0.1
    assert await grant_times(pacer, clock, 1) == [5.0]
    pacer.penalize(-1)
    assert pacer.interval == pytest.approx(0.15)
    assert pacer.penalties == 3


def test_the_pool_forgets_the_least_recently_used_destination_not_the_oldest() -> None:
    pool = PacerPool(lambda: IntervalPacer(1.0), max_size=2)
    a = pool.get("a")
    b = pool.get("b")
    assert pool.get("a") is a  # used again: now b is the least recently used
    pool.get("c")
    assert pool.get("a") is a
    assert pool.get("b") is not b


async def test_refill_and_waits_follow_a_rate_other_than_one() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=4.0, burst=2)
    assert await grant_times(pacer, clock, 4) == [0.0, 0.0, 0.25, 0.5]  # 1/4 s a token
    clock.now += 0.125  # half a token
    assert pacer.tokens == pytest.approx(0.5)
    assert await grant_times(pacer, clock, 1) == [pytest.approx(0.75)]


async def test_headers_with_one_operation_left_allow_exactly_one_then_wait_for_the_reset() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=10.0, burst=5)
    pacer.update_from_headers(limit=5, remaining=1, reset_after=0.5)
    assert pacer.tokens == 1.0
    assert await grant_times(pacer, clock, 1) == [0.0]  # the one left goes at once
    pacer.update_from_headers(limit=5, remaining=0, reset_after=0.5)
    assert await grant_times(pacer, clock, 1) == [0.5]  # none left: wait for the reset
    assert pacer.burst == 5


async def test_a_limit_of_one_per_window_becomes_the_burst() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=10.0, burst=5)
    pacer.update_from_headers(limit=1, remaining=1, reset_after=0.0)
    assert pacer.burst == 1
    assert pacer.tokens == 1.0


class ManualClock(FakeClock):
    """Time that moves only when the test advances it; sleepers wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self._moved = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        async with self._moved:
            await self._moved.wait_for(lambda: self.now >= until - 1e-9)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        async with self._moved:
            self._moved.notify_all()
        for _ in range(10):  # let every woken waiter run
            await asyncio.sleep(0)


async def test_a_first_message_goes_before_the_edits_already_waiting() -> None:
    """Issue 10, point 8: a new reply's first text is not queued behind other replies' edits."""
    clock = ManualClock()
    pacer = TokenBucketPacer(1.0, 1, clock=clock, sleep=clock.sleep)
    await pacer.acquire()  # the bucket is empty: everything below waits for refills
    order: list[str] = []

    async def take(name: str, first: bool = False) -> None:
        await (pacer.acquire_first() if first else pacer.acquire())
        order.append(name)

    edits = [asyncio.create_task(take(f"edit{i}")) for i in range(3)]
    await clock.advance(0)  # the edits are waiting first
    first = asyncio.create_task(take("first message", first=True))
    await clock.advance(0)
    for _ in range(4):
        await clock.advance(1.0)
    await asyncio.gather(*edits, first)
    assert order == ["first message", "edit0", "edit1", "edit2"]  # one token each


async def test_first_messages_borrow_ahead_of_the_pacing_and_the_edits_pay_it_back() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    for _ in range(4):  # four replies starting together: all four first messages at once
        await pacer.acquire_first()
    assert clock.now == 1000.0
    assert await grant_times(pacer, clock, 1) == [pytest.approx(4.0)]  # the debt, then an edit


async def first_times(pacer: TokenBucketPacer, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await pacer.acquire_first()
        times.append(clock.now - 1000.0)
    return times


async def test_borrowing_stops_at_what_the_platform_window_has_left() -> None:
    """Issue 10, point 8: first messages granted together are sent before any answer says the
    window is used up, so the headers' remaining count, not the borrowing, is the limit."""
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    pacer.update_from_headers(limit=5, remaining=2, reset_after=3.0)
    # Two left in this window: the third waits for its reset, not for the 1/s refill.
    assert await first_times(pacer, clock, 3) == [0.0, 0.0, pytest.approx(3.0)]


async def test_an_edit_counts_against_the_window_left_too() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    pacer.update_from_headers(limit=5, remaining=2, reset_after=3.0)
    await pacer.acquire()
    assert await first_times(pacer, clock, 2) == [0.0, pytest.approx(3.0)]


async def test_after_the_window_resets_borrowing_is_bounded_by_the_borrow_again() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    pacer.update_from_headers(limit=5, remaining=0, reset_after=2.0)
    # Blocked until the reset; then a fresh window nobody has reported on: the token and the
    # three the first messages may borrow, then the refill.
    assert await first_times(pacer, clock, 5) == [pytest.approx(t) for t in (2, 2, 2, 2, 3)]


async def test_a_reply_s_last_operations_borrow_like_first_messages_and_edits_pay_back() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=2, clock=clock, sleep=clock.sleep)
    await pacer.acquire()  # the bucket's token
    times = []
    for _ in range(3):  # two borrowed at once, the third when the debt allows it
        await pacer.acquire_last()
        times.append(clock.now - 1000.0)
    assert times == [0.0, 0.0, pytest.approx(1.0)]
    assert await grant_times(pacer, clock, 1) == [pytest.approx(4.0)]  # an edit: debt paid


async def test_a_last_operation_waits_its_turn_behind_the_edits_and_after_first_messages() -> None:
    clock = ManualClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    await pacer.acquire()  # the bucket is empty: the next token comes at t=1
    order: list[tuple[str, float]] = []

    async def take(name: str, how: str) -> None:
        await {"edit": pacer.acquire, "last": pacer.acquire_last, "first": pacer.acquire_first}[
            how
        ]()
        order.append((name, clock.now - 1000.0))

    edit = asyncio.create_task(take("edit", "edit"))
    await clock.advance(0)
    last = asyncio.create_task(take("last", "last"))
    await clock.advance(0)
    first = asyncio.create_task(take("first", "first"))
    await clock.advance(0)
    for _ in range(2):
        await clock.advance(1.0)
    await asyncio.gather(edit, last, first)
    # The first message before both (borrowing: at once); the edit at the refill; the last
    # operation after the edit ahead of it, and at once (borrowing), not a second later.
    assert order == [("first", 0.0), ("edit", 2.0), ("last", 2.0)]


async def test_last_operations_stop_at_what_the_platform_window_has_left() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    pacer.update_from_headers(limit=5, remaining=1, reset_after=2.5)
    await pacer.acquire_last()
    await pacer.acquire_last()
    assert clock.now - 1000.0 == pytest.approx(2.5)


async def test_a_pacer_without_borrowing_gives_a_last_operation_an_ordinary_turn() -> None:
    clock = FakeClock()
    pacer = IntervalPacer(0.5, clock=clock, sleep=clock.sleep)
    await pacer.acquire()
    await acquire_last(pacer)
    assert clock.now - 1000.0 == pytest.approx(0.5)


# --- more exact edges (mutation testing of pacing.py found these unchecked) ---------------------


async def test_learned_slowdowns_are_forgotten_after_exactly_five_quiet_minutes() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)  # the default recover_after
    pacer.penalize(1.0)
    clock.now += 299.0
    assert pacer.tokens == pytest.approx(4)  # the learned burst still caps the bucket
    assert (pacer.rate, pacer.burst) == (0.75, 4)  # still learning: not quiet long enough
    clock.now += 1.0
    assert pacer.tokens == pytest.approx(5)
    assert (pacer.rate, pacer.burst) == (1.0, 5)  # 300 s without a 429: configured again


async def test_a_429_at_the_very_end_of_a_block_is_a_new_one_and_slows_again() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    pacer.penalize(2.0)
    clock.now += 2.0  # the block is over
    pacer.penalize(2.0)
    assert (pacer.rate, pacer.burst) == (0.5625, 3)


async def test_a_token_short_only_by_rounding_noise_is_granted_without_spinning() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=6.0, burst=1)  # 1/6 s a token: 6 * (1/6) falls just short of 1
    assert await grant_times(pacer, clock, 2) == [0.0, pytest.approx(1 / 6)]
    assert clock.sleeps == [pytest.approx(1 / 6)]  # one wait, not a loop of ever tinier ones


async def test_without_borrowing_a_first_message_waits_for_the_refill_like_an_edit() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=2.0, burst=1)  # first_borrow defaults to 0
    await pacer.acquire()
    await pacer.acquire_first()
    assert clock.now - 1000.0 == pytest.approx(0.5)  # half a second: one token at rate 2


async def test_a_first_message_past_the_borrowing_waits_only_for_the_next_token() -> None:
    clock = FakeClock()
    pacer = TokenBucketPacer(1.0, 1, first_borrow=3, clock=clock, sleep=clock.sleep)
    for _ in range(4):  # the bucket's token and the three it may borrow
        await pacer.acquire_first()
    await pacer.acquire_first()
    assert clock.now - 1000.0 == pytest.approx(1.0)


async def test_edits_still_go_after_two_first_messages_waited_together() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=1)
    await pacer.acquire()  # empty: both first messages below wait, one behind the other
    await asyncio.gather(pacer.acquire_first(), pacer.acquire_first())
    assert clock.now - 1000.0 == pytest.approx(2.0)
    assert await grant_times(pacer, clock, 1) == [pytest.approx(3.0)]  # the edit is not stuck


async def test_an_edit_waits_until_every_waiting_first_message_has_gone() -> None:
    clock = ManualClock()
    pacer = TokenBucketPacer(1.0, 1, clock=clock, sleep=clock.sleep)
    await pacer.acquire()  # the bucket is empty
    order: list[str] = []

    async def take(name: str, first: bool = False) -> None:
        await (pacer.acquire_first() if first else pacer.acquire())
        order.append(name)

    edit = asyncio.create_task(take("edit"))
    await clock.advance(0)  # the edit waits first
    firsts = [asyncio.create_task(take(name, first=True)) for name in ("first a", "first b")]
    await clock.advance(0)
    for _ in range(3):
        await clock.advance(1.0)
    await asyncio.gather(edit, *firsts)
    assert order == ["first a", "first b", "edit"]  # not the edit between the two


async def test_a_window_that_allows_nothing_gives_nothing_back_at_its_reset() -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    pacer.update_from_headers(limit=0, remaining=0, reset_after=1.0)
    assert pacer.tokens == 0.0
    # Blocked until the reset, which returns no operations: the next one waits a refill.
    assert await grant_times(pacer, clock, 1) == [pytest.approx(2.0)]


async def test_a_429_with_no_retry_after_blocks_nothing_beyond_the_interval() -> None:
    clock = FakeClock()
    pacer = IntervalPacer(0.5, clock=clock, sleep=clock.sleep)
    await pacer.acquire()
    pacer.penalize(0.0)
    assert await grant_times(pacer, clock, 1) == [0.5]  # the interval only, no extra block


def test_a_pool_remembers_ten_thousand_destinations_by_default() -> None:
    pool: PacerPool[object] = PacerPool(object)
    first = pool.get(0)
    for key in range(1, 10_000):
        pool.get(key)
    assert len(pool) == 10_000
    assert pool.get(0) is first  # still remembered (and now the most recently used)
    pool.get(10_000)
    pool.get(10_001)
    assert len(pool) == 10_000
    assert pool.get(0) is first


def test_a_negative_first_borrow_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"first_borrow must not be negative \(got -1\)"):
        TokenBucketPacer(1.0, 1, first_borrow=-1)


async def test_a_429_is_logged_with_the_wait_and_the_learned_pace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    pacer = bucket(clock, rate=1.0, burst=5)
    with caplog.at_level("INFO", logger="bot.reply.pacing"):
        pacer.penalize(2.5)
    [record] = [r for r in caplog.records if r.name == "bot.reply.pacing"]
    assert record.getMessage() == "rate limited: pausing and slowing down"
    logged = (record.__dict__["retry_after"], record.__dict__["rate"], record.__dict__["burst"])
    assert logged == (2.5, 0.75, 4)
