"""Ollama failing under a running Discord bot: a reply cut mid-stream, an outage, a lost model.

Everything runs through the real discord.py client against the fake Discord gateway, the real
engine on a SQLite file, and the real ``ollama`` client against the fake Ollama server.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord import DiscordBot, running_bot
from bot.config import BotConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.discord.conftest import World, discord_config
from tests.discord.helpers import finished_reply, without_footer
from tests.fakes.fake_discord import FakeChannel, FakeMessage
from tests.fakes.fake_ollama import FakeOllama, Reply


def fault_config(fake_ollama: FakeOllama, db: Path) -> BotConfig:
    """Production settings except quick retries, so an outage is reported in well under a second."""
    return BotConfig.model_validate(
        {
            "ollama": {
                "host": fake_ollama.url,
                "retry_attempts": 3,
                "retry_initial_backoff": 0.02,
                "retry_max_backoff": 0.05,
            },
            "limits": {"user_messages_per_minute": 1000},
            "storage": {"path": str(db)},
        }
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
async def bot(world: World, fake_ollama: FakeOllama, db_path: Path) -> AsyncIterator[DiscordBot]:
    config = fault_config(fake_ollama, db_path)
    engine = Engine(OllamaChatModel(fake_ollama.url), SqliteStore(db_path), config)
    async with engine, running_bot(engine, discord_config(world.fake), "t") as bot:
        yield bot


async def mention(
    world: World, channel: FakeChannel, text: str, *, reference: FakeMessage | None = None
) -> FakeMessage:
    fake = world.fake
    return await fake.post_message(
        world.alice,
        channel,
        f"<@{fake.bot_user.id}> {text}",
        mentions=[fake.bot_user],
        reference=reference,
    )


def stored_replies(db: Path) -> list[tuple[str, str]]:
    """(content, status) of every assistant message in the bot's database, oldest first."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT content, status FROM messages WHERE role = 'assistant' ORDER BY id"
        ).fetchall()
    return [(str(content), str(status)) for content, status in rows]


async def replies_stored(
    db: Path, expected: list[str], within: float = 5.0
) -> list[tuple[str, str]]:
    """Wait until the stored replies have the ``expected`` statuses (the footer a user sees is
    sent just before the reply is saved); the replies."""
    async with asyncio.timeout(within):
        while True:
            rows = stored_replies(db)
            if [status for _, status in rows] == expected:
                return rows
            await asyncio.sleep(0.02)


def requests_to(fake_ollama: FakeOllama, path: str) -> int:
    return sum(1 for logged, _ in fake_ollama.log if logged == path)


async def test_ollama_dying_mid_reply_marks_it_interrupted_while_others_go_on_then_recovers(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama, db_path: Path
) -> None:
    fake = world.fake
    words = [f"word{i} " for i in range(40)]
    go_a, go_b = asyncio.Event(), asyncio.Event()
    # A's connection is cut after 6 tokens, the way a dying Ollama leaves it (no final chunk).
    # B, in another channel, is streaming from Ollama at the same time.
    fake_ollama.script(
        Reply(tokens=words, token_delay=0.01, drop_after=6, gate=go_a),
        Reply.text("the other channel is fine", gate=go_b),
    )
    await mention(world, world.general, "tell me a long story")
    await fake_ollama.wait_for_requests(1)
    await mention(world, world.in_category, "and you?")
    await fake_ollama.wait_for_requests(2)

    go_a.set()
    [cut] = await finished_reply(fake, world.general.id)
    partial = "".join(words[:6])
    assert cut.content == f"{partial}\n⚠️ interrupted: The connection to Ollama was lost."
    assert fake_ollama.active_streams == 1, "B must still be streaming when A is cut"

    go_b.set()
    [other] = await finished_reply(fake, world.in_category.id)
    assert without_footer(other.content) == "the other channel is fine"
    assert await replies_stored(db_path, ["interrupted", "complete"]) == [
        (partial, "interrupted"),
        ("the other channel is fine", "complete"),
    ]

    # Ollama now stays down: a new message is told so instead of hanging.
    await fake_ollama.stop()
    await mention(world, world.in_category, "still there?")
    [down] = await finished_reply(fake, world.in_category.id, after=1)
    assert "⚠️ error: Cannot reach Ollama at" in down.content

    # Ollama is back: the same bot (no restart) continues the cut conversation, whose context
    # holds the partial answer.
    await fake_ollama.start()
    await fake.post_message(world.alice, world.general, "go on", reference=cut)
    [after] = await finished_reply(fake, world.general.id, after=1)
    assert without_footer(after.content) == "echo: go on"
    history = fake_ollama.requests[-1]["messages"]
    assert {"role": "assistant", "content": partial.rstrip()} in [
        {"role": m["role"], "content": m["content"]} for m in history
    ]


async def test_a_model_removed_from_ollama_is_explained_with_the_installed_ones_without_retries(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama, db_path: Path
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3:8b")
    await mention(world, world.general, "hello")
    await finished_reply(fake, world.general.id)
    fake_ollama.remove_model("llama3.2")
    chats, shows = requests_to(fake_ollama, "/api/chat"), requests_to(fake_ollama, "/api/show")

    await mention(world, world.general, "are you there?")
    [gone] = await finished_reply(fake, world.general.id, after=1)
    expected = "Model 'llama3.2' is not installed. Installed models: qwen3:8b."
    assert expected in gone.content
    # A second message meets the same answer; each message costs one request, never a loop.
    await mention(world, world.general, "and now?")
    [again] = await finished_reply(fake, world.general.id, after=2)
    assert expected in again.content
    assert requests_to(fake_ollama, "/api/chat") - chats == 2
    assert requests_to(fake_ollama, "/api/show") - shows <= 2
    await replies_stored(db_path, ["complete", "error", "error"])
