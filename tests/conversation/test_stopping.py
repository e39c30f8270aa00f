"""``stop`` means "my reply", everywhere (issue 10, point 2): one rule, kept by the engine.

A user stops the replies they asked for, running or queued; a moderator of the place stops any;
the answer says how many. Real engine, real SQLite, the real ollama client on the fake Ollama.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.conversation.commands import CommandContext, Stop
from bot.conversation.engine import Engine, Notify, ReplyResult
from bot.turn import Author, ScopeKind, SessionKey, Turn
from bot.types import Outcome
from tests.conversation.test_engine import make_config
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface

CHANNEL = SessionKey("test", "chan-1")
CHAIN = SessionKey("test", "chan-1", "chain-root")
ALICE = Author("u-alice", "Alice")
BOB = Author("u-bob", "Bob")
CHANNEL_MOD = Author("u-mod", "Mo", moderates=frozenset({ScopeKind.ROOM}))
THREAD_MOD = Author("u-tmod", "Tess", moderates=frozenset({ScopeKind.THREAD}))


@pytest.fixture
def config(fake_ollama: FakeOllama, tmp_path: Path) -> BotConfig:
    # A queued turn is told its place at once: the tests wait for that notice.
    return make_config(fake_ollama, tmp_path / "bot.db", limits={"queue_notice_delay": 0})


def queued() -> tuple[asyncio.Event, Notify]:
    """A notify callback, and an event set when it says the turn waits in the queue."""
    told = asyncio.Event()

    async def notify(text: str) -> None:
        if "queue" in text:
            told.set()

    return told, notify


async def stop(engine: Engine, by: Author, where: SessionKey = CHANNEL) -> str:
    result = await engine.execute(CommandContext(key=where, server=None, author=by), Stop())
    return result.as_markdown()


async def alice_running_bob_queued(
    engine: Engine, fake_ollama: FakeOllama, gate: asyncio.Event
) -> tuple[asyncio.Task[ReplyResult], asyncio.Task[ReplyResult], FakeSurface, FakeSurface]:
    """Alice's reply is being written in the chain; Bob's turn in the same chain waits."""
    fake_ollama.script(Reply.text("alice's answer", gate=gate), Reply.text("bob's answer"))
    alice_surface, bob_surface = FakeSurface(), FakeSurface()
    alice = asyncio.create_task(
        engine.handle_turn(Turn(CHAIN, ALICE, "long question"), alice_surface)
    )
    await fake_ollama.wait_for_requests(1)
    told, notify = queued()
    bob = asyncio.create_task(
        engine.handle_turn(Turn(CHAIN, BOB, "me too"), bob_surface, notify=notify)
    )
    await told.wait()
    return alice, bob, alice_surface, bob_surface


async def test_bob_stops_his_queued_reply_in_alices_chain_and_not_hers(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    alice, bob, alice_surface, bob_surface = await alice_running_bob_queued(
        engine, fake_ollama, gate
    )
    assert "Stopped 1 reply" in await stop(engine, BOB)
    bob_result = await bob
    assert bob_result.outcome is Outcome.STOPPED
    assert "Stopped before any answer" in bob_surface.texts[-1]
    gate.set()
    alice_result = await alice
    assert alice_result.outcome is Outcome.COMPLETE
    assert alice_surface.texts[-1].startswith("alice's answer")
    assert len(fake_ollama.requests) == 1  # Bob's message never reached the model


async def test_a_user_cannot_stop_someone_elses_reply_and_is_told_so(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("alice's answer", gate=gate))
    alice = asyncio.create_task(engine.handle_turn(Turn(CHAIN, ALICE, "q"), FakeSurface()))
    await fake_ollama.wait_for_requests(1)
    answer = await stop(engine, BOB)
    assert "Not yours to stop" in answer
    gate.set()
    assert (await alice).outcome is Outcome.COMPLETE


async def test_a_moderator_of_the_channel_stops_every_reply_and_the_answer_counts_them(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    alice, bob, _, _ = await alice_running_bob_queued(engine, fake_ollama, gate)
    assert "Stopped 2 replies" in await stop(engine, CHANNEL_MOD)
    assert (await alice).outcome is Outcome.STOPPED
    assert (await bob).outcome is Outcome.STOPPED
    assert "Nothing to stop" in await stop(engine, CHANNEL_MOD)


async def test_a_thread_moderator_stops_in_the_thread_but_not_in_the_channel(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply.text("alice's answer", gate=gate))
    alice = asyncio.create_task(engine.handle_turn(Turn(CHAIN, ALICE, "q"), FakeSurface()))
    await fake_ollama.wait_for_requests(1)
    assert "Not yours to stop" in await stop(engine, THREAD_MOD, CHANNEL)
    assert "Stopped 1 reply" in await stop(engine, THREAD_MOD, CHAIN)
    assert (await alice).outcome is Outcome.STOPPED


async def test_the_asker_stops_the_reply_queued_after_the_first_one_ended(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    """The old tracker dropped the chain when the first turn ended: the next was unstoppable."""
    first_gate, second_gate = asyncio.Event(), asyncio.Event()
    fake_ollama.script(
        Reply.text("first", gate=first_gate),
        Reply.text("second", gate=second_gate),
        Reply.text("third"),
    )
    told, notify = queued()
    turns = [asyncio.create_task(engine.handle_turn(Turn(CHAIN, BOB, "one"), FakeSurface()))]
    await fake_ollama.wait_for_requests(1)
    turns.append(
        asyncio.create_task(
            engine.handle_turn(Turn(CHAIN, BOB, "two"), FakeSurface(), notify=notify)
        )
    )
    await told.wait()
    first_gate.set()
    await turns[0]
    await fake_ollama.wait_for_requests(2)
    assert "Stopped 1 reply" in await stop(engine, BOB)
    assert (await turns[1]).outcome is Outcome.STOPPED
