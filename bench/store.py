"""Benchmark of the SQLite store on the two paths every chat turn takes.

1. Appends: 10,000 messages across 100 sessions, one ``append`` call (one commit) per message,
   as the bot stores them. Target: at least 5,000 messages/s.
2. Context loads: ``context_messages`` with a budget of 32,000 characters (about 8,000 tokens)
   from a session holding 10,000 messages, 1,000 times. Target: p99 at most 5 ms.

Run from the repository root: ``.venv/bin/python bench/store.py``. The database lives in a
temporary directory on the same disk as the system's temp files.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.store.port import MessageStatus, NewMessage  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402 - needs the repository on sys.path
from bot.turn import SessionKey  # noqa: E402
from bot.types import Role  # noqa: E402

APPENDS = 10_000
SESSIONS = 100
BIG_SESSION = 10_000
LOADS = 1_000
CHAR_BUDGET = 32_000
APPEND_TARGET = 5_000.0
P99_TARGET_MS = 5.0

MessageMaker = Callable[[random.Random, int], NewMessage]


def _message(rng: random.Random, i: int) -> NewMessage:
    # Chat-like sizes: short questions, longer answers (40 to 1,200 characters).
    if i % 2 == 0:
        return NewMessage(
            Role.USER, "q" * rng.randint(40, 300), author_id="42", author_name="alice"
        )
    return NewMessage(
        Role.ASSISTANT,
        "a" * rng.randint(200, 1200),
        prompt_tokens=rng.randint(100, 4000),
        eval_tokens=rng.randint(20, 400),
        duration=rng.uniform(0.5, 8.0),
        status=MessageStatus.ERROR if i % 97 == 0 else MessageStatus.COMPLETE,
    )


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def bench_appends(store: SqliteStore, rng: random.Random) -> tuple[float, float]:
    """Messages per second for one ``append`` per message over ``SESSIONS`` sessions.

    Returns:
        Wall-clock appends per second, and appends per second of the process's CPU time (both
        threads): the second shows what the first would be on an otherwise idle machine.
    """
    ids = [await store.session_id(SessionKey("bench", f"room{n}")) for n in range(SESSIONS)]
    messages = [_message(rng, i) for i in range(APPENDS)]
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, message in enumerate(messages):
        await store.append(ids[i % SESSIONS], message)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return APPENDS / wall, APPENDS / cpu


def _short_message(rng: random.Random, i: int) -> NewMessage:
    # A rapid back-and-forth of one-liners: many more messages fit in the budget.
    return NewMessage(Role.USER if i % 2 == 0 else Role.ASSISTANT, "s" * rng.randint(20, 100))


async def bench_context(
    store: SqliteStore, rng: random.Random, name: str, make: MessageMaker
) -> tuple[float, float, int]:
    """p50 and p99 milliseconds of a context load from a 10,000-message session."""
    session = await store.session_id(SessionKey("bench", name))
    for i in range(BIG_SESSION):
        await store.append(session, make(rng, i))
    samples: list[float] = []
    loaded = 0
    for _ in range(LOADS):
        start = time.perf_counter()
        context = await store.context_messages(session, CHAR_BUDGET)
        samples.append((time.perf_counter() - start) * 1000)
        loaded = len(context)
    return _percentile(samples, 0.50), _percentile(samples, 0.99), loaded


def _context_line(label: str, result: tuple[float, float, int]) -> str:
    p50, p99, loaded = result
    return (
        f"{label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({LOADS:,} loads, {loaded} messages "
        f"within {CHAR_BUDGET:,} chars, session of {BIG_SESSION:,})"
    )


async def main() -> int:
    rng = random.Random(1234)
    # Two threads ping-pong per statement (the loop and aiosqlite's worker), so other work on
    # the machine shows directly in these numbers: print the load they ran under.
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ollabot-bench-") as tmp:
        async with SqliteStore(Path(tmp) / "bench.sqlite3") as store:
            rate, cpu_rate = await bench_appends(store, rng)
            chat = await bench_context(store, rng, "chat", _message)
            short = await bench_context(store, rng, "short", _short_message)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(
        f"append: {rate:,.0f} messages/s ({APPENDS:,} appends, {SESSIONS} sessions, a commit each;"
        f" {cpu_rate:,.0f} per CPU-second)"
    )
    print(_context_line("context load", chat))
    print(_context_line("context load, short messages (not a target)", short))
    ok = rate >= APPEND_TARGET and chat[1] <= P99_TARGET_MS
    print(
        f"targets: append >= {APPEND_TARGET:,.0f}/s, context p99 <= {P99_TARGET_MS} ms: "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
