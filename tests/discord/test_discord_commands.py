"""Slash commands: moderators, refusals, autocomplete, pull progress, command sync."""

from __future__ import annotations

from adapters.discord import DiscordBot, running_bot
from bot.engine import Engine
from tests.discord.conftest import World, discord_config
from tests.fakes.fake_discord import FakeInteraction
from tests.fakes.fake_ollama import FakeOllama


async def response_of(world: World, inter: FakeInteraction) -> str:
    """The text the user sees as the command's answer."""
    fake = world.fake
    msg = await fake.wait_for(
        lambda: (
            inter.original_id
            and not fake.messages[inter.original_id].loading
            and fake.messages[inter.original_id]
        )
    )
    return msg.content


async def test_non_moderator_model_set_is_refused_privately_and_changes_nothing(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3")
    inter = await fake.send_slash(
        world.alice, world.general, "model", subcommand="set", options={"name": "qwen3"}
    )
    text = await response_of(world, inter)
    assert inter.ephemeral
    assert "moderator" in text.lower()
    shown = await fake.send_slash(world.alice, world.general, "model", subcommand="show")
    assert "qwen3" not in await response_of(world, shown)
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
    )
    await fake.wait_for(lambda: fake_ollama.requests)
    assert fake_ollama.requests[-1]["model"].startswith("llama3.2")


async def test_moderator_model_set_applies_to_the_channel(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.add_model("qwen3")
    inter = await fake.send_slash(
        world.mod, world.general, "model", subcommand="set", options={"name": "qwen3"}
    )
    await response_of(world, inter)
    assert not inter.ephemeral
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
    )
    await fake.wait_for(lambda: fake_ollama.requests)
    assert fake_ollama.requests[-1]["model"].startswith("qwen3")


async def test_configured_role_makes_a_moderator(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake.add_member(world.guild, world.alice, [world.helper_role])
    fake_ollama.add_model("qwen3")
    config = discord_config(fake, moderator_roles=["Helpers"])
    async with running_bot(engine, config, "t"):
        inter = await fake.send_slash(
            world.alice, world.general, "model", subcommand="set", options={"name": "qwen3"}
        )
        await response_of(world, inter)
        assert not inter.ephemeral


async def test_model_names_are_autocompleted_from_ollama(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3:8b")
    fake_ollama.add_model("mistral")
    choices = await world.fake.autocomplete(
        world.mod, world.general, "model", subcommand="set", option="name", value="qw"
    )
    assert [c["value"] for c in choices] == ["qwen3:8b"]


async def test_non_moderator_pull_is_refused(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    inter = await world.fake.send_slash(
        world.alice, world.general, "model", subcommand="pull", options={"name": "phi4"}
    )
    await response_of(world, inter)
    assert inter.ephemeral
    assert "phi4:latest" not in fake_ollama.models


async def test_help_settings_and_stats_answer(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    for name in ("help", "settings", "stats"):
        inter = await fake.send_slash(world.alice, world.general, name)
        assert await response_of(world, inter)


async def test_commands_sync_to_configured_guilds_once(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    config = discord_config(fake, guild_ids=[world.guild.id])
    async with running_bot(engine, config, "t") as bot:
        assert bot.synced
    async with running_bot(engine, config, "t") as bot:
        assert not bot.synced
    assert [g for g, _ in fake.command_syncs] == [world.guild.id]
    names = {c["name"] for c in fake.command_syncs[0][1]}
    assert {"chat", "ask", "model", "mode", "system", "think", "cot", "settings"} <= names
    assert {"reset", "stop", "stats", "help"} <= names
