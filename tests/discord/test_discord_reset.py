"""``/reset`` resets (issue 10, point 4): the next request to Ollama carries no earlier message.

In a channel, reset clears the channel's own conversation, its reply chains and its threads; in
a thread, that thread's.
"""

from __future__ import annotations

from adapters.discord import DiscordBot
from tests.discord.conftest import World
from tests.discord.helpers import finished_reply
from tests.discord.test_discord_commands import response_of
from tests.fakes.fake_ollama import FakeOllama


def conversation_sent(fake_ollama: FakeOllama) -> list[str]:
    """The user and assistant messages of the last request to Ollama."""
    return [
        m["content"]
        for m in fake_ollama.requests[-1]["messages"]
        if m["role"] in ("user", "assistant")
    ]


async def test_reset_in_a_channel_clears_its_reply_chains(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake, me = world.fake, world.fake.bot_user
    await fake.post_message(world.alice, world.general, f"<@{me.id}> I am Ada", mentions=[me])
    [answer] = await finished_reply(fake, world.general.id)
    await fake.post_message(world.alice, world.general, "still there?", reference=answer)
    await finished_reply(fake, world.general.id, after=1)
    assert conversation_sent(fake_ollama)[0] == "I am Ada"  # the chain carries its history

    reset = await fake.send_slash(world.alice, world.general, "reset")
    assert "Conversation reset" in await response_of(world, reset)
    before = len(fake_ollama.requests)
    await fake.post_message(world.alice, world.general, "who am I?", reference=answer)
    await fake.wait_for(lambda: len(fake_ollama.requests) > before)
    assert conversation_sent(fake_ollama) == ["who am I?"]


async def test_reset_in_a_thread_clears_that_thread(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "remember 7"})
    [thread] = await fake.wait_for(lambda: fake.threads_of(world.general.id))
    await finished_reply(fake, thread.id, after=1)

    reset = await fake.send_slash(world.alice, thread, "reset")
    assert "Conversation reset" in await response_of(world, reset)
    before = len(fake_ollama.requests)
    await fake.post_message(world.alice, thread, "which number?")
    await fake.wait_for(lambda: len(fake_ollama.requests) > before)
    assert conversation_sent(fake_ollama) == ["which number?"]
