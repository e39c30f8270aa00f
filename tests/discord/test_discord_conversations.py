"""Conversations through the real discord.py client, the fake Discord and the real engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.discord import DiscordBot, running_bot
from bot.config import BotConfig, LimitsConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.discord.conftest import EngineFactory, World, discord_config
from tests.discord.helpers import finished_reply, without_footer
from tests.fakes.fake_ollama import FakeOllama, Reply


def user_texts(fake_ollama: FakeOllama) -> list[str]:
    """The user messages the model saw in the last request."""
    return [m["content"] for m in fake_ollama.requests[-1]["messages"] if m["role"] == "user"]


async def test_mention_answers_in_place_as_a_reply_that_pings_nobody(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    asked = await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hello there", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id)
    assert without_footer(reply.content) == "echo: hello there"
    assert reply.reference_id == asked.id
    assert reply.history[0].allowed_mentions == {"parse": [], "replied_user": False}
    assert all(e.allowed_mentions == {"parse": []} for e in reply.history[1:])


async def test_unaddressed_messages_are_ignored(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.post_message(world.alice, world.general, "just chatting")
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> now you", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id)
    assert without_footer(reply.content) == "echo: now you"
    assert len(fake_ollama.requests) == 1


async def test_reply_to_the_bot_continues_that_conversation(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> first", mentions=[fake.bot_user]
    )
    [first] = await finished_reply(fake, world.general.id)
    # A separate conversation in the same channel must not leak into the chain.
    await fake.post_message(
        world.mod, world.general, f"<@{fake.bot_user.id}> unrelated", mentions=[fake.bot_user]
    )
    await finished_reply(fake, world.general.id, after=1)
    await fake.post_message(world.alice, world.general, "second", reference=first)
    [second] = await finished_reply(fake, world.general.id, after=2)
    assert without_footer(second.content) == "echo: second"
    assert user_texts(fake_ollama) == ["first", "second"]


async def test_chat_opens_a_thread_where_later_messages_need_no_mention(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "Tell me a joke"})
    thread = await fake.wait_for(lambda: next(iter(fake.threads_of(world.general.id)), None))
    assert thread.name == "Tell me a joke"
    replies = await finished_reply(fake, thread.id, after=1)
    assert without_footer(replies[-1].content) == "echo: Tell me a joke"
    await fake.post_message(world.alice, thread, "another one")
    again = await finished_reply(fake, thread.id, after=2)
    assert without_footer(again[-1].content) == "echo: another one"
    assert user_texts(fake_ollama) == ["Tell me a joke", "another one"]


async def test_restart_continues_the_thread_conversation_from_sqlite(
    world: World, make_engine: EngineFactory, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    config = discord_config(fake)
    async with make_engine() as engine, running_bot(engine, config, "t"):
        await fake.send_slash(world.alice, world.general, "chat", options={"prompt": "remember 7"})
        thread = await fake.wait_for(lambda: next(iter(fake.threads_of(world.general.id)), None))
        await finished_reply(fake, thread.id, after=1)
    syncs = len(fake.command_syncs)
    async with make_engine() as engine, running_bot(engine, config, "t"):
        await fake.post_message(world.alice, thread, "what number?")
        await finished_reply(fake, thread.id, after=2)
    assert user_texts(fake_ollama) == ["remember 7", "what number?"]
    assert syncs == 1
    assert len(fake.command_syncs) == 1, "unchanged commands must not be synced again"


async def test_ask_private_answers_only_to_the_asker(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    inter = await fake.send_slash(
        world.alice, world.general, "ask", options={"prompt": "secret", "private": True}
    )
    [reply] = await finished_reply(fake, world.general.id)
    assert reply.ephemeral
    assert reply.interaction_token == inter.token
    assert without_footer(reply.content) == "echo: secret"


async def test_ask_public_answer_can_be_continued_by_a_reply(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.send_slash(world.alice, world.general, "ask", options={"prompt": "one"})
    [reply] = await finished_reply(fake, world.general.id)
    assert not reply.ephemeral
    await fake.post_message(world.alice, world.general, "two", reference=reply)
    await finished_reply(fake, world.general.id, after=1)
    assert user_texts(fake_ollama) == ["one", "two"]


async def test_messages_from_bots_are_ignored(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.post_message(
        world.other_bot, world.general, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
    )
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> me", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id)
    assert without_footer(reply.content) == "echo: me"
    assert len(fake_ollama.requests) == 1


async def test_dms_answered_only_when_enabled(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    dm = fake.add_dm(world.alice)
    async with running_bot(engine, discord_config(fake), "t"):
        await fake.post_message(world.alice, dm, "psst")
        await fake.post_message(
            world.alice, world.general, f"<@{fake.bot_user.id}> x", mentions=[fake.bot_user]
        )
        await finished_reply(fake, world.general.id)
        assert fake.bot_messages_in(dm.id) == []
    async with running_bot(engine, discord_config(fake, allow_dms=True), "t"):
        await fake.post_message(world.alice, dm, "hello in private")
        [reply] = await finished_reply(fake, dm.id)
        assert without_footer(reply.content) == "echo: hello in private"


async def test_text_attachment_goes_into_the_prompt_and_oversize_is_noted(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    async with running_bot(engine, discord_config(fake, max_attachment_bytes=100), "t"):
        await fake.post_message(
            world.alice,
            world.general,
            f"<@{fake.bot_user.id}> summarise",
            mentions=[fake.bot_user],
            attachments=[
                ("notes.txt", "text/plain", b"the sky is green"),
                ("big.txt", "text/plain", b"x" * 500),
            ],
        )
        await finished_reply(fake, world.general.id, after=1)
    prompt = user_texts(fake_ollama)[-1]
    assert "the sky is green" in prompt
    assert "xxxx" not in prompt
    notes = [m.content for m in fake.bot_messages_in(world.general.id)]
    assert any("big.txt" in n and "limit" in n for n in notes)


async def test_image_for_a_model_without_vision_gets_a_clear_note(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake.post_message(
        world.alice,
        world.general,
        f"<@{fake.bot_user.id}> what is this",
        mentions=[fake.bot_user],
        attachments=[("cat.png", "image/png", b"\x89PNG fake")],
    )
    await finished_reply(fake, world.general.id, after=1)
    notes = [m.content for m in fake.bot_messages_in(world.general.id)]
    assert any("cannot see images" in n for n in notes)
    assert "images" not in fake_ollama.requests[-1]["messages"][-1]


async def test_blocked_channel_is_ignored_and_slash_commands_refused(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    config = discord_config(fake, blocked_channels=[world.category.id])
    async with running_bot(engine, config, "t"):
        await fake.post_message(
            world.alice, world.in_category, f"<@{fake.bot_user.id}> hi", mentions=[fake.bot_user]
        )
        inter = await fake.send_slash(
            world.alice, world.in_category, "ask", options={"prompt": "x"}
        )
        msg = await fake.wait_for(
            lambda: next(iter(fake.bot_messages_in(world.in_category.id)), None)
        )
        assert msg.ephemeral
        assert "disabled in this channel" in msg.content
        assert inter.ephemeral
    assert fake_ollama.requests == []


async def test_other_bots_answered_when_configured_but_never_itself(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    async with running_bot(engine, discord_config(fake, respond_to_bots=True), "t"):
        await fake.post_message(
            world.other_bot, world.general, f"<@{fake.bot_user.id}> beep", mentions=[fake.bot_user]
        )
        [reply] = await finished_reply(fake, world.general.id)
        assert without_footer(reply.content) == "echo: beep"
    assert len(fake_ollama.requests) == 1, "the bot's own messages must not be answered"


async def test_ollama_down_shows_the_user_an_error(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    await fake_ollama.stop()
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> hello?", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id, within=30)
    assert "Cannot reach Ollama" in reply.content
    assert "error" in reply.content


async def test_reply_to_a_person_in_a_chain_needs_a_mention(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    question = await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> start", mentions=[fake.bot_user]
    )
    await finished_reply(fake, world.general.id)
    await fake.post_message(world.mod, world.general, "I agree with alice", reference=question)
    await fake.post_message(
        world.mod,
        world.general,
        f"<@{fake.bot_user.id}> and add this",
        mentions=[fake.bot_user],
        reference=question,
    )
    await finished_reply(fake, world.general.id, after=1)
    assert user_texts(fake_ollama) == ["start", "and add this"]
    assert len(fake_ollama.requests) == 2


async def test_a_refused_queue_notice_does_not_end_the_waiting_turn(
    world: World, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake = world.fake
    config = BotConfig(
        limits=LimitsConfig(
            user_messages_per_minute=1000, max_concurrent_generations=1, queue_notice_delay=0
        )
    )
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("first answer", gate=gate))
    engine = Engine(OllamaChatModel(fake_ollama.url), SqliteStore(tmp_path / "bot.db"), config)
    async with engine, running_bot(engine, discord_config(fake), "test-token"):
        first = await fake.send_slash(world.alice, world.general, "ask", options={"prompt": "one"})
        await fake_ollama.wait_for_requests(1)
        fake.refuse_followups = True  # the ephemeral "you are queued" notice gets a 403
        second = await fake.send_slash(
            world.mod, world.in_category, "ask", options={"prompt": "two"}
        )
        await fake.wait_for(lambda: second.callback_type == 5)
        gate.set()
        for inter, expected in ((first, "first answer"), (second, "echo: two")):
            shown = await fake.wait_for(
                lambda inter=inter, expected=expected: (
                    inter.original_id and expected in fake.messages[inter.original_id].content
                )
            )
            assert shown
