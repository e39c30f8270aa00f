"""The engine on several Ollama hosts: what users see when one dies mid-run, and the model
commands that name hosts. Real engine, real SQLite, real ollama clients against two wire fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.conversation.commands import CommandContext, ModelList, ModelPull
from bot.conversation.engine import Engine, ReplyResult
from bot.conversation.results import PullView
from bot.model.ollama import OllamaChatModel
from bot.model.port import short_host
from bot.model.router import RoutedChatModel
from bot.store.port import MessageStatus
from bot.store.sqlite import SqliteStore
from bot.turn import Author, SessionKey, Turn
from bot.types import Outcome
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface

MODEL = "llama3.2:latest"
ALICE = Author("u-alice", "Alice")
MOD = Author("u-mod", "Mo", is_moderator=True)
KEY = SessionKey("test", "room-1")


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOllama, FakeOllama]]:
    async with FakeOllama() as a, FakeOllama() as b:
        yield a, b


@pytest.fixture
async def routed(
    fakes: tuple[FakeOllama, FakeOllama], tmp_path: Path
) -> AsyncIterator[tuple[Engine, RoutedChatModel]]:
    a, b = fakes
    config = BotConfig.model_validate(
        {
            "ollama": {
                "hosts": [a.url, b.url],
                "max_parallel_per_host": 1,
                "retry_initial_backoff": 0.01,
                "retry_max_backoff": 0.02,
            },
            "limits": {"user_messages_per_minute": 1000},
            "storage": {"path": str(tmp_path / "bot.db")},
        }
    )
    router = RoutedChatModel(
        [OllamaChatModel(url) for url in config.ollama.host_urls],
        max_parallel_per_host=config.ollama.max_parallel_per_host,
        recheck_initial=0.05,
    )
    async with Engine(router, SqliteStore(config.storage.path), config) as engine:
        yield engine, router


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    # (Polled: neither the fakes nor the router notify tests of these states.)
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def test_a_host_killed_mid_run_cuts_only_its_reply_and_the_waiting_one_moves_silently(
    fakes: tuple[FakeOllama, FakeOllama], routed: tuple[Engine, RoutedChatModel]
) -> None:
    a, b = fakes
    engine, router = routed
    a.loaded.add(MODEL)
    b.loaded.add(MODEL)
    a.script(Reply(tokens=[f"w{i} " for i in range(400)], token_delay=0.01))
    gate_b = asyncio.Event()
    b.script(Reply.text("b was busy", gate=gate_b))
    keys = [SessionKey("test", f"room-{i}") for i in range(3)]
    surfaces = [FakeSurface() for _ in keys]

    def ask(i: int, text: str) -> asyncio.Task[ReplyResult]:
        turn = Turn(key=keys[i], author=ALICE, text=text)
        return asyncio.create_task(engine.handle_turn(turn, surfaces[i]))

    running = ask(0, "tell me a long story")
    await surfaces[0].wait_calls(1)  # its text is on screen
    busy = ask(1, "and you?")
    await until(lambda: b.active_streams == 1)
    waiting = ask(2, "anyone free?")
    await until(lambda: router.waiting == 1)

    await a.kill()
    cut = await running
    gate_b.set()
    other, moved = await busy, await waiting

    assert cut.outcome is Outcome.INTERRUPTED
    assert "interrupted" in surfaces[0].texts[-1].lower()
    session = await engine.store.session_id(keys[0])
    [reply] = [m for m in await engine.store.recent_messages(session, 10) if m.role == "assistant"]
    assert reply.status is MessageStatus.INTERRUPTED
    assert other.outcome is Outcome.COMPLETE
    assert moved.outcome is Outcome.COMPLETE
    assert surfaces[2].texts[-1].startswith("echo: anyone free?")
    assert "⚠️" not in surfaces[2].texts[-1]
    assert [r["messages"][-1]["content"] for r in b.requests] == ["and you?", "anyone free?"]
    assert a.killed_streams == 1


async def test_model_list_shows_each_host_and_pull_goes_to_the_host_named(
    fakes: tuple[FakeOllama, FakeOllama], routed: tuple[Engine, RoutedChatModel]
) -> None:
    a, b = fakes
    engine, _ = routed
    b.add_model("qwen3:8b")
    b.loaded.add("qwen3:8b")
    first, second = short_host(a.url), short_host(b.url)

    listing = (await engine.execute(CommandContext(KEY, None, ALICE), ModelList())).as_markdown()
    pulled = await engine.execute(CommandContext(KEY, None, MOD), ModelPull("mistral", (second,)))
    assert isinstance(pulled, PullView)
    assert pulled.progress is not None
    statuses = [p.status async for p in pulled.progress]
    wrong = await engine.execute(CommandContext(KEY, None, MOD), ModelPull("mistral", ("gpu9",)))
    assert isinstance(wrong, PullView)
    assert wrong.progress is not None
    refused = [p.status async for p in wrong.progress]

    assert f"- `{MODEL}` on {first}, {second}" in listing
    assert f"- `qwen3:8b` on {second}" in listing
    assert f"- `{first}` up, 1 model, 0/1 generating, loaded: none" in listing
    assert f"- `{second}` up, 2 models, 0/1 generating, loaded: qwen3:8b" in listing
    assert statuses[0] == f"{second}: pulling manifest"
    assert statuses[-1] == "success: mistral is on 1 host(s)"
    assert "mistral:latest" in b.models
    assert "mistral:latest" not in a.models
    assert refused == [f"error: 'gpu9' is not one of the hosts. Hosts: {first}, {second}."]
