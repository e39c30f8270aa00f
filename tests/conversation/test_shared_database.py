"""Two engines on one PostgreSQL database, as two bot processes are: what one changes, the other
uses on its very next turn (settings are read from the database on every turn, never cached).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import BotConfig
from bot.conversation.commands import CommandContext, ModelSet, ModeSet, Reset
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.port import Scope, ScopeKind
from bot.store.postgres import PostgresStore
from bot.turn import Author, SessionKey, Turn
from tests.fakes.fake_ollama import FakeOllama
from tests.fakes.fake_surface import FakeSurface

KEY = SessionKey("discord", "room-1")
ALICE = Author("u-alice", "Alice")
MOD = Author("u-mod", "Mo", is_moderator=True)


@asynccontextmanager
async def process(fake: FakeOllama, url: str, instance: str) -> AsyncIterator[Engine]:
    config = BotConfig.model_validate(
        {"ollama": {"host": fake.url}, "defaults": {"model": "llama3.2"}}
    )
    store = PostgresStore(url, instance=instance)
    async with Engine(OllamaChatModel(fake.url), store, config) as engine:
        yield engine


async def test_a_change_made_through_one_process_is_in_force_in_the_other_at_once(
    fake_ollama: FakeOllama, postgres_url: str
) -> None:
    fake_ollama.add_model("qwen3")
    async with (
        process(fake_ollama, postgres_url, "a") as one,
        process(fake_ollama, postgres_url, "b") as other,
    ):
        await other.handle_turn(Turn(KEY, ALICE, "before"), FakeSurface())
        assert fake_ollama.requests[-1]["model"] == "llama3.2"

        ctx = CommandContext(KEY, None, MOD)
        assert (await one.execute(ctx, ModelSet("qwen3"))).ok
        assert (await one.execute(ctx, ModeSet("precise"))).ok
        await other.handle_turn(Turn(KEY, ALICE, "after"), FakeSurface())
        request = fake_ollama.requests[-1]
        assert request["model"] == "qwen3"
        assert request["options"]["temperature"] == 0.2
        # The history both wrote is one conversation; the audit log is the same from both.
        assert [m["content"] for m in request["messages"][1:]] == [
            "before",
            "echo: before",
            "after",
        ]
        scope = Scope("discord", ScopeKind.ROOM, "room-1")
        assert [e.key for e in await other.store.audit_log(scope)] == ["mode", "model"]

        assert (await other.execute(ctx, Reset())).ok
        await one.handle_turn(Turn(KEY, ALICE, "fresh"), FakeSurface())
        assert [m["content"] for m in fake_ollama.requests[-1]["messages"][1:]] == ["fresh"]
