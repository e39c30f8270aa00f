"""Slash commands: moderators, refusals, autocomplete, pull progress, command sync."""

from __future__ import annotations

import asyncio

from adapters.discord import DiscordBot, running_bot
from bot.conversation.engine import Engine
from tests.discord.conftest import World, discord_config
from tests.fakes.fake_discord import FakeInteraction
from tests.fakes.fake_ollama import FakeOllama, Reply


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


async def test_help_on_discord_lists_ask_and_chat_first(world: World, bot: DiscordBot) -> None:
    inter = await world.fake.send_slash(world.alice, world.general, "help")
    lines = (await response_of(world, inter)).splitlines()
    assert lines[1:3] == [
        "- `ask <prompt>`: answer once, here",
        "- `chat <prompt>`: start a conversation in a new thread",
    ]
    assert any(line.startswith("- `context show") for line in lines)


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
    assert {
        "chat",
        "ask",
        "model",
        "mode",
        "system",
        "context",
        "think",
        "cot",
        "settings",
    } <= names
    assert {"reset", "stop", "stats", "help"} <= names


async def test_moderator_settings_commands_change_what_the_model_gets(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    steps: list[tuple[str, str | None, dict[str, object]]] = [
        ("mode", "set", {"mode": "precise"}),
        ("mode", "show", {}),
        ("system", "set", {"text": "Answer like a pirate."}),
        ("system", "show", {}),
        ("think", None, {"on": True}),
    ]
    for command, sub, options in steps:
        inter = await fake.send_slash(
            world.mod, world.general, command, subcommand=sub, options=options
        )
        text = await response_of(world, inter)
        assert not text.startswith("⚠️"), (command, sub, text)
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
    )
    await fake.wait_for(lambda: fake_ollama.requests)
    system = fake_ollama.requests[-1]["messages"][0]
    assert system["role"] == "system"
    assert "pirate" in system["content"]
    clear = await fake.send_slash(world.mod, world.general, "system", subcommand="clear")
    assert not (await response_of(world, clear)).startswith("⚠️")


async def test_moderator_context_set_is_the_window_every_request_runs_with(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    refused = await fake.send_slash(
        world.alice, world.general, "context", subcommand="set", options={"tokens": 2048}
    )
    assert "moderator" in (await response_of(world, refused)).lower()
    done = await fake.send_slash(
        world.mod, world.general, "context", subcommand="set", options={"tokens": 2048}
    )
    assert not (await response_of(world, done)).startswith("⚠️")
    shown = await fake.send_slash(world.alice, world.general, "context", subcommand="show")
    assert "2,048 tokens" in await response_of(world, shown)
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
    )
    await fake.wait_for(lambda: fake_ollama.requests)
    assert fake_ollama.requests[-1]["options"]["num_ctx"] == 2048


async def test_reset_in_a_thread_forgets_the_conversation(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "number 7"})
    thread = await fake.wait_for(lambda: next(iter(fake.threads_of(world.general.id)), None))
    await fake.wait_for(lambda: fake_ollama.streams_completed == 1)
    reset = await fake.send_slash(world.alice, thread, "reset")
    await response_of(world, reset)
    await fake.post_message(world.alice, thread, "what number?")
    await fake.wait_for(lambda: fake_ollama.streams_completed == 2)
    users = [m["content"] for m in fake_ollama.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["what number?"]


async def test_chat_where_threads_are_forbidden_says_so(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake.threads_forbidden = True
    inter = await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "hi"})
    text = await response_of(world, inter)
    assert "could not open a thread" in text
    assert fake_ollama.requests == []


async def test_ask_in_a_bot_thread_joins_its_conversation(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "first"})
    thread = await fake.wait_for(lambda: next(iter(fake.threads_of(world.general.id)), None))
    await fake.wait_for(lambda: fake_ollama.streams_completed == 1)
    await fake.send_slash(world.alice, thread, "ask", options={"prompt": "second"})
    await fake.wait_for(lambda: fake_ollama.streams_completed == 2)
    users = [m["content"] for m in fake_ollama.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["first", "second"]


async def test_slow_command_is_deferred_then_answered(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    gate = asyncio.Event()
    fake_ollama.script(Reply(tokens=["Step 1: think.\n", "Solution: 42"], gate=gate))
    inter = await fake.send_slash(world.alice, world.general, "cot", options={"task": "6*7"})
    await fake.wait_for(lambda: inter.callback_type == 5, within=5)
    gate.set()
    text = await response_of(world, inter)
    assert "42" in text


async def test_cot_is_a_reply_its_steps_stream_and_stop_ends_it(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama, engine: Engine
) -> None:
    fake = world.fake
    hold = asyncio.Event()  # never set: the model is stuck after its first step
    tokens = ['{"steps": ["1. Multiply', ' 6 by 7"', ', "Che', 'ck"]}']
    fake_ollama.script(Reply(tokens=tokens, hold_after=3, release=hold))
    inter = await fake.send_slash(world.alice, world.general, "cot", options={"task": "6*7"})
    shown = await fake.wait_for(
        lambda: (
            inter.original_id
            and "Multiply" in fake.messages[inter.original_id].content
            and fake.messages[inter.original_id].content
        )
    )
    assert shown.startswith("**Reasoning**\n1. Multiply 6 by 7")  # numbered once, no JSON
    await fake.send_slash(world.alice, world.general, "stop")
    text = await fake.wait_for(
        lambda: (
            "stopped" in fake.messages[inter.original_id].content
            and fake.messages[inter.original_id].content
        )
    )
    assert "{" not in text
    assert fake_ollama.requests[-1]["format"]["type"] == "object"
