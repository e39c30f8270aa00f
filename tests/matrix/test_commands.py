"""Commands with the prefix; moderators by power level; settings per room and per thread."""

from __future__ import annotations

import asyncio
from typing import Any

import nio
import pytest

from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.matrix.conftest import Human, RunningBot, StartBot, eventually, unique

pytestmark = pytest.mark.synapse


async def command_answer(human: Human, bot: RunningBot, room_id: str, event_id: str) -> str:
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, event_id))
    await bot.bot.idle()
    return await human.visible_text(room_id, replies[0]["event_id"])


async def setup_room(new_human: Any, bot: RunningBot) -> tuple[Human, Human, str]:
    """A room where ``mod`` has power 100 and ``member`` power 0."""
    mod: Human = new_human()
    member: Human = new_human()
    room_id = await mod.create_room(invite=(bot.user_id, member.user_id))
    await member.client.join(room_id)
    await mod.wait_joined(room_id, bot.user_id)
    await mod.wait_joined(room_id, member.user_id)
    return mod, member, room_id


async def test_member_below_the_power_level_cannot_change_the_model(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    bot = await start_bot()
    mod, member, room_id = await setup_room(new_human, bot)

    refused = await member.send(room_id, "!ollabot model set qwen3")
    text = await command_answer(member, bot, room_id, refused)
    assert text.startswith("⚠️")

    asked = await member.send(room_id, "which model?", mention=bot.user_id)
    await eventually(lambda: member.replies_to(room_id, bot.user_id, asked))
    await bot.bot.idle()
    assert fake_ollama.requests[-1]["model"].startswith("llama3.2")


async def test_moderator_changes_the_room_model_and_it_persists(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    bot = await start_bot()
    mod, member, room_id = await setup_room(new_human, bot)

    changed = await mod.send(room_id, "!ollabot model set qwen3")
    assert not (await command_answer(mod, bot, room_id, changed)).startswith("⚠️")

    asked = await member.send(room_id, "hi", mention=bot.user_id)
    await eventually(lambda: member.replies_to(room_id, bot.user_id, asked))
    await bot.bot.idle()
    assert fake_ollama.requests[-1]["model"].startswith("qwen3")


async def test_setting_made_in_a_thread_applies_to_that_thread_only(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    bot = await start_bot()
    mod, _member, room_id = await setup_room(new_human, bot)
    root = await mod.send(room_id, "start", mention=bot.user_id)
    await eventually(lambda: mod.replies_to(room_id, bot.user_id, root))
    await bot.bot.idle()

    changed = await mod.send(room_id, "!ollabot model set qwen3", thread_root=root)
    await command_answer(mod, bot, room_id, changed)
    in_thread = await mod.send(room_id, "in thread", thread_root=root)
    await eventually(lambda: mod.replies_to(room_id, bot.user_id, in_thread))
    await bot.bot.idle()
    assert fake_ollama.requests[-1]["model"].startswith("qwen3")

    elsewhere = await mod.send(room_id, "outside", mention=bot.user_id)
    await eventually(lambda: mod.replies_to(room_id, bot.user_id, elsewhere))
    await bot.bot.idle()
    assert fake_ollama.requests[-1]["model"].startswith("llama3.2")


async def test_unknown_command_gets_usage_and_pull_shows_progress_to_the_end(
    new_human: Any, start_bot: StartBot
) -> None:
    bot = await start_bot()
    mod, member, room_id = await setup_room(new_human, bot)

    bad = await mod.send(room_id, "!ollabot frobnicate")
    assert await command_answer(mod, bot, room_id, bad)

    pull = await mod.send(room_id, "!ollabot pull qwen3")
    text = await command_answer(mod, bot, room_id, pull)
    assert "success" in text or "100%" in text

    refused = await member.send(room_id, "!ollabot pull qwen3")
    assert (await command_answer(member, bot, room_id, refused)).startswith("⚠️")


async def room_in_space(owner: Human, space: str, invite: tuple[str, ...]) -> str:
    """A room whose ``m.space.parent`` names ``space``; its creator has power 100."""
    server = owner.user_id.split(":", 1)[1]
    response = await owner.client.room_create(
        name="in a space",
        invite=invite,
        initial_state=[
            {"type": "m.space.parent", "state_key": space, "content": {"via": [server]}}
        ],
    )
    assert isinstance(response, nio.RoomCreateResponse), response
    return str(response.room_id)


async def test_a_space_needs_the_power_level_in_every_room_of_it_or_a_bot_admin(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    alice: Human = new_human()
    bob: Human = new_human()
    admin: Human = new_human()
    bot = await start_bot(bot_admins=[admin.user_id])
    space = f"!space{unique('s')}:{alice.user_id.split(':', 1)[1]}"
    # Alice moderates room A (power 100) but not room B (Bob's, where she has power 0).
    room_a = await room_in_space(alice, space, (bot.user_id, admin.user_id))
    room_b = await room_in_space(bob, space, (bot.user_id, alice.user_id))
    await admin.client.join(room_a)
    await alice.client.join(room_b)
    await alice.wait_joined(room_a, bot.user_id)
    await alice.wait_joined(room_a, admin.user_id)
    await bob.wait_joined(room_b, bot.user_id)
    await bob.wait_joined(room_b, alice.user_id)

    refused = await alice.send(room_a, "!ollabot model set qwen3 --scope space")
    text = await command_answer(alice, bot, room_a, refused)
    assert "needs a moderator of the server" in text
    allowed = await alice.send(room_a, "!ollabot model set qwen3")
    assert "now uses `qwen3`" in await command_answer(alice, bot, room_a, allowed)

    by_admin = await admin.send(room_a, "!ollabot model set qwen3 --scope space")
    assert "now uses `qwen3`" in await command_answer(admin, bot, room_a, by_admin)
    asked = await bob.send(room_b, "which model?", mention=bot.user_id)
    await eventually(lambda: bob.replies_to(room_b, bot.user_id, asked))
    await bot.bot.idle()
    assert fake_ollama.requests[-1]["model"].startswith("qwen3")


async def test_reset_in_the_room_clears_its_threads_and_the_next_request_is_fresh(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()
    mod, _member, room_id = await setup_room(new_human, bot)
    root = await mod.send(room_id, "remember 42", mention=bot.user_id)
    await eventually(lambda: mod.replies_to(room_id, bot.user_id, root))
    await bot.bot.idle()

    reset = await mod.send(room_id, "!ollabot reset")
    assert "Conversation reset" in await command_answer(mod, bot, room_id, reset)
    follow = await mod.send(room_id, "which number?", thread_root=root)
    await eventually(lambda: mod.replies_to(room_id, bot.user_id, follow))
    await bot.bot.idle()
    sent = fake_ollama.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] in ("user", "assistant")] == ["which number?"]


async def test_help_lists_what_matrix_reads_and_answers_speak_of_the_room(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    bot = await start_bot()
    mod, _member, room_id = await setup_room(new_human, bot)

    asked = await mod.send(room_id, "!ollabot help")
    listed = await command_answer(mod, bot, room_id, asked)
    assert "model show" in listed
    # Discord's /ask and /chat: `!ollabot ask` is not a command here.
    assert "ask <prompt>" not in listed
    assert "chat <prompt>" not in listed

    changed = await mod.send(room_id, "!ollabot model set qwen3")
    assert "This room now uses" in await command_answer(mod, bot, room_id, changed)


async def test_stop_from_someone_else_is_refused_and_the_reply_goes_on(
    new_human: Any, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    """Issue 10, point 2: ``!ollabot stop`` follows the engine's rule (asker or moderator)."""
    release = asyncio.Event()
    fake_ollama.script(Reply(tokens=["a ", "b ", "c"], hold_after=2, release=release))
    bot = await start_bot()
    mod, member, room_id = await setup_room(new_human, bot)
    asked = await mod.send(room_id, "go on", mention=bot.user_id)
    [reply, *_] = await eventually(lambda: mod.replies_to(room_id, bot.user_id, asked))

    refused = await member.send(room_id, "!ollabot stop", thread_root=asked)
    [answer, *_] = await eventually(lambda: member.replies_to(room_id, bot.user_id, refused))
    # (Not bot.idle(): the held reply is one of the bot's tasks.)
    assert "Not yours to stop" in await member.visible_text(room_id, answer["event_id"])
    release.set()
    await bot.bot.idle()
    assert await mod.visible_text(room_id, reply["event_id"]) == "a b c"
