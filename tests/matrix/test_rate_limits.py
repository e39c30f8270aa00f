"""Synapse's DEFAULT rate limits (rc_message 0.2/s, burst 10): long replies still finish."""

from __future__ import annotations

import pytest

from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.matrix.conftest import Human, StartBot, eventually

pytestmark = pytest.mark.synapse


async def test_long_streamed_reply_finishes_under_default_rate_limits(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    text = " ".join(f"token{i}" for i in range(300))
    fake_ollama.script(Reply.text(text, token_delay=0.02))
    bot = await start_bot(lifted=False)
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)
    asked = await human.send(room_id, "stream a lot", mention=bot.user_id)

    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))
    await bot.bot.idle()
    assert await human.visible_text(room_id, replies[0]["event_id"]) == text
    assert bot.bot.replier.stats.rate_limited <= 1  # paced under the limit, not by refusals


async def test_bot_survives_429s_when_its_pacer_is_too_optimistic(
    human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    # The bot believes it may send 20 events a second: Synapse answers 429 with retry_after_ms,
    # and the reply must still end with the whole text, not an error.
    text = " ".join(f"chunk{i}" for i in range(200))
    fake_ollama.script(Reply.text(text, token_delay=0.02))
    bot = await start_bot(lifted=False, messages_per_second=20.0, message_burst=40)
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)
    asked = await human.send(room_id, "stream fast", mention=bot.user_id)

    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))
    await bot.bot.idle()
    assert await human.visible_text(room_id, replies[0]["event_id"]) == text
    assert bot.bot.replier.stats.rate_limited >= 1  # Synapse did refuse, and the bot recovered
