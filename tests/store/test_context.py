"""Choosing a turn's context in batches (:mod:`bot.store.context`), alone and on both drivers.

The selection is written once and given each driver's SQL as a callable; here it reads from a
list of rows (the shape both drivers read), so its batch edges can be driven exactly, and then
the same edges run through a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from bot.store.context import FIRST_BATCH, MAX_BATCH, NO_ID_LIMIT, newest_within_budget
from bot.store.port import NewMessage, Store
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SqliteStore
from bot.turn import SessionKey
from bot.types import Role

Message = tuple[int, int, str, str]  # id, session, role, content: the columns the selection reads


class Session:
    """A session's context rows, oldest first, read the way the drivers' SQL reads them."""

    def __init__(self, contents: Sequence[str]) -> None:
        self.rows: list[Message] = [(i + 1, 1, "user", text) for i, text in enumerate(contents)]
        self.reads: list[tuple[int, int]] = []

    async def fetch_older(self, before: int, limit: int) -> list[Message]:
        self.reads.append((before, limit))
        older = [row for row in self.rows if row[0] < before]
        return older[::-1][:limit]


def tail(contents: Sequence[str], budget: int) -> list[str]:
    """The reference: newest first, stop at the first message that does not fit."""
    picked: list[str] = []
    for text in reversed(contents):
        budget -= len(text)
        if budget < 0:
            break
        picked.append(text)
    return picked


async def picked(contents: Sequence[str], budget: int) -> tuple[list[str], Session]:
    session = Session(contents)
    rows = await newest_within_budget(session.fetch_older, budget)
    return [row[3] for row in rows], session


@pytest.mark.parametrize("count", [FIRST_BATCH - 1, FIRST_BATCH, FIRST_BATCH + 1, 3 * FIRST_BATCH])
async def test_the_budget_edge_falls_the_same_on_either_side_of_a_batch_edge(count: int) -> None:
    contents = [f"{i:09d}" for i in range(count)]  # 9 characters each
    for fits in (FIRST_BATCH - 1, FIRST_BATCH, FIRST_BATCH + 1, count, count + 1):
        for budget in (9 * fits - 1, 9 * fits, 9 * fits + 1):
            got, _ = await picked(contents, budget)
            assert got == tail(contents, budget), (count, budget)


async def test_random_sessions_match_the_reference_and_read_each_row_at_most_once() -> None:
    rng = random.Random(11)
    for _ in range(60):
        contents = [f"{i}:" + "x" * rng.randint(0, 300) for i in range(rng.randint(0, 900))]
        budget = rng.choice([0, 1, rng.randint(0, 2_000), rng.randint(0, 60_000), 10**9])
        got, session = await picked(contents, budget)
        assert got == tail(contents, budget)
        befores = [before for before, _ in session.reads]
        assert befores == sorted(befores, reverse=True)
        assert len(set(befores)) == len(befores)
        assert all(1 <= limit <= MAX_BATCH for _, limit in session.reads)


async def test_reads_start_at_the_newest_and_stop_once_the_budget_is_spent() -> None:
    # A budget spent exactly by the first batch needs no second read.
    contents = ["abc"] * (3 * FIRST_BATCH)
    got, session = await picked(contents, 3 * FIRST_BATCH)
    assert len(got) == FIRST_BATCH
    assert session.reads == [(NO_ID_LIMIT, FIRST_BATCH)]


async def test_a_budget_of_nothing_reads_nothing() -> None:
    got, session = await picked(["a", "b"], 0)
    assert got == []
    assert session.reads == []


async def test_a_session_of_one_liners_is_read_in_batches_no_larger_than_the_cap() -> None:
    contents = ["s"] * 5_000
    got, session = await picked(contents, 4_000)
    assert len(got) == 4_000
    limits = [limit for _, limit in session.reads]
    assert max(limits) == MAX_BATCH
    assert limits[0] == FIRST_BATCH


# The same edges through the drivers' own SQL


def _sqlite(request: pytest.FixtureRequest) -> Store:
    return SqliteStore(request.getfixturevalue("tmp_path") / "bot.sqlite3")


def _postgres(request: pytest.FixtureRequest) -> Store:
    return PostgresStore(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=[_sqlite, _postgres], ids=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    make: Callable[[pytest.FixtureRequest], Store] = request.param
    opened = make(request)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_context_budget_edge_at_a_batch_edge_on_both_drivers(store: Store) -> None:
    session = await store.session_id(SessionKey("discord", "room-1"))
    contents = [f"{i:09d}" for i in range(2 * FIRST_BATCH + 1)]  # 9 characters each
    for text in contents:
        await store.append(session, NewMessage(Role.USER, text))
    for fits in (FIRST_BATCH, FIRST_BATCH + 1, 2 * FIRST_BATCH, 2 * FIRST_BATCH + 1):
        for budget in (9 * fits - 1, 9 * fits, 9 * fits + 1):
            got = [m.content for m in await store.context_messages(session, budget)]
            assert got == tail(contents, budget)[::-1], (store, budget)
