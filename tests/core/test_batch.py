"""Batches: input order, bounded concurrency, isolated failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.batch import BatchItem, process_message_batch, process_stream
from bot.errors import InputRejected
from bot.types import Response


async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def test_stream_handler_results_are_collected_in_order() -> None:
    async def double(x: int) -> int:
        return 2 * x

    items = await process_stream(numbers(4), double)
    assert [item.unwrap() for item in items] == [0, 2, 4, 6]


async def test_stream_handler_failure_is_that_items_error() -> None:
    async def picky(x: int) -> int:
        if x == 1:
            raise ValueError("one is bad")
        return x

    items = await process_stream(numbers(3), picky)
    assert [item.ok for item in items] == [True, False, True]
    assert isinstance(items[1].error, ValueError)
    with pytest.raises(ValueError, match="one is bad"):
        items[1].unwrap()
    assert items[2].result == 2


async def test_stream_source_failure_is_raised() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("gone")

    async def same(x: int) -> int:
        return x

    with pytest.raises(ConnectionError):
        await process_stream(broken(), same)


async def test_batch_keeps_input_order_even_when_later_items_finish_first() -> None:
    release: dict[str, asyncio.Event] = {t: asyncio.Event() for t in ("a", "b", "c")}
    finished: list[str] = []

    async def answer(text: str) -> Response:
        await release[text].wait()
        finished.append(text)
        return Response(content=text.upper())

    async def release_backwards() -> None:
        for text in ("c", "b", "a"):
            release[text].set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    items, _ = await asyncio.gather(
        process_message_batch(answer, ["a", "b", "c"], batch_size=3), release_backwards()
    )
    assert finished == ["c", "b", "a"]
    assert [item.unwrap().content for item in items] == ["A", "B", "C"]


async def test_batch_size_bounds_concurrency() -> None:
    running = 0
    peak = 0

    async def answer(text: str) -> Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1
        return Response(content=text)

    items = await process_message_batch(answer, [str(i) for i in range(10)], batch_size=3)
    assert peak == 3
    assert [item.unwrap().content for item in items] == [str(i) for i in range(10)]


async def test_one_failure_does_not_lose_the_others() -> None:
    async def answer(text: str) -> Response:
        if not text:
            raise InputRejected("Your message is empty.")
        return Response(content=text)

    items = await process_message_batch(answer, ["a", "", "c"], batch_size=2)
    assert [item.ok for item in items] == [True, False, True]
    assert isinstance(items[1].error, InputRejected)
    assert items[2].unwrap().content == "c"


async def test_batch_size_must_be_positive() -> None:
    async def answer(text: str) -> Response:
        return Response(content=text)

    with pytest.raises(ValueError, match="batch_size"):
        await process_message_batch(answer, ["a"], batch_size=0)


def test_batch_item_reports_success_and_failure() -> None:
    assert BatchItem(result=1).ok
    assert not BatchItem[int](error=RuntimeError("x")).ok
