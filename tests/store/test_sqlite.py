"""What only the SQLite store promises: pragmas, migrations, and driver errors made readable.

A second plain ``sqlite3`` connection plays the other process: it holds locks, writes an older
schema by hand, and checks the file's integrity afterwards.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store.migrations.sqlite import LATEST_VERSION
from bot.store.port import MessageStatus, NewMessage, Scope, ScopeKind
from bot.store.sqlite import _CONTEXT_SQL, SqliteStore, migrate, store_error
from bot.turn import SessionKey
from bot.types import Role

KEY = SessionKey("matrix", "!room:example.org")
ROOM = Scope("matrix", ScopeKind.ROOM, "!room:example.org")
BUSY = "The bot's database is busy; try again in a moment."
STREAMING = MessageStatus.STREAMING


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    # A short busy timeout so the lock tests fail fast instead of waiting five seconds.
    async with SqliteStore(db_path, busy_timeout_ms=50) as opened:
        yield opened


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to the file, in autocommit mode, waiting at most 50 ms for locks."""
    with closing(sqlite3.connect(path, timeout=0.05, isolation_level=None)) as conn:
        yield conn


def integrity(path: Path) -> str:
    with raw(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def schema_versions(path: Path) -> list[int]:
    with raw(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


# Pragmas


async def test_connection_runs_wal_with_foreign_keys_and_busy_timeout(
    store: SqliteStore, db_path: Path
) -> None:
    found = await store.diagnostics()
    assert found["journal_mode"] == "wal"
    assert found["foreign_keys"] == 1
    assert found["synchronous"] == 1  # NORMAL
    assert found["busy_timeout"] == 50
    assert found["schema_version"] == LATEST_VERSION
    with raw(db_path) as conn:  # WAL is a property of the file, seen by every connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_foreign_keys_refuse_a_message_for_a_missing_session(store: SqliteStore) -> None:
    with pytest.raises(StoreError) as caught:
        await store.append(424242, NewMessage(Role.USER, "orphan"))
    assert "FOREIGN KEY" in caught.value.detail


async def test_open_creates_the_directory_of_the_database(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "bot.sqlite3"
    async with SqliteStore(path) as opened:
        await opened.set_state("k", "v")
    assert path.exists()


async def test_a_store_that_is_not_open_says_so(db_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await SqliteStore(db_path).get_state("k")


# Migrations


async def test_migration_from_v1_keeps_every_row(db_path: Path) -> None:
    assert await migrate(db_path, version=1) == 1
    with raw(db_path) as conn:  # rows as the v1 release wrote them (no duration, no events)
        conn.execute(
            "INSERT INTO sessions (id, platform, room, thread, created_at, active)"
            " VALUES (7, 'matrix', '!room:example.org', '', '2025-01-02T03:04:05+00:00', 1)"
        )
        conn.execute(
            "INSERT INTO messages (session_id, role, content, author_id, author_name,"
            " prompt_tokens, eval_tokens, created_at, status) VALUES"
            " (7, 'user', 'from v1', '@a:x', 'Ann', 0, 0, '2025-01-02T03:04:05+00:00', 'complete'),"
            " (7, 'assistant', 'old reply', NULL, NULL, 9, 21, '2025-01-02T03:04:06+00:00',"
            "  'complete')"
        )
        conn.execute(
            "INSERT INTO settings VALUES"
            " ('matrix', 'room', '!room:example.org', 'model', '\"llama3.2\"', '2025-01-02')"
        )
        conn.execute("INSERT INTO state VALUES ('matrix.next_batch', 's1_2', '2025-01-02')")
    assert schema_versions(db_path) == [1]

    async with SqliteStore(db_path) as store:
        assert (await store.diagnostics())["schema_version"] == LATEST_VERSION
        assert await store.session_id(KEY) == 7
        old = await store.recent_messages(7, 10)
        assert [(m.content, m.duration) for m in old] == [("from v1", None), ("old reply", None)]
        assert old[1].eval_tokens == 21
        assert await store.get_settings(ROOM) == {"model": "llama3.2"}
        assert await store.get_state("matrix.next_batch") == "s1_2"
        # The columns and tables the later migrations add work on the old data.
        await store.append(7, NewMessage(Role.ASSISTANT, "new", eval_tokens=30, duration=1.5))
        assert (await store.channel_stats("matrix", "!room:example.org")).messages == 3
        assert await store.claim_event("matrix", "$e") is True
    assert schema_versions(db_path) == list(range(1, LATEST_VERSION + 1))
    assert integrity(db_path) == "ok"


async def test_reopening_applies_each_migration_once(db_path: Path) -> None:
    for _ in range(3):
        async with SqliteStore(db_path) as store:
            await store.set_state("opened", "yes")
    assert schema_versions(db_path) == list(range(1, LATEST_VERSION + 1))


async def test_a_failing_migration_is_rolled_back_whole(db_path: Path) -> None:
    await migrate(db_path, version=1)
    with raw(db_path) as conn:  # something in the way of v3's CREATE TABLE events
        conn.execute("CREATE TABLE events (x)")
    with pytest.raises(StoreError) as caught:
        await SqliteStore(db_path).open()
    assert "events already exists" in caught.value.detail
    # v2 committed on its own; v3 left nothing behind and can run once the cause is gone.
    assert schema_versions(db_path) == [1, 2]
    with raw(db_path) as conn:
        conn.execute("DROP TABLE events")
    async with SqliteStore(db_path) as store:
        assert await store.claim_event("discord", "1") is True
    assert schema_versions(db_path) == list(range(1, LATEST_VERSION + 1))


async def test_a_database_from_a_newer_release_is_refused(db_path: Path) -> None:
    await migrate(db_path)
    with raw(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', '2030-01-01')")
    with pytest.raises(StoreError, match="newer version of the bot"):
        await SqliteStore(db_path).open()


def write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not sqlite" * 512)


async def test_a_file_that_is_not_a_database_is_reported_damaged(db_path: Path) -> None:
    write_garbage(db_path)
    with pytest.raises(StoreError, match="damaged") as caught:
        await SqliteStore(db_path).open()
    assert "SQLITE_NOTADB" in caught.value.detail


# Errors and recovery


async def test_locked_database_raises_store_error_then_recovers(
    store: SqliteStore, db_path: Path
) -> None:
    session = await store.session_id(KEY)
    await store.append(session, NewMessage(Role.USER, "before the lock"))

    with raw(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO state VALUES ('other', 'process', 'now')")

        with pytest.raises(StoreError) as caught:
            await store.append(session, NewMessage(Role.USER, "while locked"))
        assert str(caught.value) == BUSY
        assert "SQLITE_BUSY" in caught.value.detail
        with pytest.raises(StoreError, match="busy"):  # a multi-statement transaction
            await store.reset_session(KEY)
        with pytest.raises(StoreError, match="busy"):
            await store.set_setting(ROOM, "model", "x")
        # WAL: readers are not blocked by a writer.
        assert [m.content for m in await store.recent_messages(session, 5)] == ["before the lock"]
        other.execute("COMMIT")

    # The lock is gone: the same connection writes again and nothing half-done was left.
    await store.append(session, NewMessage(Role.USER, "after the lock"))
    assert await store.session_id(KEY) == session
    assert await store.set_setting(ROOM, "model", "y") is None
    assert [m.content for m in await store.recent_messages(session, 5)] == [
        "before the lock",
        "after the lock",
    ]
    assert await store.get_state("other") == "process"
    assert integrity(db_path) == "ok"


async def test_mark_interrupted_returns_only_streaming_messages(store: SqliteStore) -> None:
    session = await store.session_id(KEY)
    await store.append(session, NewMessage(Role.ASSISTANT, "done"))
    cut = await store.append(
        session, NewMessage(Role.ASSISTANT, "cut", status=MessageStatus.STREAMING)
    )
    assert [reply.message_id for reply in await store.mark_interrupted()] == [cut]


def test_full_database_gets_a_message_about_space(tmp_path: Path) -> None:
    with raw(tmp_path / "tiny.sqlite3") as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA max_page_count = 3")
        with pytest.raises(sqlite3.OperationalError) as caught:
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    error = store_error(caught.value, "append message")
    assert error.user_message.startswith("The bot's database is full")
    assert "SQLITE_FULL" in error.detail
    assert "append message" in error.detail


def test_an_unclassified_driver_error_still_gets_a_user_message() -> None:
    error = store_error(sqlite3.ProgrammingError("Cannot operate on a closed database."), "read")
    assert "The bot's database failed" in error.user_message
    assert "closed database" in error.detail


async def test_context_query_is_a_range_scan_of_the_session_index(db_path: Path) -> None:
    # The plan, not a timing: a full scan would still pass every other test, only slower.
    await migrate(db_path)
    with raw(db_path) as conn:
        params = (1, 2, *"abcd", 3)
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + _CONTEXT_SQL, params)]
    assert plan == ["SEARCH messages USING INDEX messages_session (session_id=? AND id<?)"]


async def test_a_crashed_run_with_this_very_pid_and_host_is_known_to_be_gone(db_path: Path) -> None:
    # A container restarted after a crash often gets the pid and host name its last run had:
    # only the lock its run held (released by the kernel at the crash) tells it is gone.
    async with SqliteStore(db_path, instance="main") as first:
        session = await first.session_id(KEY)
        cut = await first.append(session, NewMessage(Role.ASSISTANT, "half", status=STREAMING))
        await first.acquire_lease("matrix-sync:@bot:example.org")
        crashed = first.boot
    with raw(db_path) as conn:  # the crash: no clean close was recorded
        conn.execute("UPDATE boots SET closed_at = NULL, host = ?, pid = ? WHERE boot = ?",
                     (socket.gethostname(), os.getpid(), crashed))  # fmt: skip
        conn.execute(
            "INSERT INTO leases VALUES ('matrix-sync:@bot:example.org', ?, 'main', ?, ?, ?)",
            (crashed, socket.gethostname(), os.getpid(), "2026-11-26T10:00:00+00:00"),
        )
    async with SqliteStore(db_path, instance="main") as restarted:
        assert [c.message_id for c in await restarted.mark_interrupted()] == [cut]
        await restarted.acquire_lease("matrix-sync:@bot:example.org")
        assert await restarted.running_elsewhere() == []
