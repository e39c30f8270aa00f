"""Replies cut by a crash: their platform messages are remembered while streaming, and after a
restart the engine hands each adapter the text that marks its cut replies."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from bot.config import BotConfig
from bot.conversation.cut_replies import INTERRUPTED_BY_RESTART, last_message_text, shown_parts
from bot.conversation.engine import Engine
from bot.errors import ChatError
from bot.reply.splitting import unsplit
from bot.reply.streamer import ReplyStatus
from bot.store.port import CutReply, MessageStatus, NewMessage
from bot.store.sqlite import SqliteStore
from bot.turn import SessionKey
from bot.types import Outcome, Role
from tests.conversation.test_engine import KEY, make_engine, turn
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface, GatePacer, default_footer

OTHER = SessionKey("other", "room-2")
FOOTER = default_footer(ReplyStatus(Outcome.INTERRUPTED, error=INTERRUPTED_BY_RESTART))


def streaming_refs(db: Path) -> list[tuple[str, str | None]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT content, refs FROM messages WHERE status = 'streaming'")
        return [(str(content), refs) for content, refs in rows.fetchall()]


async def test_the_first_message_of_a_reply_is_saved_with_it_as_soon_as_it_is_sent(
    engine: Engine, config: BotConfig, fake_ollama: FakeOllama
) -> None:
    # Slow tokens: the periodic save of the partial text (every 2 s) has not come yet.
    fake_ollama.script(Reply(tokens=[f"w{i} " for i in range(400)], token_delay=0.02))
    pacer = GatePacer()
    surface = FakeSurface(pacer=pacer)
    task = asyncio.create_task(engine.handle_turn(turn("count"), surface))
    pacer.grant(1)  # the first send, and nothing after it
    await surface.wait_calls(1)
    # Polling: the save happens in the engine's task, with no notification to wait on.
    async with asyncio.timeout(5):
        while True:
            rows = streaming_refs(config.storage.path)
            if rows and rows[0][1] is not None:
                break
            await asyncio.sleep(0.01)
    [(content, refs)] = rows
    assert refs == '["m1"]'
    assert content.startswith(surface.sends[0].text.strip())
    assert await engine.stop(KEY) is True
    pacer.open()
    result = await task
    assert result.message_ids == ("m1",)


async def test_start_keeps_cut_replies_and_mends_each_platforms_own_once(
    config: BotConfig,
) -> None:
    async with SqliteStore(config.storage.path) as store:
        for key, text, refs in [
            (KEY, "half an ans", ["m1"]),
            (KEY, "never shown", None),
            (OTHER, "elsewhere", ["x9"]),
            (KEY, "second cut", ["m7"]),
        ]:
            session = await store.session_id(key)
            reply = await store.append(
                session, NewMessage(Role.ASSISTANT, "", status=MessageStatus.STREAMING)
            )
            await store.update_message(
                reply, content=text, status=MessageStatus.STREAMING, refs=refs
            )
    mended: list[tuple[CutReply, str]] = []

    async def mend(cut: CutReply, text: str) -> None:
        if cut.content == "half an ans":
            raise ChatError("the platform refused", {"ref": cut.refs[-1]})
        mended.append((cut, text))

    async with make_engine(config) as engine:
        count = await engine.mend_cut_replies(
            "test", mend, max_chars=2000, render_status=default_footer
        )
        # One refused, one never shown: the other still gets its footer.
        assert count == 1
        [(cut, text)] = mended
        assert (cut.key, cut.refs) == (KEY, ("m7",))
        assert text == f"second cut\n{FOOTER}"
        assert (
            await engine.mend_cut_replies(
                "test", mend, max_chars=2000, render_status=default_footer
            )
            == 0
        )
        assert (
            await engine.mend_cut_replies(
                "other", mend, max_chars=2000, render_status=default_footer
            )
            == 1
        )
        assert mended[-1][1] == f"elsewhere\n{FOOTER}"


def test_only_the_last_message_of_a_long_cut_reply_gets_the_footer() -> None:
    content = " ".join(f"word{i}" for i in range(60))  # about 430 characters
    parts = shown_parts(content, 100)
    assert len(parts) > 2
    assert unsplit(parts) == content
    text = last_message_text(content, len(parts), 100, "-# cut")
    assert text == f"{parts[-1].text}\n-# cut"
    # The messages showed more than the saved text fills: nothing sensible to write.
    assert last_message_text(content, len(parts) + 1, 100, "-# cut") is None


def test_the_footer_is_cut_to_fit_never_the_text() -> None:
    content = "x" * 95
    footer = "-# interrupted: " + "because " * 10
    text = last_message_text(content, 1, 120, footer)
    assert text is not None
    assert text.startswith(content + "\n-# interrupted")
    assert text.endswith("…")
    assert len(text) == 120
    # No room for a useful footer: the text alone.
    assert last_message_text("y" * 118, 1, 120, footer) == "y" * 118
