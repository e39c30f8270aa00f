"""The fake Discord speaks enough of the protocol for the real discord.py client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from tests.fakes.fake_discord import FakeDiscord, pointed_at


class _Probe(discord.Client):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[str] = []
        self.ready = asyncio.Event()

        @self.tree.command(name="ping")
        async def ping(interaction: discord.Interaction, word: str) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content=f"pong {word}")

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message.content)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(rate_limit=(3, 1.0)) as fake:
        yield fake


@pytest.fixture
async def probe(fake: FakeDiscord) -> AsyncIterator[_Probe]:
    with pointed_at(fake):
        client = _Probe()
        task = asyncio.create_task(client.start("token"))
        try:
            await asyncio.wait_for(client.ready.wait(), 5)
            yield client
        finally:
            await client.close()
            await task


async def test_client_logs_in_and_sees_guild_channels(fake: FakeDiscord) -> None:
    guild = fake.add_guild()
    chan = fake.add_channel(guild, "general")
    with pointed_at(fake):
        client = _Probe()
        task = asyncio.create_task(client.start("token"))
        try:
            await asyncio.wait_for(client.ready.wait(), 5)
            assert client.get_channel(chan.id) is not None
            assert fake.identifies == 1
        finally:
            await client.close()
            await task


async def test_slash_command_defer_then_edit_shows_text(fake: FakeDiscord, probe: _Probe) -> None:
    guild = fake.add_guild()
    chan = fake.add_channel(guild, "general")
    user = fake.add_user("alice")
    fake.add_member(guild, user)
    await fake.send_slash(user, chan, "ping", options={"word": "hi"})
    msg = await fake.wait_for(
        lambda: next((m for m in fake.bot_messages_in(chan.id) if m.content), None)
    )
    assert msg.content == "pong hi"


async def test_channel_rate_limit_answers_429_and_client_retries(
    fake: FakeDiscord, probe: _Probe
) -> None:
    guild = fake.add_guild()
    chan = fake.add_channel(guild, "general")
    channel = await probe.fetch_channel(chan.id)
    assert isinstance(channel, discord.TextChannel)
    fake.rate_limit_headers = False
    for i in range(5):
        await channel.send(f"m{i}")
    assert [m.content for m in fake.bot_messages_in(chan.id)] == [f"m{i}" for i in range(5)]
    assert fake.rate_limited_count >= 1


async def test_gateway_drop_is_resumed_and_events_delivered(
    fake: FakeDiscord, probe: _Probe
) -> None:
    guild = fake.add_guild()
    chan = fake.add_channel(guild, "general")
    user = fake.add_user("bob")
    await fake.drop_gateway()
    await fake.post_message(user, chan, "after the drop")
    await fake.wait_connected()
    for _ in range(100):
        if "after the drop" in probe.seen:
            break
        await asyncio.sleep(0.02)
    assert "after the drop" in probe.seen
    assert fake.resumes == 1
