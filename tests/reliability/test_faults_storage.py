"""The database under faults: locked by another process, a full disk, a file size limit.

Each test drives the Discord adapter (the real discord.py client against the fake gateway) and
checks what the user is told, what the logs say, that the file passes ``PRAGMA integrity_check``,
and that the bot works again once the cause is gone, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import running_bot
from adapters.matrix import MatrixBot, MatrixConfig
from bot.config import BotConfig
from ollabot_app.wiring import open_engine
from tests.discord.conftest import World, discord_config
from tests.discord.helpers import finished_reply, without_footer
from tests.fakes.fake_ollama import FakeOllama
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import Human, eventually, unique
from tests.reliability.conftest import SpawnBot, discord_bot_toml

BUSY = "⚠️ error: The bot's database is busy; try again in a moment."
FULL = "⚠️ error: The bot's database is full; ask the bot's operator to free disk space."
IO_ERROR = (
    "⚠️ error: The bot could not read or write its database (disk I/O error); "
    "ask the bot's operator."
)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def config_for(fake_ollama: FakeOllama, db: Path, **storage: Any) -> BotConfig:
    return BotConfig.model_validate(
        {
            "ollama": {"host": fake_ollama.url, "retry_initial_backoff": 0.02},
            "limits": {"user_messages_per_minute": 1000},
            "storage": {"path": str(db), **storage},
        }
    )


async def ask(world: World, db: Path, text: str, *, after: int) -> str:
    """Mention the bot in #general; the text of its finished reply, once it is stored too."""
    fake = world.fake
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> {text}", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id, after=after, within=30)
    # The finished reply is shown just before it is saved: wait for the save, so that the next
    # fault hits the next message and not this one.
    async with asyncio.timeout(30):
        while True:
            if not query(db, "SELECT 1 FROM messages WHERE status = 'streaming'"):
                return reply.content
            await asyncio.sleep(0.02)


def store_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "error", None) == "StoreError"]


async def test_locked_database_is_explained_logged_and_recovered_from(
    world: World, fake_ollama: FakeOllama, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    db = tmp_path / "bot.db"
    # The configured busy timeout (storage.busy_timeout_ms), small so the test does not wait.
    config = config_for(fake_ollama, db, busy_timeout_ms=50)
    async with open_engine(config) as engine, running_bot(engine, discord_config(world.fake), "t"):
        assert without_footer(await ask(world, db, "before", after=0)) == "echo: before"
        # Another process (a backup, an sqlite3 shell) holds the write lock.
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            assert await ask(world, db, "while locked", after=1) == BUSY
            other.execute("ROLLBACK")
        assert without_footer(await ask(world, db, "after", after=2)) == "echo: after"

    [failure] = store_failures(caplog)
    assert failure.levelno >= logging.WARNING
    assert failure.detail == (  # type: ignore[attr-defined]
        "SQLite claim event failed: SQLITE_BUSY: database is locked"
    )
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT content, status FROM messages ORDER BY id") == [
        ("before", "complete"),
        ("echo: before", "complete"),
        ("after", "complete"),
        ("echo: after", "complete"),
    ]


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system has no space left."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    assert shutil.disk_usage(directory).free == 0
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (a real file system that fills up); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE test covers this case")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_is_explained_logged_and_recovered_from_once_space_is_freed(
    world: World,
    fake_ollama: FakeOllama,
    small_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    db = small_disk / "bot.db"
    config = config_for(fake_ollama, db)
    async with open_engine(config) as engine, running_bot(engine, discord_config(world.fake), "t"):
        assert without_footer(await ask(world, db, "before", after=0)) == "echo: before"
        filler = fill(small_disk)
        assert await ask(world, db, "no space", after=1) == FULL
        filler.unlink()
        assert without_footer(await ask(world, db, "after", after=2)) == "echo: after"

    [failure] = store_failures(caplog)
    assert failure.levelno >= logging.WARNING
    assert "SQLITE_FULL" in failure.detail  # type: ignore[attr-defined]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert [row[0] for row in query(db, "SELECT content FROM messages ORDER BY id")] == [
        "before",
        "echo: before",
        "after",
        "echo: after",
    ]


async def test_file_size_limit_on_the_bot_process_is_explained_and_lifted_without_restart(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    # Works without root: RLIMIT_FSIZE on the bot's own process. CPython ignores SIGXFSZ, so a
    # write past the limit fails with EFBIG, which SQLite reports as a disk I/O error.
    fake = world.fake
    db = tmp_path / "ollabot.db"
    config = discord_bot_toml(tmp_path, fake)
    bot = await spawn_bot(config, {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": "t"})
    await fake.wait_connected(within=30)
    assert without_footer(await ask(world, db, "before", after=0)) == "echo: before"

    wal = db.with_name(db.name + "-wal")
    limit = wal.stat().st_size  # no file of the bot may grow any more
    unlimited = resource.RLIM_INFINITY
    resource.prlimit(bot.pid, resource.RLIMIT_FSIZE, (limit, unlimited))
    assert await ask(world, db, "too big", after=1) == IO_ERROR
    resource.prlimit(bot.pid, resource.RLIMIT_FSIZE, (unlimited, unlimited))
    assert without_footer(await ask(world, db, "after", after=2)) == "echo: after"

    assert await bot.terminate() == 0
    assert "SQLITE_IOERR" in bot.log
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert [row[0] for row in query(db, "SELECT content FROM messages ORDER BY id")] == [
        "before",
        "echo: before",
        "after",
        "echo: after",
    ]


@pytest.mark.synapse
async def test_matrix_bot_keeps_syncing_through_a_locked_database_and_answers_after(
    synapse: SynapseServer,
    human: Human,
    fake_ollama: FakeOllama,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    user_id, token = synapse.register(unique("lockbot"))
    synapse.lift_ratelimit(user_id)
    # A short long-poll, so that the sync loop saves its token while the database is locked.
    matrix = MatrixConfig(homeserver=synapse.url, user_id=user_id, sync_timeout_ms=200)
    db = tmp_path / "bot.db"
    config = config_for(fake_ollama, db, busy_timeout_ms=50)
    async with open_engine(config) as engine, MatrixBot(engine, matrix, access_token=token) as bot:
        room_id = await human.create_room(invite=(user_id,))
        await human.wait_joined(room_id, user_id)

        async def answer(text: str) -> str:
            asked = await human.send(room_id, text, mention=user_id)
            [reply] = await eventually(lambda: human.replies_to(room_id, user_id, asked))
            await bot.idle()
            return await human.visible_text(room_id, reply["event_id"])

        async def sync_token_not_saved() -> bool:
            return any("sync token not saved" in r.getMessage() for r in caplog.records)

        assert (await answer("before")).startswith("echo: before")
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            assert "The bot's database is busy; try again in a moment." in await answer("locked")
            await eventually(sync_token_not_saved)
            other.execute("ROLLBACK")
        # The sync loop lived through it: new messages are still received and answered.
        assert (await answer("after")).startswith("echo: after")

    assert store_failures(caplog)[0].levelno >= logging.WARNING
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
