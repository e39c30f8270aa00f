"""Streamed replies as a Discord user sees them: splitting, mentions, drops, 429s, expiry."""

from __future__ import annotations

import asyncio

from adapters.discord import DiscordBot, running_bot
from bot.conversation.engine import Engine
from tests.discord.conftest import World, discord_config
from tests.discord.helpers import finished_reply, reassemble, without_footer
from tests.fakes.fake_discord import ChannelLimiter
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.reply.test_splitting import answer_of_5856_characters


def chunks(text: str, size: int = 40) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def long_answer_with_code() -> str:
    prose = " ".join(f"Sentence number {i} explains a detail of the answer." for i in range(30))
    code = "\n".join(f"    total += compute(item_{i}, factor={i})  # step {i}" for i in range(40))
    answer = (
        f"{prose}\n\n```python\ndef run():\n    total = 0\n{code}\n    return total\n```\n\n{prose}"
    )
    assert len(answer) >= 5000
    return answer


async def mention(world: World, text: str) -> None:
    fake = world.fake
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> {text}", mentions=[fake.bot_user]
    )


async def test_long_answer_with_code_block_arrives_as_fenced_messages_equal_to_the_output(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    answer = long_answer_with_code()
    fake_ollama.script(Reply(tokens=chunks(answer)))
    await mention(world, "write it")
    messages = await finished_reply(world.fake, world.general.id, within=20)
    assert len(messages) >= 3
    assert all(len(m.content) <= 2000 for m in messages)
    texts = [m.content for m in messages]
    texts[-1] = without_footer(texts[-1])
    assert reassemble(texts, answer) == len(answer)


async def test_a_5856_character_answer_arrives_in_three_messages_not_four(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    """Issue 10, point 8: the fewest messages the splitting rules allow (it used to take four,
    the last with 224 characters)."""
    answer = answer_of_5856_characters()
    fake_ollama.script(Reply(tokens=chunks(answer, 7)))
    await mention(world, "write it")
    messages = await finished_reply(world.fake, world.general.id, within=20)
    texts = [m.content for m in messages]
    assert len(texts) == 3
    assert all(len(text) <= 2000 for text in texts)
    texts[-1] = without_footer(texts[-1])
    assert "".join(texts) == answer


async def test_everyone_in_model_output_is_not_a_mention(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.script(
        Reply.text(f"Hey @everyone and <@&{world.mod_role.id}> and <@{world.mod.id}>, look!")
    )
    await mention(world, "ping them")
    [reply] = await finished_reply(fake, world.general.id)
    assert "@everyone" in reply.content
    assert all(
        edit.allowed_mentions is None or edit.allowed_mentions["parse"] == []
        for edit in reply.history
    )
    assert reply.history[0].allowed_mentions == {"parse": [], "replied_user": False}
    assert reply.allowed_mentions is not None
    assert reply.allowed_mentions["parse"] == []


async def test_gateway_drop_mid_reply_is_resumed_and_the_reply_finished(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    words = [f"w{i} " for i in range(30)]
    fake_ollama.script(Reply(tokens=words, token_delay=0.03))
    await mention(world, "go")
    first = await fake.wait_for(lambda: next(iter(fake.bot_messages_in(world.general.id)), None))
    await fake.drop_gateway()
    assert not first.content.rstrip().endswith("w29"), "the drop must come mid-reply"
    [reply] = await finished_reply(fake, world.general.id)
    assert without_footer(reply.content) == "".join(words)
    await fake.wait_connected()
    assert fake.resumes == 1
    assert fake.identifies == 1
    # Events after the resume still reach the bot.
    await mention(world, "still there?")
    [again] = await finished_reply(fake, world.general.id, after=1)
    assert without_footer(again.content) == "echo: still there?"


async def test_429_from_discord_is_waited_out_and_the_reply_completes(
    world: World, engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake.limiter = ChannelLimiter(3, 1.0)
    fake.rate_limit_headers = False
    text = " ".join(f"word{i}" for i in range(60))
    fake_ollama.script(Reply.text(text, token_delay=0.01))
    burst = discord_config(fake, edits_per_second=5.0, edit_burst=3)
    async with running_bot(engine, burst, "t") as bot:
        # Fill the channel's budget from outside the bot's pacer, as another bot would.
        channel = bot.get_channel(world.general.id)
        assert channel is not None
        for i in range(3):
            await channel.send(f"noise {i}")  # type: ignore[union-attr]
        await mention(world, "go")
        messages = await finished_reply(fake, world.general.id, after=3, within=20)
    assert fake.rate_limited_count >= 1
    assert without_footer(messages[-1].content) == text


async def test_reply_continues_in_the_channel_when_the_interaction_token_expires(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    gate = asyncio.Event()
    fake_ollama.script(Reply(tokens=["partial ", "answer ", "finished"], gate=gate))
    inter = await fake.send_slash(world.alice, world.general, "ask", options={"prompt": "slow"})
    await fake.wait_for(lambda: inter.original_id)
    fake.expire_interaction(inter)
    gate.set()
    messages = await finished_reply(fake, world.general.id, within=10)
    assert without_footer(messages[-1].content).endswith("finished")


async def test_stop_in_a_channel_stops_the_reply_and_says_so(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(400)], token_delay=0.02))
    await mention(world, "talk forever")
    await fake.wait_for(
        lambda: any("t1" in m.content for m in fake.bot_messages_in(world.general.id))
    )
    await fake.send_slash(world.alice, world.general, "stop")
    messages = await finished_reply(fake, world.general.id, within=10)
    assert "stopped" in messages[-1].content
    notice = await fake.wait_for(
        lambda: next(
            (m for m in fake.bot_messages_in(world.general.id) if "Stopped" in m.content), None
        )
    )
    assert "Stopped 1 reply" in notice.content


async def test_stop_from_another_member_leaves_the_reply_running_but_a_moderator_stops_it(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    bob = fake.add_user("bob")
    fake.add_member(world.guild, bob)
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(400)], token_delay=0.02))
    await mention(world, "talk forever")
    await fake.wait_for(
        lambda: any("t1" in m.content for m in fake.bot_messages_in(world.general.id))
    )
    await fake.send_slash(bob, world.general, "stop")
    refusal = await fake.wait_for(
        lambda: next(
            (m for m in fake.bot_messages_in(world.general.id) if "Only the replies" in m.content),
            None,
        )
    )
    assert "moderator" in refusal.content
    await fake.send_slash(world.mod, world.general, "stop")
    messages = await finished_reply(fake, world.general.id, within=10)
    assert "stopped" in messages[-1].content


async def test_typing_is_shown_while_waiting_for_the_first_token(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    gate = asyncio.Event()
    fake_ollama.script(Reply(tokens=["ok"], gate=gate))
    await mention(world, "think")
    await fake.wait_for(lambda: fake.typing.get(world.general.id))
    assert fake.bot_messages_in(world.general.id) == []
    gate.set()
    await finished_reply(fake, world.general.id)


async def test_a_reply_cut_at_the_length_limit_says_so_in_the_footer(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("An answer that looks whole.", done_reason="length"))
    await mention(world, "explain")
    [reply] = await finished_reply(world.fake, world.general.id)
    assert without_footer(reply.content) == "An answer that looks whole."
    assert "cut at the length limit" in reply.content
