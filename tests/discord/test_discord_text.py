"""Text is passed on as written (issue 10, point 6).

Joiners reach the model; bidirectional overrides reach it too, but never a message where the
bot quotes the user (a right-to-left override there would reverse the bot's own words).
"""

from __future__ import annotations

from adapters.discord import DiscordBot
from tests.core.test_validation import FAMILY, PERSIAN
from tests.discord.conftest import World
from tests.discord.helpers import finished_reply
from tests.fakes.fake_ollama import FakeOllama


async def test_chat_quotes_the_prompt_without_bidi_overrides_and_the_model_gets_it_as_written(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    prompt = f"{FAMILY} {PERSIAN} \u202eevil"
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": prompt})
    [thread] = await fake.wait_for(lambda: fake.threads_of(world.general.id))
    asked, _reply = await finished_reply(fake, thread.id)
    assert asked.content.endswith(f">>> {FAMILY} {PERSIAN} evil")
    assert "\u202e" not in thread.name
    assert fake_ollama.requests[-1]["messages"][-1]["content"] == prompt
