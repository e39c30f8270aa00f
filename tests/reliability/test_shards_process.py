"""Two real bot processes, Discord shards 0 and 1 of 2, sharing one PostgreSQL database.

Each bot is ``python -m ollabot_app run`` in a child process with ``[discord] shard_count = 2``
and its own ``shard_ids``, pointed at the fake Discord (which shards as Discord does) and the
fake Ollama running in this process, with ``OLLABOT_DATABASE_URL`` naming one fresh database on
the session's PostgreSQL server. The test reads that database directly, as an operator would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.discord.helpers import is_finished, without_footer
from tests.fakes.fake_discord import FakeChannel, FakeDiscord, FakeMessage, FakeUser
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.reliability.conftest import BotProcess, SpawnBot, discord_bot_toml
from tests.reliability.test_faults_process import eventually

WITHIN = 60.0  # a safety net for a loaded machine, not a timing assertion


@dataclass
class Shards:
    """Two guilds, one on each shard of two, with a channel and a member each."""

    fake: FakeDiscord
    alice: FakeUser
    chan: dict[int, FakeChannel]  # shard id -> a channel of the guild on that shard

    async def mention(self, shard: int, text: str) -> FakeMessage:
        bot = self.fake.bot_user
        return await self.fake.post_message(
            self.alice, self.chan[shard], f"<@{bot.id}> {text}", mentions=[bot]
        )

    def answers_to(self, question: FakeMessage) -> list[FakeMessage]:
        channel = question.channel_id
        return [m for m in self.fake.bot_messages_in(channel) if m.reference_id == question.id]

    async def answered(self, question: FakeMessage) -> FakeMessage:
        def done() -> FakeMessage | None:
            finished = [m for m in self.answers_to(question) if is_finished(m)]
            return finished[0] if finished else None

        found: FakeMessage = await self.fake.wait_for(done, WITHIN)
        return found


@pytest.fixture
def shards(fake_discord: FakeDiscord) -> Shards:
    fake = fake_discord
    alice = fake.add_user("alice")
    chan = {}
    for shard in (0, 1):
        guild = fake.add_guild(f"guild on shard {shard}", shard=(shard, 2))
        fake.add_member(guild, alice)
        chan[shard] = fake.add_channel(guild, "general")
    return Shards(fake, alice, chan)


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres_url)
    try:
        yield conn
    finally:
        await conn.close()


async def start_shard(
    spawn_bot: SpawnBot,
    directory: Path,
    fake: FakeDiscord,
    ollama: FakeOllama,
    postgres_url: str,
    shard: int,
) -> BotProcess:
    await asyncio.to_thread(directory.mkdir, exist_ok=True)
    before = fake.connected_shards().count((shard, 2))
    config = discord_bot_toml(directory, fake, extra=f"shard_count = 2\nshard_ids = [{shard}]\n")
    env = {"OLLAMA_HOST": ollama.url, "DISCORD_TOKEN": "t", "OLLABOT_DATABASE_URL": postgres_url}
    bot = await spawn_bot(config, env)
    await bot.wait_for_output("ollabot is running (discord)", within=WITHIN)
    await fake.wait_for(lambda: fake.connected_shards().count((shard, 2)) > before, WITHIN)
    return bot


async def rows(db: asyncpg.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await db.fetch(sql, *args)]


async def test_every_mention_is_answered_once_even_when_two_processes_get_the_same_shard(
    shards: Shards,
    fake_ollama: FakeOllama,
    spawn_bot: SpawnBot,
    tmp_path: Path,
    postgres_url: str,
) -> None:
    fake = shards.fake
    start = (fake, fake_ollama, postgres_url)
    p0 = await start_shard(spawn_bot, tmp_path / "p0", *start, shard=0)
    p1 = await start_shard(spawn_bot, tmp_path / "p1", *start, shard=1)
    assert sorted(fake.connected_shards()) == [(0, 2), (1, 2)]

    questions = [await shards.mention(shard, f"q{shard}-{i}") for i in range(3) for shard in (0, 1)]
    for question in questions:
        answer = await shards.answered(question)
        assert without_footer(answer.content) == f"echo: {question.content.split('> ')[1]}"

    # A misconfigured third process also runs shard 0: both receive every event of its guild,
    # and the database's claim decides who answers. Nobody refuses to start.
    twin = await start_shard(spawn_bot, tmp_path / "twin", *start, shard=0)
    assert sorted(fake.connected_shards()) == [(0, 2), (0, 2), (1, 2)]
    doubled = [await shards.mention(0, f"twice-{i}") for i in range(4)]
    for question in doubled:
        await shards.answered(question)
    await fake_ollama.wait_for_idle(within=WITHIN)

    for question in [*questions, *doubled]:
        assert len(shards.answers_to(question)) == 1, question.content
    assert len(fake_ollama.requests) == len(questions) + len(doubled)
    skipped = p0.log.count("event already answered") + twin.log.count("event already answered")
    assert skipped == len(doubled)
    assert "event already answered" not in p1.log
    for bot in (p0, p1, twin):
        assert await bot.terminate() == 0


async def test_a_killed_shard_goes_silent_and_after_a_restart_marks_only_its_own_cut_reply(
    shards: Shards,
    fake_ollama: FakeOllama,
    spawn_bot: SpawnBot,
    tmp_path: Path,
    postgres_url: str,
    database: asyncpg.Connection,
) -> None:
    fake = shards.fake
    start = (fake, fake_ollama, postgres_url)
    p0 = await start_shard(spawn_bot, tmp_path / "p0", *start, shard=0)
    p1 = await start_shard(spawn_bot, tmp_path / "p1", *start, shard=1)

    # One reply on each shard, each held open part way (shard 0's once its message is shown).
    words = [f"w{i} " for i in range(12)]
    release_0, release_1 = asyncio.Event(), asyncio.Event()
    fake_ollama.script(
        Reply(tokens=words * 40, token_delay=0.01, hold_after=200, release=release_0),
        Reply(tokens=words, hold_after=4, release=release_1),
    )
    cut_question = await shards.mention(0, "count on shard 0")
    await fake_ollama.wait_for_held(1, within=WITHIN)
    live_question = await shards.mention(1, "count on shard 1")
    await fake_ollama.wait_for_held(2, within=WITHIN)

    streaming = (
        "SELECT owner_instance, refs IS NOT NULL FROM messages WHERE status = 'streaming'"
        " ORDER BY id"
    )

    async def both_streaming() -> bool:
        # Shard 0's reply must have saved its Discord message (refs) for the restart to mend it.
        found = await rows(database, streaming)
        return [r[0] for r in found] == ["discord-shards-0", "discord-shards-1"] and found[0][1]

    await eventually_async(both_streaming)
    held = [
        r[0] for r in await rows(database, "SELECT id FROM messages WHERE status = 'streaming'")
    ]
    await p0.kill()

    # Shard 0 is silent while its process is down; shard 1 goes on as if nothing happened.
    unheard = await shards.mention(0, "anyone on shard 0?")
    heard = await shards.mention(1, "still there on shard 1?")
    assert without_footer((await shards.answered(heard)).content) == (
        "echo: still there on shard 1?"
    )
    assert shards.answers_to(unheard) == []

    # Restarted, shard 0 marks its own cut reply, and never the one shard 1 is still writing.
    p0 = await start_shard(spawn_bot, tmp_path / "p0", *start, shard=0)
    await p0.wait_for_output("marked replies cut by a crash as interrupted", within=WITHIN)
    statuses = await rows(
        database,
        "SELECT owner_instance, status FROM messages WHERE id = ANY($1::bigint[]) ORDER BY id",
        held,
    )
    assert statuses == [("discord-shards-0", "interrupted"), ("discord-shards-1", "streaming")]
    [cut] = shards.answers_to(cut_question)
    mended = await eventually(lambda: is_finished(cut) and cut, within=WITHIN)
    assert mended.content.endswith("⚠️ interrupted: The bot restarted while writing this reply.")
    assert shards.answers_to(unheard) == []  # a fresh session gets nothing sent before it

    release_1.set()
    [live] = shards.answers_to(live_question)
    finished = await eventually(lambda: is_finished(live) and live, within=WITHIN)
    assert without_footer(finished.content).rstrip() == "".join(words).rstrip()
    assert "interrupted" not in finished.content

    async def settled() -> bool:
        found = await rows(database, "SELECT status FROM messages WHERE role = 'assistant'")
        return ("streaming",) not in found

    await eventually_async(settled)
    after = await shards.mention(0, "back on shard 0?")
    assert without_footer((await shards.answered(after)).content) == "echo: back on shard 0?"
    release_0.set()
    for bot in (p0, p1):
        assert await bot.terminate() == 0


async def eventually_async(probe: Any, within: float = WITHIN) -> None:
    """Poll an async ``probe`` until it is true (the bots are other processes)."""
    async with asyncio.timeout(within):
        while True:
            if await probe():
                return
            await asyncio.sleep(0.05)
