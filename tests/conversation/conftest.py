"""The engine most conversation tests run on: real SQLite in the test's folder, the fake Ollama.

A module that needs other limits overrides ``config``; ``engine`` is built from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.conversation.engine import Engine
from tests.conversation.test_engine import make_config, make_engine
from tests.fakes.fake_ollama import FakeOllama


@pytest.fixture
def config(fake_ollama: FakeOllama, tmp_path: Path) -> BotConfig:
    return make_config(fake_ollama, tmp_path / "bot.db")


@pytest.fixture
async def engine(config: BotConfig) -> AsyncIterator[Engine]:
    async with make_engine(config) as eng:
        yield eng
