"""The engine end to end: real ollama client against the fake server, real SQLite, fake surface."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.config import BotConfig
from bot.conversation.commands import (
    CommandContext,
    Cot,
    ModelPull,
    ModelSet,
    ModeSet,
    Reset,
    SettingsShow,
    Stats,
)
from bot.conversation.engine import Engine
from bot.conversation.results import PullView, SettingsView, StatsView
from bot.model.ollama import OllamaChatModel
from bot.store.port import MessageStatus, NewMessage, Scope, ScopeKind
from bot.store.sqlite import SqliteStore
from bot.turn import Attachment, Author, SessionKey, Turn
from bot.types import Outcome, Role
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface

KEY = SessionKey("test", "room-1")
ALICE = Author("u-alice", "Alice")
MOD = Author("u-mod", "Mo", is_moderator=True)


def make_config(fake: FakeOllama, db: Path, **sections: Any) -> BotConfig:
    data: dict[str, Any] = {
        "ollama": {
            "host": fake.url,
            "retry_attempts": 2,
            "retry_initial_backoff": 0.01,
            "retry_max_backoff": 0.02,
            "first_token_timeout": 5,
        },
        "storage": {"path": str(db)},
        "defaults": {"model": "llama3.2", "system_prompt": "Be brief."},
    }
    for name, value in sections.items():
        data.setdefault(name, {}).update(value)
    return BotConfig.model_validate(data)


def make_engine(config: BotConfig) -> Engine:
    model = OllamaChatModel(config.ollama.host, connect_timeout=config.ollama.connect_timeout)
    return Engine(model, SqliteStore(config.storage.path), config)


def turn(text: str, *, author: Author = ALICE, key: SessionKey = KEY, **kw: Any) -> Turn:
    return Turn(key=key, author=author, text=text, **kw)


async def stored(engine: Engine, key: SessionKey = KEY) -> list[tuple[Role, str, MessageStatus]]:
    session = await engine.store.session_id(key)
    return [(m.role, m.content, m.status) for m in await engine.store.recent_messages(session, 50)]


async def test_a_turn_streams_the_answer_and_stores_the_exchange(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    surface = FakeSurface()
    result = await engine.handle_turn(turn("hello there"), surface)
    assert result.outcome is Outcome.COMPLETE
    assert result.text == "echo: hello there"
    assert surface.texts[-1].startswith("echo: hello there")
    assert await stored(engine) == [
        (Role.USER, "hello there", MessageStatus.COMPLETE),
        (Role.ASSISTANT, "echo: hello there", MessageStatus.COMPLETE),
    ]
    sent = fake_ollama.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1]["content"] == "hello there"


async def test_the_next_turn_carries_the_conversation_and_survives_a_restart(
    config: BotConfig, fake_ollama: FakeOllama
) -> None:
    async with make_engine(config) as first:
        await first.handle_turn(turn("my name is Ada"), FakeSurface())
    async with make_engine(config) as second:
        await second.handle_turn(turn("what is my name?"), FakeSurface())
    contents = [m["content"] for m in fake_ollama.requests[-1]["messages"]]
    assert contents == ["Be brief.", "my name is Ada", "echo: my name is Ada", "what is my name?"]


async def test_the_same_event_is_never_answered_twice(engine: Engine) -> None:
    surface = FakeSurface()
    first = await engine.handle_turn(turn("hi", event_id="ev1"), surface)
    again = await engine.handle_turn(turn("hi", event_id="ev1"), surface)
    assert first.outcome is Outcome.COMPLETE
    assert again.skipped
    assert again.outcome is None
    assert len(surface.sends) == 1


async def test_bad_input_gets_a_clear_error_and_never_reaches_the_model(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    surface = FakeSurface()
    empty = await engine.handle_turn(turn(" \u200b\n\t "), surface)
    huge = await engine.handle_turn(turn("x" * 100_000), surface)
    assert empty.outcome is Outcome.ERROR
    assert huge.outcome is Outcome.ERROR
    assert "limit is 4,096" in (huge.error or "")
    assert any("limit is 4,096" in t for t in surface.texts)
    assert fake_ollama.requests == []


async def test_a_missing_model_is_explained_with_the_installed_models(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.remove_model("llama3.2")
    fake_ollama.add_model("qwen3")
    surface = FakeSurface()
    result = await engine.handle_turn(turn("hi"), surface)
    assert result.outcome is Outcome.ERROR
    assert "'llama3.2' is not installed" in surface.texts[-1]
    assert "qwen3:latest" in surface.texts[-1]
    assert fake_ollama.requests == []  # nothing retried in a loop


async def test_ollama_down_is_reported_and_the_bot_recovers_without_restart(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()
    surface = FakeSurface()
    down = await engine.handle_turn(turn("anyone there?"), surface)
    assert down.outcome is Outcome.ERROR
    assert f"Cannot reach Ollama at {fake_ollama.url}" in surface.texts[-1]
    await fake_ollama.start()
    back = await engine.handle_turn(turn("now?"), FakeSurface())
    assert back.outcome is Outcome.COMPLETE


async def test_a_failure_before_the_first_token_shows_one_error_message_and_is_stored(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await engine.handle_turn(turn("warm up"), FakeSurface())  # model info is now cached
    fake_ollama.script(Reply(status=500), Reply(status=500))
    surface = FakeSurface()
    result = await engine.handle_turn(turn("hello?"), surface)
    assert result.outcome is Outcome.ERROR
    assert len(surface.sends) == 1
    assert "⚠️" in surface.texts[-1] or "error" in surface.texts[-1].lower()
    role, content, status = (await stored(engine))[-1]
    assert (role, content, status) == (Role.ASSISTANT, "", MessageStatus.ERROR)


async def test_a_reply_cut_mid_stream_is_marked_and_stored_interrupted(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("one two three four five", drop_after=3))
    surface = FakeSurface()
    cut = await engine.handle_turn(turn("count"), surface)
    assert cut.outcome is Outcome.INTERRUPTED
    assert cut.text.strip() == "one two three"
    assert "interrupted" in surface.texts[-1].lower()
    assert (await stored(engine))[-1] == (Role.ASSISTANT, cut.text, MessageStatus.INTERRUPTED)
    ok = await engine.handle_turn(turn("again"), FakeSurface())
    assert ok.outcome is Outcome.COMPLETE


async def test_a_reply_cut_at_the_length_limit_says_so_and_is_stored_as_cut(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(fake_ollama, tmp_path / "bot.db", defaults={"num_predict": 3})
    fake_ollama.script(Reply.text("one two three four five"))
    surface = FakeSurface()
    async with make_engine(config) as engine:
        result = await engine.handle_turn(turn("count"), surface)
        await engine.handle_turn(turn("go on"), FakeSurface())
        history = await stored(engine)

    assert fake_ollama.requests[0]["options"]["num_predict"] == 3
    assert result.outcome is Outcome.LENGTH
    assert result.text == "one two three "
    assert surface.texts[-1].endswith("· length")
    assert history[1] == (Role.ASSISTANT, "one two three ", MessageStatus.LENGTH)
    # A cut reply is still part of the conversation.
    assert "one two three" in [m["content"] for m in fake_ollama.requests[-1]["messages"]]


async def test_stop_ends_the_reply_keeping_its_text_marked_stopped(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["a ", "b ", "c ", "d "] * 50, token_delay=0.02))
    surface = FakeSurface()
    task = asyncio.create_task(engine.handle_turn(turn("go"), surface))
    await surface.wait_calls(1)
    assert await engine.stop(KEY) is True
    result = await task
    assert result.outcome is Outcome.STOPPED
    assert result.text
    assert len(result.text) < 400
    assert "stopped" in surface.texts[-1].lower()
    role, content, status = (await stored(engine))[-1]
    assert (role, status) == (Role.ASSISTANT, MessageStatus.STOPPED)
    assert content == result.text
    await fake_ollama.wait_for_client_close()


async def test_a_second_turn_waits_and_is_told_its_place(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("first answer", gate=gate))
    notes: list[str] = []

    async def notify(text: str) -> None:
        notes.append(text)

    first = asyncio.create_task(engine.handle_turn(turn("one"), FakeSurface()))
    await fake_ollama.wait_for_requests(1)
    told = asyncio.Event()

    async def notify_and_signal(text: str) -> None:
        await notify(text)
        told.set()

    second = asyncio.create_task(
        engine.handle_turn(turn("two"), FakeSurface(), notify=notify_and_signal)
    )
    await asyncio.wait_for(told.wait(), 5)
    assert "number 1 in the queue" in notes[0]
    gate.set()
    assert (await first).text == "first answer"
    assert (await second).text == "echo: two"


async def test_images_are_refused_for_a_model_without_vision_with_a_note(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    notes: list[str] = []

    async def notify(text: str) -> None:
        notes.append(text)

    image = Attachment("cat.png", "image/png", b"\x89PNG...")
    text = Attachment("notes.txt", "text/plain", b"line one\nline two")
    result = await engine.handle_turn(
        turn("look", attachments=(image, text)), FakeSurface(), notify=notify
    )
    assert result.outcome is Outcome.COMPLETE
    assert any("cannot see images" in n for n in notes)
    prompt = fake_ollama.requests[-1]["messages"][-1]
    assert "line two" in prompt["content"]
    assert not prompt.get("images")


async def test_attachments_share_one_budget_and_the_rest_are_left_out_with_a_note(
    config: BotConfig,
) -> None:
    small = config.model_copy(
        update={"limits": config.limits.model_copy(update={"max_attachment_chars": 10})}
    )
    notes: list[str] = []

    async def notify(text: str) -> None:
        notes.append(text)

    first = Attachment("a.txt", "text/plain", b"0123456789abcdef")
    second = Attachment("b.txt", "text/plain", b"never read")
    async with make_engine(small) as engine:
        await engine.handle_turn(
            turn("files", attachments=(first, second)), FakeSurface(), notify=notify
        )
        session = await engine.store.session_id(KEY)
        [question, _] = await engine.store.recent_messages(session, 2)
    assert "0123456789" in question.content
    assert "abcdef" not in question.content
    assert "never read" not in question.content
    assert "b.txt" not in question.content
    assert any("only its first 10 characters" in n for n in notes)
    assert any("`b.txt` was left out" in n for n in notes)


async def test_a_non_moderator_cannot_change_the_model_and_the_attempt_is_audited(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    ctx = CommandContext(KEY, None, ALICE)
    result = await engine.execute(ctx, ModelSet("qwen3"))
    assert not result.ok
    assert result.ephemeral
    assert "moderator" in result.as_markdown()
    scope = Scope("test", ScopeKind.ROOM, "room-1")
    assert await engine.store.get_settings(scope) == {}
    [entry] = await engine.store.audit_log(scope)
    assert (entry.actor_id, entry.key, entry.allowed) == ("u-alice", "model", False)
    await engine.handle_turn(turn("hi"), FakeSurface())
    assert fake_ollama.requests[-1]["model"] == "llama3.2"


async def test_a_moderator_sets_model_and_mode_and_the_next_reply_uses_them(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    ctx = CommandContext(KEY, None, MOD)
    assert (await engine.execute(ctx, ModelSet("qwen3"))).ok
    assert (await engine.execute(ctx, ModeSet("precise"))).ok
    missing = await engine.execute(ctx, ModelSet("nope"))
    assert not missing.ok
    assert "qwen3:latest" in missing.as_markdown()
    await engine.handle_turn(turn("hi"), FakeSurface())
    request = fake_ollama.requests[-1]
    assert request["model"] == "qwen3"
    assert request["options"]["temperature"] == 0.2
    assert "precisely" in request["messages"][0]["content"]
    view = await engine.execute(ctx, SettingsShow())
    assert isinstance(view, SettingsView)
    rows = {r.key: (r.value, r.source) for r in view.rows}
    assert rows["model"] == ("`qwen3`", "room")
    assert rows["system_prompt"][1] == "default"
    log = await engine.store.audit_log()
    assert [(e.key, e.allowed) for e in log if e.allowed] == [("mode", True), ("model", True)] or [
        (e.key, e.allowed) for e in log if e.allowed
    ] == [("model", True), ("mode", True)]


async def test_reset_starts_a_fresh_conversation(engine: Engine, fake_ollama: FakeOllama) -> None:
    await engine.handle_turn(turn("remember 42"), FakeSurface())
    await engine.execute(CommandContext(KEY, None, ALICE), Reset())
    await engine.handle_turn(turn("what number?"), FakeSurface())
    contents = [m["content"] for m in fake_ollama.requests[-1]["messages"]]
    assert contents == ["Be brief.", "what number?"]


async def test_pull_reports_progress_and_installs_the_model(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    refused = await engine.execute(CommandContext(KEY, None, ALICE), ModelPull("mistral"))
    assert not refused.ok
    assert [(e.key, e.allowed) for e in await engine.store.audit_log()] == [("pull", False)]
    result = await engine.execute(CommandContext(KEY, None, MOD), ModelPull("mistral"))
    assert isinstance(result, PullView)
    assert result.progress is not None
    statuses = [p.status async for p in result.progress]
    assert statuses[-1] == "success"
    assert "mistral" in " ".join(await engine.model_names())


async def test_cot_as_a_command_points_to_the_reply_path(engine: Engine) -> None:
    # A chain of thought is a turn (Turn(chain=True)); see test_chain_turns.py.
    result = await engine.execute(CommandContext(KEY, None, ALICE), Cot("17 * 23?"))
    assert not result.ok
    assert "as a reply" in result.body


async def test_stats_count_the_channels_messages_and_tokens(engine: Engine) -> None:
    await engine.handle_turn(turn("one"), FakeSurface())
    await engine.handle_turn(turn("two", key=SessionKey("test", "room-1", "t")), FakeSurface())
    result = await engine.execute(CommandContext(KEY, None, ALICE), Stats())
    assert isinstance(result, StatsView)
    assert result.stats is not None
    assert result.stats.messages == 4
    assert result.stats.eval_tokens > 0


async def test_a_stopped_reply_is_counted_but_left_out_of_the_mean_speed(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await engine.handle_turn(turn("one"), FakeSurface())
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(50)], hold_after=5))
    surface = FakeSurface()
    task = asyncio.create_task(engine.handle_turn(turn("talk"), surface))
    await fake_ollama.wait_for_held()
    await surface.wait_for_text("t4")
    assert await engine.stop(KEY) is True
    assert (await task).outcome is Outcome.STOPPED
    await fake_ollama.wait_for_client_close()

    session = await engine.store.session_id(KEY)
    complete, stopped = [
        m for m in await engine.store.recent_messages(session, 10) if m.role is Role.ASSISTANT
    ]
    assert (stopped.status, stopped.eval_tokens, stopped.duration) == (
        MessageStatus.STOPPED,
        5,
        None,
    )
    assert complete.eval_tokens == 2
    assert complete.duration
    result = await engine.execute(CommandContext(KEY, None, ALICE), Stats())
    assert isinstance(result, StatsView)
    assert result.stats is not None
    assert result.stats.eval_tokens == 2 + 5
    assert result.stats.mean_tokens_per_second == pytest.approx(2 / complete.duration)


async def test_a_reply_cut_by_a_crash_is_marked_interrupted_at_start(config: BotConfig) -> None:
    async with SqliteStore(config.storage.path) as store:
        session = await store.session_id(KEY)
        await store.append(session, NewMessage(Role.USER, "q"))
        await store.append(
            session, NewMessage(Role.ASSISTANT, "half an ans", status=MessageStatus.STREAMING)
        )
    async with make_engine(config) as engine:
        assert (await stored(engine))[-1] == (
            Role.ASSISTANT,
            "half an ans",
            MessageStatus.INTERRUPTED,
        )
