"""``/model pull`` shows a live progress bar, edited in place."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.discord import DiscordBot
from tests.discord.conftest import World
from tests.fakes.fake_ollama import FakeOllama


class SlowPullOllama(FakeOllama):
    """Pulls take a while, as real downloads do, so progress has time to be shown."""

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body.get("model") or body.get("name"))
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        total = 4_000_000_000
        for done in range(0, total + 1, total // 8):
            line = {"status": "pulling abc123", "digest": "sha256:abc", "total": total}
            await resp.write((json.dumps({**line, "completed": done}) + "\n").encode())
            await asyncio.sleep(0.15)
        self.add_model(name)
        await resp.write(b'{"status": "success"}\n')
        await resp.write_eof()
        return resp


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    async with SlowPullOllama() as fake:
        yield fake


async def test_pull_shows_a_progress_bar_edited_in_place(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    inter = await fake.send_slash(
        world.mod, world.general, "model", subcommand="pull", options={"name": "phi4"}
    )
    msg = await fake.wait_for(
        lambda: (
            inter.original_id
            and "success" in fake.messages[inter.original_id].content.lower()
            and fake.messages[inter.original_id]
        ),
        within=10,
    )
    bars = [e.content for e in msg.history if "█" in e.content]
    assert len(bars) >= 2, msg.history
    assert len(fake.bot_messages_in(world.general.id)) == 1
    assert "phi4:latest" in fake_ollama.models
