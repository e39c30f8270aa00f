"""Starting and stopping the adapter the way the command line does."""

from __future__ import annotations

import asyncio

import pytest

from adapters.discord import run_discord, running_bot
from bot.conversation.engine import Engine
from bot.errors import ConfigError
from tests.discord.conftest import World, discord_config
from tests.discord.helpers import finished_reply, without_footer
from tests.fakes.fake_ollama import FakeOllama, Reply


async def test_run_discord_answers_until_cancelled_then_closes(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake.valid_token = "s3cret"
    task = asyncio.create_task(run_discord(engine, discord_config(fake), "s3cret"))
    await fake.wait_connected()
    await fake.wait_for(lambda: fake.command_syncs)
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> up?", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id)
    assert without_footer(reply.content) == "echo: up?"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_refused_token_is_a_config_error_naming_the_variable(
    world: World, engine: Engine
) -> None:
    world.fake.valid_token = "right"
    with pytest.raises(ConfigError) as caught:
        await run_discord(engine, discord_config(world.fake), "wrong")
    assert caught.value.key == "DISCORD_TOKEN"


async def test_closing_mid_reply_marks_the_reply_interrupted(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.script(Reply(tokens=[f"w{i} " for i in range(200)], token_delay=0.02))
    async with running_bot(engine, discord_config(fake), "t"):
        await fake.send_slash(world.alice, world.general, "ask", options={"prompt": "long"})
        await fake.wait_for(
            lambda: any("w3" in m.content for m in fake.bot_messages_in(world.general.id))
        )
    [reply] = fake.bot_messages_in(world.general.id)
    assert "interrupted" in reply.content
    assert "w199" not in reply.content
