"""A chain of thought (``cot``) is a reply like any other: the engine end to end.

Real ollama client against the fake server, real SQLite, the fake surface. The turn is queued,
rate-limited and capped like a message, streams its steps as they are parsed, can be stopped,
is bounded by ``chain_num_predict``, ends with the usual outcomes and is stored.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bot.conversation.engine import Engine
from bot.store.port import MessageStatus
from bot.turn import SessionKey
from bot.types import Outcome, Role
from tests.conversation.test_engine import KEY, make_config, make_engine, stored, turn
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface

CHAIN = {
    "steps": ["1. 17 * 20 = 340", "2. 17 * 3 = 51", "3. 340 + 51 = 391"],
    "reasoning": "Split 23 into 20 and 3.",
    "solution": "391",
}
SHOWN = (
    "**Reasoning**\n1. 17 * 20 = 340\n2. 17 * 3 = 51\n3. 340 + 51 = 391\n\n"
    "Split 23 into 20 and 3.\n\n**Solution**\n391"
)


def json_tokens(data: object) -> list[str]:
    """The JSON text of ``data`` cut into small pieces, the way a model streams it."""
    text = json.dumps(data)
    return [text[i : i + 5] for i in range(0, len(text), 5)]


async def test_a_chain_of_thought_is_a_reply_of_its_conversation_and_is_stored(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await engine.handle_turn(turn("Remember: I like short answers."), FakeSurface())
    fake_ollama.script(Reply(tokens=json_tokens(CHAIN)))
    surface = FakeSurface()
    result = await engine.handle_turn(turn("What is 17 * 23?", chain=True), surface)

    assert result.outcome is Outcome.COMPLETE
    assert result.text == SHOWN  # steps numbered once, not "1. 1."
    assert surface.texts[-1].startswith(SHOWN)
    assert "{" not in "".join(c.text for c in surface.calls)  # raw JSON never shown
    body = fake_ollama.requests[-1]
    assert body["format"]["required"] == ["steps", "reasoning", "solution"]
    assert body["options"]["num_predict"] == 1024  # bounded by the configured default
    assert not body.get("tools")
    sent = [(m["role"], m["content"]) for m in body["messages"]]
    assert sent[0][0] == "system"
    assert sent[0][1].startswith("Be brief.")
    assert "numbered steps" in sent[0][1]
    assert sent[1:3] == [
        ("user", "Remember: I like short answers."),
        ("assistant", "echo: Remember: I like short answers."),
    ]
    assert sent[-1] == ("user", "Task: What is 17 * 23?")
    assert (await stored(engine))[-2:] == [
        (Role.USER, "What is 17 * 23?", MessageStatus.COMPLETE),
        (Role.ASSISTANT, SHOWN, MessageStatus.COMPLETE),
    ]


async def test_chain_steps_are_shown_as_they_are_parsed(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    tokens = ['{"steps": ["Count', ' the apples", "Take', " away the eaten", ' ones"]', "}"]
    hold = asyncio.Event()
    fake_ollama.script(Reply(tokens=tokens, hold_after=3, release=hold))
    surface = FakeSurface()
    task = asyncio.create_task(engine.handle_turn(turn("apples?", chain=True), surface))

    await surface.wait_for_text("Count the apples")
    # The second step is not complete yet: only the first is shown.
    assert "".join(surface.texts) == "**Reasoning**\n1. Count the apples"
    hold.set()
    result = await task
    assert result.text == "**Reasoning**\n1. Count the apples\n2. Take away the eaten ones"


async def test_a_chain_of_thought_can_be_stopped_and_keeps_what_was_shown(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    hold = asyncio.Event()  # never set: the model "thinks" until stopped
    tokens = ['{"steps": ["One', '", "Tw', 'o"]}']
    fake_ollama.script(Reply(tokens=tokens, hold_after=2, release=hold))
    surface = FakeSurface()
    task = asyncio.create_task(engine.handle_turn(turn("count", chain=True), surface))
    await surface.wait_for_text("1. One")

    assert await engine.stop(KEY)
    result = await task
    assert result.outcome is Outcome.STOPPED
    # What the model had begun of the next step is kept too, as for any stopped reply.
    assert result.text == "**Reasoning**\n1. One\n2. Tw"
    assert surface.texts[-1].startswith(result.text)
    assert (await stored(engine))[-1] == (Role.ASSISTANT, result.text, MessageStatus.STOPPED)
    assert fake_ollama.streams_closed_by_client == 1


async def test_a_chain_that_never_closes_its_json_is_cut_at_the_length_limit(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(fake_ollama, tmp_path / "bot.db", defaults={"chain_num_predict": 6})
    endless = ['{"steps": [', '"Start', '", "', "Go on", " and on"] + [" and on"] * 50
    fake_ollama.script(Reply(tokens=endless))
    async with make_engine(config) as engine:
        surface = FakeSurface()
        result = await engine.handle_turn(turn("loop", chain=True), surface)
        assert fake_ollama.requests[-1]["options"]["num_predict"] == 6
        assert result.outcome is Outcome.LENGTH
        # What was cut off inside a step is still shown, under the length-limit footer.
        assert result.text == "**Reasoning**\n1. Start\n2. Go on and on and on"
        assert "length" in surface.texts[-1].lower()
        assert (await stored(engine))[-1] == (Role.ASSISTANT, result.text, MessageStatus.LENGTH)


async def test_a_chain_the_model_wrote_as_prose_is_shown_as_it_came(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("First add. Then carry.\n\nSolution: 5"))
    result = await engine.handle_turn(turn("2+3", chain=True), FakeSurface())
    assert result.text == "First add. Then carry.\n\nSolution: 5"


async def test_chains_are_rate_limited_like_messages(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(fake_ollama, tmp_path / "bot.db", limits={"user_messages_per_minute": 1})
    async with make_engine(config) as engine:
        first = await engine.handle_turn(turn("a", chain=True), FakeSurface())
        second = await engine.handle_turn(turn("b", chain=True), FakeSurface())
    assert first.outcome is not Outcome.ERROR
    assert second.outcome is Outcome.ERROR
    assert second.error is not None
    assert "faster than 1 a minute" in second.error
    assert len(fake_ollama.requests) == 1


async def test_chains_wait_for_a_generation_slot_like_messages(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(
        fake_ollama,
        tmp_path / "bot.db",
        limits={"max_concurrent_generations": 1, "queue_notice_delay": 0},
    )
    gate = asyncio.Event()
    fake_ollama.script(
        Reply(tokens=json_tokens(CHAIN), gate=gate), Reply(tokens=json_tokens(CHAIN))
    )
    waiting = asyncio.Event()

    async def notify(text: str) -> None:
        waiting.set()

    async with make_engine(config) as engine:
        first = asyncio.create_task(engine.handle_turn(turn("a", chain=True), FakeSurface()))
        await fake_ollama.wait_for_requests(1)
        other = SessionKey("test", "room-2")
        second = asyncio.create_task(
            engine.handle_turn(turn("b", key=other, chain=True), FakeSurface(), notify=notify)
        )
        await waiting.wait()  # told to wait: the cap of 1 holds for chains too
        assert len(fake_ollama.requests) == 1
        gate.set()
        results = await asyncio.gather(first, second)
    assert [r.outcome for r in results] == [Outcome.COMPLETE, Outcome.COMPLETE]
