"""Conversations against a real Synapse: who is answered, where, and what the reply shows."""

from __future__ import annotations

import asyncio
from typing import Any

import nio
import pytest

from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.matrix.conftest import Human, RunningBot, StartBot, eventually

pytestmark = pytest.mark.synapse


async def room_with_bot(human: Human, bot: RunningBot, **kwargs: Any) -> str:
    room_id = await human.create_room(invite=(bot.user_id,), **kwargs)
    await human.wait_joined(room_id, bot.user_id)
    return room_id


async def answer_to(human: Human, bot: RunningBot, room_id: str, event_id: str) -> dict[str, Any]:
    """The bot's (first) message answering ``event_id``, once the reply is finished."""
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, event_id))
    await bot.bot.idle()
    return replies[0]


def user_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


async def test_mention_is_answered_in_a_thread_rooted_at_it_and_chatter_is_not(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    chatter = await human.send(room_id, "hello everyone")
    asked = await human.send(room_id, "what is up?", mention=bot.user_id)

    reply = await answer_to(human, bot, room_id, asked)

    relation = reply["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread"
    assert relation["event_id"] == asked
    assert reply["content"]["m.mentions"] == {}
    assert await human.visible_text(room_id, reply["event_id"]) == "echo: what is up?"
    assert await human.replies_to(room_id, bot.user_id, chatter) == []


async def test_name_in_text_addresses_the_bot_without_a_mention(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    localpart = bot.user_id[1:].split(":")[0]
    asked = await human.send(room_id, f"{localpart}: name me a colour")
    reply = await answer_to(human, bot, room_id, asked)
    assert await human.visible_text(room_id, reply["event_id"]) == "echo: name me a colour"


async def test_every_message_in_a_direct_room_is_answered(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot, name=None, is_direct=True)
    asked = await human.send(room_id, "no mention here")
    reply = await answer_to(human, bot, room_id, asked)
    assert await human.visible_text(room_id, reply["event_id"]) == "echo: no mention here"


async def test_thread_follow_up_is_answered_with_the_thread_as_one_conversation(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "first question", mention=bot.user_id)
    await answer_to(human, bot, room_id, asked)

    follow = await human.send(room_id, "second question", thread_root=asked)
    reply = await answer_to(human, bot, room_id, follow)

    assert reply["content"]["m.relates_to"]["event_id"] == asked
    assert user_texts(fake_ollama.requests[-1])[-2:] == ["first question", "second question"]
    assert "echo: first question" in [m["content"] for m in fake_ollama.requests[-1]["messages"]]


async def test_plain_reply_mode_answers_replies_to_the_bot(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot(reply_in_thread=False)
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "one", mention=bot.user_id)
    reply = await answer_to(human, bot, room_id, asked)
    assert "rel_type" not in reply["content"]["m.relates_to"]  # a plain reply, no thread

    again = await human.send(room_id, "two", reply_to=reply["event_id"])
    second = await answer_to(human, bot, room_id, again)
    assert await human.visible_text(room_id, second["event_id"]) == "echo: two"


async def test_ignored_bots_are_never_answered(new_human: Any, start_bot: StartBot) -> None:
    human: Human = new_human()
    other_bot: Human = new_human()
    bot = await start_bot(ignored_users=frozenset({other_bot.user_id}))
    room_id = await room_with_bot(human, bot)
    await human.invite(room_id, other_bot.user_id)
    await other_bot.client.join(room_id)
    ignored = await other_bot.send(room_id, "hey you", mention=bot.user_id)
    asked = await human.send(room_id, "and me?", mention=bot.user_id)
    await answer_to(human, bot, room_id, asked)
    assert await human.replies_to(room_id, bot.user_id, ignored) == []


async def test_messages_from_before_the_bot_joined_are_never_answered(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await human.create_room()
    old = await human.send(room_id, "anyone here?", mention=bot.user_id)
    await human.invite(room_id, bot.user_id)
    await human.wait_joined(room_id, bot.user_id)
    new = await human.send(room_id, "now?", mention=bot.user_id)
    await answer_to(human, bot, room_id, new)
    assert await human.replies_to(room_id, bot.user_id, old) == []


async def test_final_edit_of_a_3000_character_reply_equals_the_model_output(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    text = " ".join(f"word{i}" for i in range(500))[:3000].strip()
    assert len(text) >= 2990
    fake_ollama.script(Reply.text(text))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "long please", mention=bot.user_id)
    reply = await answer_to(human, bot, room_id, asked)
    assert await human.visible_text(room_id, reply["event_id"]) == text


async def test_very_long_reply_is_split_and_never_inside_a_code_block(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    code = "\n".join(f"print({i})  # line {i}" for i in range(120))
    text = "Here is the code:\n\n```python\n" + code + "\n```\n\nThat is all."
    fake_ollama.script(Reply.text(text))
    bot = await start_bot(max_chars=1000)
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "code please", mention=bot.user_id)
    await answer_to(human, bot, room_id, asked)

    messages = [
        m for m in await human.bot_messages(room_id, bot.user_id)
        if m["content"].get("m.relates_to", {}).get("event_id") == asked
    ]  # fmt: skip
    assert len(messages) >= 3
    shown = [await human.visible_text(room_id, m["event_id"]) for m in messages]
    for part in shown:
        assert len(part) <= 1000
        assert part.count("```") % 2 == 0, part  # every part opens and closes its fences
    for i in range(120):
        assert any(f"print({i})  # line {i}" in part for part in shown)
    assert shown[-1].rstrip().endswith("That is all.")


async def test_a_reply_cut_at_the_length_limit_says_so(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("An answer that looks whole.", done_reason="length"))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "explain", mention=bot.user_id)
    reply = await answer_to(human, bot, room_id, asked)

    shown = await human.visible_text(room_id, reply["event_id"])
    assert shown.startswith("An answer that looks whole.")
    assert "Cut at the length limit" in shown


async def test_stop_reaction_stops_a_streaming_reply(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(2000)], token_delay=0.01))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "talk forever", mention=bot.user_id)
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))

    await human.react(room_id, replies[0]["event_id"], "⏹️")
    await fake_ollama.wait_for_client_close(within=20)
    await bot.bot.idle()

    shown = await human.visible_text(room_id, replies[0]["event_id"])
    assert "Stopped" in shown
    assert "t1999" not in shown
    assert "\n\n\n" not in shown  # one blank line before the footer, not two


async def test_a_notice_alone_starts_with_its_text_not_blank_lines(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "x" * 5000, mention=bot.user_id)
    reply = await answer_to(human, bot, room_id, asked)
    shown = await human.visible_text(room_id, reply["event_id"])
    assert shown.startswith("*⚠️ Your message is 5,000 characters")


async def test_typing_is_shown_while_waiting_for_the_first_token(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("finally", gate=gate))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    await human.client.sync(timeout=0)
    asked = await human.send(room_id, "think hard", mention=bot.user_id)

    async def bot_typing() -> bool:
        response = await human.client.sync(timeout=2000)
        assert isinstance(response, nio.SyncResponse)
        return bot.user_id in human.client.rooms[room_id].typing_users

    await eventually(bot_typing)
    gate.set()
    reply = await answer_to(human, bot, room_id, asked)
    assert await human.visible_text(room_id, reply["event_id"]) == "finally"


async def test_restart_neither_answers_twice_nor_misses_nor_forgets_the_thread(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "remember 42", mention=bot.user_id)
    await answer_to(human, bot, room_id, asked)

    await bot.stop()
    follow = await human.send(room_id, "what number?", thread_root=asked)  # while it is down
    await bot.restart()

    await answer_to(human, bot, room_id, follow)
    assert len(await human.replies_to(room_id, bot.user_id, asked)) == 1
    assert len(await human.replies_to(room_id, bot.user_id, follow)) == 1
    assert user_texts(fake_ollama.requests[-1])[-2:] == ["remember 42", "what number?"]


async def test_model_html_reaches_the_room_as_text_never_as_markup(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("**bold** <script>alert(1)</script> @room"))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "html please", mention=bot.user_id)
    reply = await answer_to(human, bot, room_id, asked)

    raw = await asyncio.to_thread(
        human.synapse.request,
        "GET",
        f"/_matrix/client/v3/rooms/{room_id}/event/{reply['event_id']}",
        token=human.client.access_token,
    )
    edit = raw.get("unsigned", {}).get("m.relations", {}).get("m.replace")
    shown = edit["content"]["m.new_content"] if edit else raw["content"]
    assert "<strong>bold</strong>" in shown["formatted_body"]
    assert "<script" not in shown["formatted_body"]
    assert "&lt;script&gt;" in shown["formatted_body"]
    assert shown["m.mentions"] == {}


async def test_stop_command_in_the_thread_stops_its_reply(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=[f"s{i} " for i in range(2000)], token_delay=0.01))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "go on and on", mention=bot.user_id)
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))

    await human.send(room_id, "!ollabot stop", thread_root=asked)
    await fake_ollama.wait_for_client_close(within=20)
    await bot.bot.idle()

    assert "Stopped" in await human.visible_text(room_id, replies[0]["event_id"])


async def test_cot_streams_its_steps_as_a_reply_and_the_stop_reaction_stops_it(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    hold = asyncio.Event()  # never set: the model is stuck after its first step
    tokens = ['{"steps": ["1. Multiply', ' 6 by 7"', ', "Che', 'ck"]}']
    fake_ollama.script(Reply(tokens=tokens, hold_after=3, release=hold))
    bot = await start_bot()
    room_id = await room_with_bot(human, bot)
    asked = await human.send(room_id, "!ollabot cot 6*7")
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))

    async def step_shown() -> bool:
        return "Multiply 6 by 7" in await human.visible_text(room_id, replies[0]["event_id"])

    await eventually(step_shown)
    await human.react(room_id, replies[0]["event_id"], "⏹️")
    await fake_ollama.wait_for_client_close(within=20)
    await bot.bot.idle()

    shown = await human.visible_text(room_id, replies[0]["event_id"])
    assert "Reasoning" in shown
    assert "\n1. Multiply 6 by 7" in shown  # numbered once
    assert "{" not in shown  # no raw JSON
    assert "Stopped" in shown
    assert fake_ollama.requests[-1]["format"]["type"] == "object"
