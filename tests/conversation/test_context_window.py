"""The context window: one ``num_ctx`` on every request, history trimmed to it, the newest message
always sent. Real ollama client against the fake, which applies Ollama's own rule: without
``num_ctx`` a 4,096-token window, the oldest messages dropped silently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import BotConfig
from bot.conversation.commands import (
    CommandContext,
    ContextSet,
    ContextShow,
    SettingsShow,
    parse_command,
)
from bot.conversation.engine import Engine
from bot.conversation.history import estimate_tokens
from bot.conversation.results import SettingsView
from bot.store.port import NewMessage, ScopeKind
from bot.turn import Attachment, SessionKey
from bot.types import Outcome, Role
from tests.conversation.test_engine import ALICE, KEY, MOD, make_config, make_engine, stored, turn
from tests.fakes.fake_ollama import FakeOllama, Reply, prompt_tokens
from tests.fakes.fake_surface import FakeSurface

# 500 words, 2,500 characters: the fake counts 504 tokens, the bot estimates 629.
LONG = "word " * 500


async def fill_history(engine: Engine, n: int, key: SessionKey = KEY) -> None:
    session = await engine.store.session_id(key)
    for i in range(n):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        await engine.store.append(session, NewMessage(role, f"m{i} {LONG}"))


@pytest.fixture
async def engine(fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Engine]:
    async with make_engine(make_config(fake_ollama, tmp_path / "bot.db")) as eng:
        yield eng


def config_with(fake: FakeOllama, tmp_path: Path, **defaults: Any) -> BotConfig:
    return make_config(fake, tmp_path / "bot.db", defaults=defaults)


async def test_every_request_names_its_window_so_ollama_drops_nothing(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    # llama3.2 advertises 131,072 tokens; Ollama would still run it at 4,096 without num_ctx.
    fake_ollama.add_model("llama3.2", context_length=131_072)
    async with make_engine(config_with(fake_ollama, tmp_path)) as engine:
        await fill_history(engine, 10)  # ~5,000 tokens by the fake's count: over 4,096
        result = await engine.handle_turn(turn("and now?"), FakeSurface())
        reply = (await engine.store.recent_messages(await engine.store.session_id(KEY), 1))[0]

    assert result.outcome is Outcome.COMPLETE
    request = fake_ollama.requests[-1]
    assert len(request["messages"]) == 1 + 10 + 1
    ran = fake_ollama.contexts[-1]
    assert ran.dropped == 0  # the model saw the conversation the bot sent
    assert ran.num_ctx == request["options"]["num_ctx"] == 8192  # the default, under the maximum
    assert ran.prompt_tokens == sum(prompt_tokens(m) for m in request["messages"])
    assert reply.prompt_tokens == ran.prompt_tokens  # what Ollama reported is what was stored


async def test_history_is_trimmed_to_the_window_minus_the_reply_reserve(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    async with make_engine(config_with(fake_ollama, tmp_path, context_length=2048)) as engine:
        await fill_history(engine, 10)
        await engine.handle_turn(turn("and now?"), FakeSurface())

    request = fake_ollama.requests[-1]
    assert request["options"]["num_ctx"] == 2048
    sent = request["messages"]
    # 2,048 - 1,024 reserved for the reply: the system prompt, the question and one message.
    assert [m["content"][:3] for m in sent] == ["Be ", "m9 ", "and"]
    assert sum(estimate_tokens(m["content"]) + 4 for m in sent) <= 2048 - 1024
    assert fake_ollama.contexts[-1].dropped == 0


async def test_the_window_is_capped_at_the_models_maximum_and_settings_say_so(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.add_model("small", context_length=2048)
    config = config_with(fake_ollama, tmp_path, model="small")
    async with make_engine(config) as engine:
        await engine.handle_turn(turn("hi"), FakeSurface())
        shown = await engine.execute(CommandContext(KEY, None, ALICE), ContextShow())

    assert fake_ollama.requests[-1]["options"]["num_ctx"] == 2048
    assert "8,192 tokens" in shown.body
    assert "capped at `small`'s maximum: 2,048" in shown.body


async def test_the_window_is_the_same_for_every_request_so_ollama_never_reloads(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply.text("hello"),
        Reply.text('{"steps": ["add"], "solution": "2"}'),
        Reply.text("bye"),
    )
    await engine.handle_turn(turn("hi"), FakeSurface())
    await engine.handle_turn(turn("1+1", chain=True), FakeSurface())
    await engine.handle_turn(turn("thanks"), FakeSurface())

    assert [r["options"]["num_ctx"] for r in fake_ollama.requests] == [8192] * 3
    assert fake_ollama.reloads == 0


async def test_moderators_set_the_context_length_per_place_and_settings_show_it(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    thread = SessionKey("test", "room-1", "t1")
    refused = await engine.execute(CommandContext(KEY, "srv", ALICE), ContextSet("4096"))
    bad = await engine.execute(CommandContext(KEY, "srv", MOD), ContextSet("100"))
    server = parse_command("context set 4096 --scope server")
    assert server == ContextSet("4096", ScopeKind.SERVER)
    done = await engine.execute(CommandContext(KEY, "srv", MOD), server)
    await engine.handle_turn(turn("in the room", server="srv"), FakeSurface())
    await engine.handle_turn(turn("in the thread", key=thread, server="srv"), FakeSurface())
    in_thread = CommandContext(thread, "srv", MOD)
    await engine.execute(in_thread, ContextSet("1024"))
    await engine.handle_turn(turn("smaller", key=thread, server="srv"), FakeSurface())
    settings = await engine.execute(in_thread, SettingsShow())

    assert not refused.ok
    assert "moderator" in refused.body
    assert not bad.ok
    assert "from 512" in bad.body
    assert done.ok
    assert [r["options"]["num_ctx"] for r in fake_ollama.requests] == [4096, 4096, 1024]
    assert isinstance(settings, SettingsView)
    [row] = [r for r in settings.rows if r.key == "context_length"]
    assert (row.value, row.source) == ("`1024`", "thread")


async def test_a_long_attachment_is_cut_to_fit_and_the_message_still_reaches_the_model(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.add_model("llama3.2", context_length=4096)
    notes: list[str] = []

    async def notify(text: str) -> None:
        notes.append(text)

    # 15 kB of text: under the 20,000-character attachment cap, over what 4,096 tokens hold.
    document = Attachment("notes.txt", "text/plain", ("line of notes\n" * 1100).encode())
    async with make_engine(config_with(fake_ollama, tmp_path)) as engine:
        result = await engine.handle_turn(
            turn("summarise this", attachments=(document,)), FakeSurface(), notify=notify
        )
        [(role, question, _), _answer] = await stored(engine)

    assert result.outcome is Outcome.COMPLETE
    request = fake_ollama.requests[-1]
    newest = request["messages"][-1]
    assert newest["role"] == "user"
    assert newest["content"].startswith("summarise this\n\nAttached file `notes.txt`")
    assert request["options"]["num_ctx"] == 4096
    assert newest["content"] == question
    assert len(question) < len(document.data)
    assert estimate_tokens(question) + 4 <= 4096 - 1024
    assert fake_ollama.contexts[-1].dropped == 0
    assert any("notes.txt" in n and "4,096-token context window" in n for n in notes)


async def test_a_message_that_cannot_fit_is_refused_with_the_limit(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    surface = FakeSurface()
    async with make_engine(config_with(fake_ollama, tmp_path, context_length=512)) as engine:
        result = await engine.handle_turn(turn("why " * 400), surface)
        history = await stored(engine)

    assert result.outcome is Outcome.ERROR
    assert "512-token context window" in (result.error or "")
    assert "context_length" in surface.texts[-1]
    assert fake_ollama.requests == []
    assert history == []  # nothing stored: the message was never asked


async def test_a_chain_of_thought_turn_fits_the_window_with_its_instructions(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.script(Reply.text('{"steps": ["add"], "solution": "2"}'))
    async with make_engine(config_with(fake_ollama, tmp_path, context_length=2048)) as engine:
        session = await engine.store.session_id(KEY)
        for i in range(200):  # short messages: the history fills the budget to a few tokens
            role = Role.USER if i % 2 == 0 else Role.ASSISTANT
            await engine.store.append(session, NewMessage(role, f"message number {i:03}"))
        await engine.handle_turn(turn("1+1", chain=True), FakeSurface())

    request = fake_ollama.requests[-1]
    sent = request["messages"]
    assert sent[-1]["content"] == "Task: 1+1"
    assert sent[-2]["content"] == "message number 199"
    # The chain's instructions join the system prompt; the history still leaves the reply its
    # num_predict within the window.
    reserve = request["options"]["num_predict"]
    assert sum(estimate_tokens(m["content"]) + 4 for m in sent) <= 2048 - reserve
