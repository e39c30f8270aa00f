"""Shared pytest fixtures. Keep this small: suite-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.fake_ollama import FakeOllama
from tests.fakes.postgres import PostgresServer


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    """A started :class:`FakeOllama` on an ephemeral loopback port ("llama3.2:latest" installed)."""
    async with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (started on first use, ~1 s)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.new_database()
