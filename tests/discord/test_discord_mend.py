"""After a restart, the bot marks on Discord the replies a crash cut (in-process; the SIGKILL
itself is in tests/reliability/test_faults_process.py).

The crash's leftovers are made from real replies: the refs the surfaces stored with them, and the
rows set back to ``streaming`` with part of their text, as the kill would have left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from adapters.discord import DiscordConfig, running_bot
from tests.discord.conftest import EngineFactory, World
from tests.discord.helpers import finished_reply, is_finished
from tests.discord.test_discord_commands import response_of

FOOTER = "⚠️ interrupted: The bot restarted while writing this reply."


def saved_refs(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT refs FROM messages WHERE refs IS NOT NULL").fetchall()
        return [str(r[0]) for r in rows]


def crash_leftovers(db: Path) -> list[str]:
    """Set every assistant reply back to ``streaming`` with its first word only; their refs."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE messages SET status = 'streaming', content = substr(content, 1, 6)"
            " WHERE role = 'assistant'"
        )
    return saved_refs(db)


async def test_a_cut_channel_reply_gets_the_footer_and_a_webhook_one_is_left_with_a_log(
    world: World,
    make_engine: EngineFactory,
    bot_config: DiscordConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = world.fake
    async with make_engine() as engine, running_bot(engine, bot_config, "test-token"):
        await fake.post_message(
            world.alice, world.general, f"<@{fake.bot_user.id}> hello there",
            mentions=[fake.bot_user],
        )  # fmt: skip
        [channel_reply] = await finished_reply(fake, world.general.id)
        inter = await fake.send_slash(world.alice, world.general, "ask", options={"prompt": "hi"})
        await response_of(world, inter)
        # Both replies stored as finished, refs included, before the bot stops.
        # (Polled: the database has no change notifications.)
        async with asyncio.timeout(5):
            while True:
                if len(saved_refs(tmp_path / "bot.db")) == 2:
                    break
                await asyncio.sleep(0.01)
    webhook_reply = fake.messages[inter.original_id or 0]
    shown_by_webhook = webhook_reply.content
    assert sorted(crash_leftovers(tmp_path / "bot.db")) == sorted(
        [f'["{world.general.id}/{channel_reply.id}"]', f'["{webhook_reply.id}"]']
    )

    caplog.set_level(logging.INFO, logger="adapters.discord.mending")
    async with make_engine() as engine, running_bot(engine, bot_config, "test-token") as bot:
        assert bot.mending is not None
        await bot.mending
    assert channel_reply.content == f"echo: \n{FOOTER}"
    assert is_finished(channel_reply)
    assert webhook_reply.content == shown_by_webhook
    assert "cut reply shown through an interaction webhook; not marked" in caplog.text
