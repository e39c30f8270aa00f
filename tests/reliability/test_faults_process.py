"""The real bot process under faults: Ollama down when it starts, SIGKILL in the middle of a reply.

The bot is ``python -m ollabot_app run`` in a child process, its ``[discord]`` table pointed at
the fake Discord running in this process and ``OLLAMA_HOST`` at the fake Ollama, with its own
SQLite file. The test reads that file directly, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.discord.conftest import World
from tests.discord.helpers import finished_reply, is_finished, without_footer
from tests.fakes.fake_discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.reliability.conftest import SpawnBot, discord_bot_toml

T = TypeVar("T")


async def eventually(predicate: Callable[[], T | None], within: float = 30.0) -> T:
    """Poll until ``predicate`` returns something truthy; that value."""
    # Polling: the bot is another process, and its database has no change notifications.
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.05)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


async def mention(world: World, text: str, *, reference: FakeMessage | None = None) -> FakeMessage:
    fake = world.fake
    return await fake.post_message(
        world.alice,
        world.general,
        f"<@{fake.bot_user.id}> {text}",
        mentions=[fake.bot_user],
        reference=reference,
    )


async def redeliver(fake: FakeDiscord, msg: FakeMessage) -> None:
    """Send the same MESSAGE_CREATE again, as Discord may after a reconnect."""
    channel = fake.channels[msg.channel_id]
    payload = fake.message_payload(msg)
    guild = fake.guilds[channel.guild_id] if channel.guild_id else None
    if guild is not None:
        payload["member"] = guild.member_payload(msg.author, with_user=False)
        payload["mentions"] = [
            {**u.payload(), "member": guild.member_payload(u, with_user=False)}
            for u in msg.mentions
        ]
    await fake.dispatch("MESSAGE_CREATE", payload)


async def command_answer(fake: FakeDiscord, inter: FakeInteraction) -> str:
    def shown() -> str | None:
        msg = fake.messages.get(inter.original_id or 0)
        return msg.content if msg is not None and not msg.loading else None

    return await eventually(shown)


async def test_bot_started_while_ollama_is_down_says_so_and_recovers_by_itself(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    fake = world.fake
    host = fake_ollama.url
    await fake_ollama.stop()
    config = discord_bot_toml(tmp_path, fake)
    bot = await spawn_bot(config, {"OLLAMA_HOST": host, "DISCORD_TOKEN": "t"})
    await bot.wait_for_output("ollabot is running (discord)")
    assert f"warning: Cannot reach Ollama at {host}." in bot.log
    await fake.wait_connected(within=30)

    await mention(world, "hello?")
    [down] = await finished_reply(fake, world.general.id, within=30)
    assert down.content.startswith(f"⚠️ error: Cannot reach Ollama at {host}. Is it running?")

    await fake_ollama.start()  # same port: nothing is restarted on the bot's side
    await mention(world, "and now?")
    [up] = await finished_reply(fake, world.general.id, after=1, within=30)
    assert without_footer(up.content) == "echo: and now?"
    assert await bot.terminate() == 0


async def test_sigkill_mid_reply_loses_nothing_marks_the_reply_and_answers_nothing_twice(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    fake = world.fake
    config = discord_bot_toml(tmp_path, fake)
    db = tmp_path / "ollabot.db"
    env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": "t"}
    bot = await spawn_bot(config, env)
    await fake.wait_connected(within=30)

    # A setting and a finished exchange, before the crash.
    inter = await fake.send_slash(
        world.mod, world.general, "mode", subcommand="set", options={"mode": "creative"}
    )
    assert "creative" in (await command_answer(fake, inter)).lower()
    first = await mention(world, "remember the number 7")
    # (The first bot message in the channel is the command's answer.)
    [answer] = await finished_reply(fake, world.general.id, after=1, within=30)

    # A slow reply in the same conversation, killed once part of it is shown and saved.
    words = [f"w{i} " for i in range(400)]
    fake_ollama.script(Reply(tokens=words, token_delay=0.02))
    cut_question = await fake.post_message(world.alice, world.general, "count", reference=answer)

    def saved_partial() -> str | None:
        rows = query(db, "SELECT content FROM messages WHERE status = 'streaming'")
        return str(rows[0][0]) if rows and rows[0][0] else None

    partial = await eventually(saved_partial)
    await bot.kill()
    assert partial.startswith("w0 w1 ")
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    cut = next(
        m for m in fake.bot_messages_in(world.general.id) if m.reference_id == cut_question.id
    )
    assert "w399" not in cut.content
    assert not is_finished(cut)
    # The store knows which Discord message shows the reply (its channel, then its id).
    [(refs,)] = query(db, "SELECT refs FROM messages WHERE status = 'streaming'")
    assert refs == f'["{world.general.id}/{cut.id}"]'
    chats_before_restart = len(fake_ollama.requests)

    # Restart: the same config and database.
    identified = fake.identifies
    bot = await spawn_bot(config, env)
    await eventually(lambda: fake.identifies > identified)
    await fake.wait_connected(within=30)
    await bot.wait_for_output("ollabot is running (discord)")
    statuses = query(db, "SELECT role, content, status FROM messages ORDER BY id")
    assert statuses == [
        ("user", "remember the number 7", "complete"),
        ("assistant", "echo: remember the number 7", "complete"),
        ("user", "count", "complete"),
        ("assistant", partial, "interrupted"),
    ]
    assert "marked replies cut by a crash as interrupted" in bot.log

    # Discord delivers both earlier messages again: neither is answered a second time.
    await redeliver(fake, first)
    await redeliver(fake, cut_question)
    # The conversation goes on, with its setting and its whole history, cut reply included.
    await fake.post_message(world.alice, world.general, "which number?", reference=cut)
    [again] = await finished_reply(fake, world.general.id, after=3, within=30)
    assert without_footer(again.content) == "echo: which number?"
    assert len(fake_ollama.requests) == chats_before_restart + 1
    request = fake_ollama.requests[-1]
    assert request["options"]["temperature"] == 1.0, "the creative mode survived the crash"
    assert [m["content"] for m in request["messages"][1:]] == [
        "remember the number 7",
        "echo: remember the number 7",
        "count",
        partial.rstrip(),
        "which number?",
    ]
    answered = [m.reference_id for m in fake.bot_messages_in(world.general.id) if m.reference_id]
    assert answered.count(first.id) == 1
    assert answered.count(cut_question.id) == 1
    # After the restart the cut reply's message shows the text the bot kept, and says it was
    # cut: the interrupted footer (no finished reply lacks a footer any more).
    mended = await eventually(lambda: is_finished(cut) and cut)
    assert mended.content == (
        f"{partial}\n⚠️ interrupted: The bot restarted while writing this reply."
    )
    assert await bot.terminate() == 0
    assert bot.log.count('"message": "event already answered"') == 2
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
