"""Each settings scope has its own moderators (issue 10, point 1).

The fake Discord computes ``member.permissions`` for the channel of the interaction, overwrites
included, as Discord does, and the guild's roles are in the bot's cache: a member given Manage
Channels by an overwrite on one channel moderates that channel, not the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.discord import DiscordBot, running_bot
from bot.conversation.engine import Engine
from bot.store.port import Scope, ScopeKind
from tests.discord.conftest import World, discord_config
from tests.discord.test_discord_commands import response_of
from tests.fakes.fake_discord import (
    PERM_MANAGE_CHANNELS,
    PERM_MANAGE_GUILD,
    PERM_MANAGE_THREADS,
    FakeChannel,
)
from tests.fakes.fake_ollama import FakeOllama


async def model_set(world: World, user: object, channel: FakeChannel, scope: str) -> str:
    inter = await world.fake.send_slash(
        user,  # type: ignore[arg-type]
        channel,
        "model",
        subcommand="set",
        options={"name": "qwen3", "scope": scope},
    )
    return await response_of(world, inter)


async def model_asked_in(world: World, fake_ollama: FakeOllama, channel: FakeChannel) -> str:
    """The model the bot asks Ollama for when someone mentions it in ``channel``."""
    fake = world.fake
    before = len(fake_ollama.requests)
    await fake.post_message(
        world.mod, channel, f"<@{fake.bot_user.id}> which model?", mentions=[fake.bot_user]
    )
    await fake.wait_for(lambda: len(fake_ollama.requests) > before)
    return str(fake_ollama.requests[-1]["model"])


@pytest.fixture
def overwrite_world(world: World, fake_ollama: FakeOllama) -> World:
    """Alice gets Manage Channels on #general only, by a member overwrite."""
    fake_ollama.add_model("qwen3")
    world.fake.add_overwrite(world.general, world.alice, allow=PERM_MANAGE_CHANNELS)
    return world


@pytest.fixture
async def scoped_bot(overwrite_world: World, engine: Engine) -> AsyncIterator[DiscordBot]:
    async with running_bot(engine, discord_config(overwrite_world.fake), "t") as bot:
        yield bot


async def test_a_channel_overwrite_does_not_make_a_server_moderator(
    overwrite_world: World, scoped_bot: DiscordBot, engine: Engine, fake_ollama: FakeOllama
) -> None:
    world = overwrite_world
    text = await model_set(world, world.alice, world.general, "server")
    assert "needs a moderator of the server" in text
    server = Scope("discord", ScopeKind.SERVER, str(world.guild.id))
    assert await engine.store.get_settings(server) == {}
    # Every other channel of the server still answers with the default model.
    assert (await model_asked_in(world, fake_ollama, world.in_category)).startswith("llama3.2")


async def test_the_overwrite_makes_a_moderator_of_that_channel_only(
    overwrite_world: World, scoped_bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    world = overwrite_world
    assert "now uses `qwen3`" in await model_set(world, world.alice, world.general, "channel")
    assert (await model_asked_in(world, fake_ollama, world.general)).startswith("qwen3")
    refused = await model_set(world, world.alice, world.in_category, "channel")
    assert "needs a moderator of the channel" in refused
    assert (await model_asked_in(world, fake_ollama, world.in_category)).startswith("llama3.2")


async def test_manage_server_from_a_role_moderates_the_server(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3")
    admins = fake.add_role(world.guild, "Admins", PERM_MANAGE_GUILD)
    fake.add_member(world.guild, world.alice, [admins])
    async with running_bot(engine, discord_config(fake), "t"):
        assert "now uses `qwen3`" in await model_set(world, world.alice, world.general, "server")
        assert (await model_asked_in(world, fake_ollama, world.in_category)).startswith("qwen3")


async def test_a_configured_moderator_role_moderates_the_server(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3")
    fake.add_member(world.guild, world.alice, [world.helper_role])
    async with running_bot(engine, discord_config(fake, moderator_roles=["Helpers"]), "t"):
        assert "now uses `qwen3`" in await model_set(world, world.alice, world.general, "server")


async def test_a_thread_needs_manage_threads(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3")
    # The Mods role has Manage Channels, not Manage Threads; Alice gets Manage Threads on the
    # parent channel, which a thread follows.
    fake.add_overwrite(world.general, world.alice, allow=PERM_MANAGE_THREADS)
    async with running_bot(engine, discord_config(fake), "t"):
        thread = await fake.add_thread(world.general, "talk", world.alice)
        await fake.wait_for(lambda: thread.id in fake.channels)
        refused = await model_set(world, world.mod, thread, "thread")
        assert "needs a moderator of the thread" in refused
        assert "now uses `qwen3`" in await model_set(world, world.alice, thread, "thread")
        stored = await engine.store.get_settings(
            Scope("discord", ScopeKind.THREAD, f"{world.general.id}/{thread.id}")
        )
        assert stored == {"model": "qwen3"}
