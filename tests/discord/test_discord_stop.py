"""``/stop`` on Discord follows the engine's rule (issue 10, point 2).

In a reply chain two people can be waiting for the bot: each one's ``/stop`` stops their own
reply, running or queued; in a thread, someone else's ``/stop`` is refused.
"""

from __future__ import annotations

import asyncio

from adapters.discord import DiscordBot
from bot.conversation.engine import Engine
from bot.turn import SessionKey
from tests.discord.conftest import World
from tests.discord.helpers import finished_reply, is_finished, without_footer
from tests.discord.test_discord_commands import response_of
from tests.fakes.fake_ollama import FakeOllama, Reply


async def test_bob_stops_his_reply_in_alices_chain_and_hers_goes_on(
    world: World, bot: DiscordBot, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    bob = fake.add_user("bob")
    fake.add_member(world.guild, bob)
    release = asyncio.Event()
    fake_ollama.script(
        Reply(tokens=["alice ", "gets ", "her answer"], hold_after=2, release=release),
        Reply.text("bob's answer"),
    )
    me = fake.bot_user
    await fake.post_message(world.alice, world.general, f"<@{me.id}> hi", mentions=[me])
    first = await fake.wait_for(lambda: next(iter(fake.bot_messages_in(world.general.id)), None))
    asked = await fake.post_message(bob, world.general, "and me?", reference=first)
    channel = SessionKey("discord", str(world.general.id))
    await fake.wait_for(lambda: len(engine.turns.in_place(channel)) == 2)

    stopped = await fake.send_slash(bob, world.general, "stop")
    assert "Stopped 1 reply" in await response_of(world, stopped)
    bob_reply = await fake.wait_for(
        lambda: next((m for m in fake.bot_messages_in(world.general.id)
                      if m.reference_id == asked.id and "Stopped" in m.content), None)
    )  # fmt: skip
    assert "Stopped before any answer" in bob_reply.content
    release.set()
    await fake.wait_for(lambda: is_finished(fake.messages[first.id]))
    assert without_footer(fake.messages[first.id].content) == "alice gets her answer"
    assert len(fake_ollama.requests) == 1


async def test_someone_elses_stop_in_a_thread_is_refused(
    world: World, bot: DiscordBot, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    bob = fake.add_user("bob")
    fake.add_member(world.guild, bob)
    release = asyncio.Event()
    fake_ollama.script(Reply(tokens=["a ", "b ", "c"], hold_after=2, release=release))
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "talk"})
    [thread] = await fake.wait_for(lambda: fake.threads_of(world.general.id))
    await fake_ollama.wait_for_requests(1)

    refused = await fake.send_slash(bob, thread, "stop")
    assert "Not yours to stop" in await response_of(world, refused)
    release.set()
    [reply] = await finished_reply(fake, thread.id, after=1)  # after "alice asked: ..."
    assert without_footer(reply.content) == "a b c"
