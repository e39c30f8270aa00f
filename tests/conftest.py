"""Shared pytest fixtures. Keep this small: suite-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.fake_ollama import FakeOllama


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    """A started :class:`FakeOllama` on an ephemeral loopback port ("llama3.2:latest" installed)."""
    async with FakeOllama() as fake:
        yield fake
