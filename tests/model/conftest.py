"""Fixtures shared by the generation tests (``test_generation.py``, ``test_stream.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import bot
from bot.model.ollama import OllamaChatModel
from tests.fakes.fake_ollama import FakeOllama


class Leaks(list[Any]):
    """The async generators dropped without being closed during a test (see ``leaks``)."""

    def ours(self) -> list[str]:
        """The dropped generators written in ``bot/`` (the library's own internals left out)."""
        root = str(Path(bot.__file__).parent)
        return [g.ag_code.co_qualname for g in self if g.ag_code.co_filename.startswith(root)]


@pytest.fixture
async def leaks(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Leaks]:
    """Streams dropped without ``aclose()`` stay open, as a leak would leave them in production.

    asyncio closes an async generator that is garbage-collected a few loop turns later, so a
    stream the code forgot to close would look closed to the fake's counter. The running loop's
    finalizer hook is replaced for the test (``sys.set_asyncgen_hooks`` alone would not do:
    every ``run_until_complete`` of pytest-asyncio installs the loop's own hooks again), so only
    an explicit close counts; the leaked generators are kept here and closed after the test.
    """
    leaked = Leaks()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "_asyncgen_finalizer_hook", leaked.append)
    yield leaked
    monkeypatch.undo()
    for agen in leaked:
        await agen.aclose()


@pytest.fixture
def no_leaks(leaks: Leaks) -> Iterator[None]:
    """Fails the test if a stream of ours was dropped without being closed."""
    yield
    assert leaks.ours() == []


@pytest.fixture
async def backend(fake_ollama: FakeOllama) -> AsyncIterator[OllamaChatModel]:
    """The real Ollama backend (``ollama.AsyncClient``) talking to the fake."""
    async with OllamaChatModel(fake_ollama.url, connect_timeout=2.0) as model:
        yield model
