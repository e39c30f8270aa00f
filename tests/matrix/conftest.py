"""Fixtures for the Matrix adapter: one real Synapse per test session, a human, fresh bots.

Every test gets its own bot user (so rate-limit state never leaks between tests) and its own
engine and SQLite file; a second matrix-nio client plays the human.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nio
import pytest

from adapters.matrix import MatrixBot, MatrixConfig
from bot.config import BotConfig, LimitsConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.fakes.fake_ollama import FakeOllama
from tests.fakes.synapse import SynapseServer

T = TypeVar("T")
_names = itertools.count()
WITHIN = 30.0


def unique(prefix: str) -> str:
    # pytest may import this module twice (as ``conftest`` and ``tests.matrix.conftest``), each
    # with its own counter: the random part keeps user names unique across both copies.
    return f"{prefix}{next(_names)}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A real Synapse on loopback, started once per test session, stopped with SIGTERM."""
    server = SynapseServer(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = WITHIN) -> T:
    """Poll ``probe`` until it returns something truthy (no timing assertion: a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.1)


class Human:
    """A person in the rooms, driven through a real matrix-nio client."""

    def __init__(self, synapse: SynapseServer, user_id: str, token: str) -> None:
        self.synapse = synapse
        self.user_id = user_id
        self.client = nio.AsyncClient(synapse.url, user_id)
        self.client.restore_login(user_id, "HUMAN", token)

    async def close(self) -> None:
        await self.client.close()

    async def create_room(
        self,
        *,
        invite: tuple[str, ...] = (),
        name: str | None = "test room",
        is_direct: bool = False,
        encrypted: bool = False,
        power_users: dict[str, int] | None = None,
    ) -> str:
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        override = None
        if power_users is not None:
            override = {"users": {self.user_id: 100, **power_users}}
        response = await self.client.room_create(
            name=name,
            invite=invite,
            is_direct=is_direct,
            initial_state=initial_state,
            power_level_override=override,
        )
        assert isinstance(response, nio.RoomCreateResponse), response
        return str(response.room_id)

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        assert isinstance(response, nio.RoomInviteResponse), response

    async def send(
        self,
        room_id: str,
        text: str,
        *,
        mention: str | None = None,
        thread_root: str | None = None,
        reply_to: str | None = None,
    ) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        content["m.mentions"] = {"user_ids": [mention]} if mention else {}
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        response = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def react(self, room_id: str, event_id: str, key: str) -> None:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        response = await self.client.room_send(room_id, "m.reaction", content)
        assert isinstance(response, nio.RoomSendResponse), response

    async def events(self, room_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The room's events (raw JSON), oldest first."""
        response = await self.client.room_messages(room_id, start="", limit=limit)
        assert isinstance(response, nio.RoomMessagesResponse), response
        return [e.source for e in reversed(response.chunk)]

    async def bot_messages(self, room_id: str, bot_id: str) -> list[dict[str, Any]]:
        """The bot's messages (not its edits), oldest first."""
        return [
            e
            for e in await self.events(room_id)
            if e["sender"] == bot_id
            and e["type"] == "m.room.message"
            and e["content"].get("m.relates_to", {}).get("rel_type") != "m.replace"
        ]

    async def replies_to(self, room_id: str, bot_id: str, event_id: str) -> list[dict[str, Any]]:
        """Bot messages answering ``event_id`` (threaded under it, or replying to it)."""
        found = []
        for e in await self.bot_messages(room_id, bot_id):
            rel = e["content"].get("m.relates_to", {})
            if rel.get("m.in_reply_to", {}).get("event_id") == event_id:
                found.append(e)
        return found

    async def visible_text(self, room_id: str, event_id: str) -> str:
        """What a client shows for ``event_id``: the newest edit's text, else the original."""
        raw = await asyncio.to_thread(
            self.synapse.request,
            "GET",
            f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}",
            token=self.client.access_token,
        )
        edit = raw.get("unsigned", {}).get("m.relations", {}).get("m.replace")
        if edit and "content" in edit:
            return str(edit["content"]["m.new_content"]["body"])
        return str(raw["content"]["body"])

    async def wait_joined(self, room_id: str, user_id: str) -> None:
        async def joined() -> bool:
            response = await self.client.joined_members(room_id)
            return isinstance(response, nio.JoinedMembersResponse) and any(
                m.user_id == user_id for m in response.members
            )

        await eventually(joined)

    async def members(self, room_id: str) -> list[str]:
        response = await self.client.joined_members(room_id)
        assert isinstance(response, nio.JoinedMembersResponse), response
        return [m.user_id for m in response.members]


@pytest.fixture
async def new_human(synapse: SynapseServer) -> AsyncIterator[Callable[[], Human]]:
    """Make humans (rate limits lifted: they are not what is under test)."""
    humans: list[Human] = []

    def make() -> Human:
        user_id, token = synapse.register(unique("human"))
        synapse.lift_ratelimit(user_id)
        human = Human(synapse, user_id, token)
        humans.append(human)
        return human

    yield make
    for human in humans:
        await human.close()


@pytest.fixture
def human(new_human: Callable[[], Human]) -> Human:
    return new_human()


@dataclass
class RunningBot:
    """A started bot with its engine; ``restart`` keeps the user, token and database."""

    bot: MatrixBot
    engine: Engine
    config: MatrixConfig
    token: str
    db: Path
    fake: FakeOllama

    @property
    def user_id(self) -> str:
        return self.config.user_id

    async def stop(self) -> None:
        await self.bot.close()
        await self.engine.close()

    async def restart(self) -> None:
        await self.stop()
        self.engine, self.bot = await _start(self.config, self.token, self.db, self.fake)


def make_engine(fake: FakeOllama, db: Path) -> Engine:
    """The real engine: OllamaChatModel on the fake Ollama, SqliteStore on ``db``."""
    return Engine(
        OllamaChatModel(fake.url),
        SqliteStore(db),
        BotConfig(limits=LimitsConfig(user_messages_per_minute=10_000)),
    )


async def _start(
    config: MatrixConfig, token: str, db: Path, fake: FakeOllama
) -> tuple[Engine, MatrixBot]:
    engine = make_engine(fake, db)
    await engine.start()
    bot = MatrixBot(engine, config, access_token=token)
    try:
        await bot.start()
    except BaseException:
        await engine.close()
        raise
    return engine, bot


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def start_bot(
    synapse: SynapseServer, fake_ollama: FakeOllama, tmp_path: Path
) -> AsyncIterator[StartBot]:
    """Start fresh bots: ``await start_bot(lifted=True, **config)``; all stopped at teardown."""
    running: list[RunningBot] = []

    async def start(*, lifted: bool = True, **overrides: Any) -> RunningBot:
        user_id, token = synapse.register(unique("ollabot"))
        if lifted:
            synapse.lift_ratelimit(user_id)
        settings: dict[str, Any] = {
            "homeserver": synapse.url,
            "user_id": user_id,
            "sync_timeout_ms": 5_000,
            # Beside the database, as `ollabot run` puts it: every bot encrypts when it can.
            "crypto_store": tmp_path / f"{user_id[1:].split(':')[0]}-crypto",
        }
        settings.update(overrides)
        config = MatrixConfig(**settings)
        db = tmp_path / f"{user_id[1:].split(':')[0]}.db"
        engine, bot = await _start(config, token, db, fake_ollama)
        handle = RunningBot(bot, engine, config, token, db, fake_ollama)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()
