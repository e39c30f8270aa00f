"""Fixtures for the Discord adapter: the fake Discord, a small server, the real engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordBot, DiscordConfig, running_bot
from bot.config import BotConfig, LimitsConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.fakes.fake_discord import (
    PERM_MANAGE_CHANNELS,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeRole,
    FakeUser,
)
from tests.fakes.fake_ollama import FakeOllama


@dataclass
class World:
    """One server: a moderator, a member, a plain channel and a channel inside a category."""

    fake: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    category: FakeChannel
    in_category: FakeChannel
    mod_role: FakeRole
    helper_role: FakeRole
    mod: FakeUser
    alice: FakeUser
    other_bot: FakeUser


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def world(fake_discord: FakeDiscord) -> World:
    fake = fake_discord
    guild = fake.add_guild("test server")
    general = fake.add_channel(guild, "general")
    category = fake.add_channel(guild, "Bots", category=True)
    in_category = fake.add_channel(guild, "llm", parent=category)
    mod_role = fake.add_role(guild, "Mods", PERM_MANAGE_CHANNELS)
    helper_role = fake.add_role(guild, "Helpers")
    mod = fake.add_user("mod")
    alice = fake.add_user("alice")
    other_bot = fake.add_user("otherbot", bot=True)
    fake.add_member(guild, mod, [mod_role])
    fake.add_member(guild, alice)
    fake.add_member(guild, other_bot)
    return World(
        fake, guild, general, category, in_category, mod_role, helper_role, mod, alice, other_bot
    )


def discord_config(fake: FakeDiscord, **overrides: Any) -> DiscordConfig:
    """The bot pointed at the fake; it paces faster than on Discord unless a test says so.

    The fake has no rate limit unless a test sets one, so quick pacing keeps the suite fast;
    the tests about pacing and 429s use Discord's own numbers.
    """
    settings: dict[str, Any] = {
        "api_base_url": fake.api_base,
        "gateway_url": fake.gateway_url,
        "guild_ready_timeout": 0.05,
        "edits_per_second": 20.0,
        "edit_burst": 5,
    }
    return DiscordConfig.model_validate(settings | overrides)


EngineFactory = Callable[[], AbstractAsyncContextManager[Engine]]


@pytest.fixture
def make_engine(fake_ollama: FakeOllama, tmp_path: Path) -> EngineFactory:
    """Engines on one SQLite file: a second one is the bot after a restart."""

    @asynccontextmanager
    async def make() -> AsyncIterator[Engine]:
        config = BotConfig(limits=LimitsConfig(user_messages_per_minute=1000))
        engine = Engine(OllamaChatModel(fake_ollama.url), SqliteStore(tmp_path / "bot.db"), config)
        async with engine:
            yield engine

    return make


@pytest.fixture
async def engine(make_engine: EngineFactory) -> AsyncIterator[Engine]:
    async with make_engine() as engine:
        yield engine


@pytest.fixture
def bot_config(fake_discord: FakeDiscord) -> DiscordConfig:
    return discord_config(fake_discord)


@pytest.fixture
async def bot(engine: Engine, world: World, bot_config: DiscordConfig) -> AsyncIterator[DiscordBot]:
    async with running_bot(engine, bot_config, "test-token") as bot:
        yield bot
