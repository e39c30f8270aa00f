"""Engine defects found by review: each test failed before its fix.

Real ollama client against the fake server, real SQLite (locked by a second connection, the way
a backup or an ``sqlite3`` shell locks it), the fake surface.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.conversation.commands import CommandContext, Stop, SystemSet
from bot.conversation.engine import Engine
from bot.errors import ChatError
from bot.model.ollama import OllamaChatModel
from bot.store.port import MessageStatus
from bot.store.sqlite import SqliteStore
from bot.turn import Author, SessionKey
from bot.types import Outcome, Role
from tests.conversation.test_engine import KEY, make_config, make_engine, stored, turn
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface


async def test_a_database_error_mid_stream_stops_the_model_and_keeps_what_was_shown(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    config = make_config(fake_ollama, db)
    release = asyncio.Event()
    words = [f"word{i:03d} " for i in range(400)]
    # Slow enough that the model is still generating when the save fails (about 20 s in all).
    fake_ollama.script(Reply(tokens=words, hold_after=5, release=release, token_delay=0.05))
    model = OllamaChatModel(config.ollama.host)
    async with Engine(model, SqliteStore(db, busy_timeout_ms=50), config) as engine:
        surface = FakeSurface(max_chars=120)  # the reply needs a second message: saved at once
        task = asyncio.create_task(engine.handle_turn(turn("talk"), surface))
        await surface.wait_for_text("word004")
        other = sqlite3.connect(db)
        try:
            other.execute("BEGIN EXCLUSIVE")  # the partial save of the next message fails
            release.set()
            result = await task
            # The model was stopped by the bot, not left generating for no one (and its
            # slot was not handed on while it still ran).
            assert fake_ollama.streams_completed == 0
            await fake_ollama.wait_for_client_close(1)
        finally:
            other.rollback()
            other.close()
        assert result.outcome is Outcome.ERROR
        assert result.error is not None
        assert "could not be saved" in result.error
        shown = "".join(surface.texts)
        assert result.text.startswith("word000 word001 word002 word003 word004")
        assert result.text in shown  # what was shown is kept, and says why it ended
        assert "could not be saved" in shown
        # Never an empty ERROR reply: what was saved before the failure stays, and the
        # reply is saved whole once the database is free again.
        role, content, status = (await stored(engine))[-1]
        assert role is Role.ASSISTANT
        assert content
        assert result.text.startswith(content)
        assert status in (MessageStatus.STREAMING, MessageStatus.ERROR)


async def test_a_turn_cancelled_while_queued_is_answered_when_delivered_again(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(
        fake_ollama,
        tmp_path / "bot.db",
        limits={"max_concurrent_generations": 1, "queue_notice_delay": 0},
    )
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("first answer", gate=gate))
    queued = asyncio.Event()

    async def notify(text: str) -> None:
        queued.set()

    async with make_engine(config) as engine:
        first = asyncio.create_task(engine.handle_turn(turn("one", event_id="e1"), FakeSurface()))
        await fake_ollama.wait_for_requests(1)
        other = SessionKey("test", "room-2")
        waiting = asyncio.create_task(
            engine.handle_turn(turn("two", key=other, event_id="e2"), FakeSurface(), notify=notify)
        )
        await queued.wait()
        waiting.cancel()  # e.g. the bot shuts down while the turn waits for a slot
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.set()
        await first
        again = await engine.handle_turn(turn("two", key=other, event_id="e2"), FakeSurface())
    assert not again.skipped
    assert again.text == "echo: two"


async def test_a_notice_the_platform_refuses_does_not_end_the_turn(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(
        fake_ollama,
        tmp_path / "bot.db",
        limits={"max_concurrent_generations": 1, "queue_notice_delay": 0},
    )
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("first answer", gate=gate))
    refused = asyncio.Event()

    async def notify(text: str) -> None:
        refused.set()
        raise ChatError("Discord refused the request (403).", {"status": 403})

    async with make_engine(config) as engine:
        first = asyncio.create_task(engine.handle_turn(turn("one"), FakeSurface()))
        await fake_ollama.wait_for_requests(1)
        surface = FakeSurface()
        other = SessionKey("test", "room-2")
        second = asyncio.create_task(
            engine.handle_turn(turn("two", key=other), surface, notify=notify)
        )
        await refused.wait()
        gate.set()
        await first
        result = await second
    assert result.outcome is Outcome.COMPLETE
    assert surface.texts[-1].startswith("echo: two")


async def test_old_event_claims_are_pruned_at_start_up_within_the_configured_retention(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    config = make_config(fake_ollama, db, storage={"retention_days": 30})
    async with make_engine(config) as engine:
        for event in ("old", "recent", "new"):
            await engine.handle_turn(turn(event, event_id=event), FakeSurface())
    aged = {"old": datetime(2000, 1, 1, tzinfo=UTC), "recent": datetime.now(UTC) - timedelta(29)}
    conn = sqlite3.connect(db)
    try:
        with conn:
            for event, when in aged.items():
                conn.execute(
                    "UPDATE events SET created_at = ? WHERE event_id = ?", (when.isoformat(), event)
                )
        async with make_engine(config) as engine:
            left = [e for (e,) in conn.execute("SELECT event_id FROM events ORDER BY event_id")]
            assert left == ["new", "recent"]
            # The pruning goes on while the bot runs; the store is still usable after it.
            assert await engine.retention.prune() == 0
    finally:
        conn.close()


async def test_commands_are_rate_limited_per_user_and_refusals_audited_once_and_short(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(fake_ollama, tmp_path / "bot.db", limits={"user_commands_per_minute": 5})
    alice = CommandContext(KEY, None, Author("u-alice", "Alice"))
    async with make_engine(config) as engine:
        results = [await engine.execute(alice, SystemSet("x" * 4000)) for _ in range(50)]
        refused = [r for r in results if "Only moderators" in r.title]
        limited = [r for r in results if "faster than 5 a minute" in r.body]
        assert (len(refused), len(limited)) == (5, 45)
        # Stop stays available to someone limited, and another user has a budget of their own.
        assert (await engine.execute(alice, Stop())).title == "Nothing to stop"
        bob = CommandContext(KEY, None, Author("u-bob", "Bob"))
        assert "Only moderators" in (await engine.execute(bob, SystemSet("y"))).title
        log = await engine.store.audit_log()
    # One row per person, scope and key in ten minutes, whatever they sent; text capped.
    assert [(e.actor_id, e.allowed) for e in log] in (
        [("u-alice", False), ("u-bob", False)],
        [("u-bob", False), ("u-alice", False)],
    )
    assert all(len(str(e.new_value)) <= 200 for e in log)
