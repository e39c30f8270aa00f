"""Discord sharding: the fake shards as Discord does, and the bot runs the shards it is given.

The real discord.py ``AutoShardedClient`` against the fake gateway: each session IDENTIFYs with
``shard: [id, count]`` and gets only its shard's guilds, ``(guild_id >> 22) % count``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest
from pydantic import ValidationError

from adapters.discord.client import ShardedDiscordBot, running_bot
from adapters.discord.config import DiscordConfig
from bot.conversation.engine import Engine
from tests.discord.conftest import discord_config
from tests.discord.helpers import finished_reply, without_footer
from tests.fakes.fake_discord import FakeDiscord, pointed_at


async def test_a_bot_on_shard_1_of_2_gets_and_answers_only_that_shards_guilds(
    fake_discord: FakeDiscord, engine: Engine
) -> None:
    fake = fake_discord
    on_0 = fake.add_guild("zero", shard=(0, 2))
    on_1 = fake.add_guild("one", shard=(1, 2))
    assert (fake.shard_of(on_0.id, 2), fake.shard_of(on_1.id, 2)) == (0, 1)
    alice = fake.add_user("alice")
    for guild in (on_0, on_1):
        fake.add_member(guild, alice)
    chan_0 = fake.add_channel(on_0, "general")
    chan_1 = fake.add_channel(on_1, "general")
    config = discord_config(fake, shard_count=2, shard_ids=[1])

    async with running_bot(engine, config, "token") as bot:
        assert isinstance(bot, ShardedDiscordBot)
        assert fake.identified_shards == [(1, 2)]
        assert [g.id for g in bot.guilds] == [on_1.id]
        mention = f"<@{fake.bot_user.id}> hello"
        await fake.post_message(alice, chan_0, mention, mentions=[fake.bot_user])
        await fake.post_message(alice, chan_1, mention, mentions=[fake.bot_user])
        [reply] = await finished_reply(fake, chan_1.id)
        assert without_footer(reply.content) == "echo: hello"
    # The other shard's message reached no session: no process of shard 0 runs.
    assert fake.bot_messages_in(chan_0.id) == []


class _AutoProbe(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # Discord's 5 s between IDENTIFYs is not what this test is about


async def test_an_auto_sharded_client_takes_the_recommended_count_from_gateway_bot() -> None:
    async with FakeDiscord() as fake:
        fake.recommended_shards = 2
        guilds = [fake.add_guild(f"g{i}", shard=(i % 2, 2)) for i in range(4)]
        with pointed_at(fake):
            client = _AutoProbe(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            ready = asyncio.Event()
            client.event(_setter(ready))
            task = asyncio.create_task(client.start("token"))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                assert sorted(fake.identified_shards) == [(0, 2), (1, 2)]
                assert client.shard_count == 2
                by_shard = {g.id: g.shard_id for g in client.guilds}
                assert by_shard == {g.id: i % 2 for i, g in enumerate(guilds)}
            finally:
                await client.close()
                await task


def _setter(ready: asyncio.Event) -> Any:
    async def on_ready() -> None:
        ready.set()

    return on_ready


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"shard_ids": [0]}, "shard_ids needs shard_count"),
        ({"shard_count": 2, "shard_ids": [2]}, "outside 0..1"),
        ({"shard_count": 2, "shard_ids": []}, "at least one shard"),
        ({"shard_count": 2, "shard_ids": [1, 1]}, "twice"),
        ({"shard_count": 0}, "greater than or equal to 1"),
    ],
)
def test_shard_settings_that_cannot_work_are_refused(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        DiscordConfig.model_validate(table)
