"""Tools from an MCP server in a Matrix room: commands by power level, the call line, a result
that tries to ping and inject, and the full calls folded in ``<details>``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.matrix import MatrixBot, MatrixConfig
from bot.config import BotConfig, LimitsConfig, McpConfig, McpServerConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.mcp_files import SHOUT
from tests.fakes.mcp_launch import FILES_SCRIPT
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import Human, eventually, unique

pytestmark = pytest.mark.synapse


@pytest.fixture
async def tool_bot(
    synapse: SynapseServer, fake_ollama: FakeOllama, tmp_path: Path
) -> AsyncIterator[MatrixBot]:
    fake_ollama.add_model("llama3.2", capabilities=["completion", "tools"])
    user_id, token = synapse.register(unique("toolbot"))
    synapse.lift_ratelimit(user_id)
    files = McpServerConfig(name="files", command=sys.executable, args=(str(FILES_SCRIPT),))
    config = BotConfig(
        limits=LimitsConfig(user_messages_per_minute=10_000), mcp=McpConfig(servers=(files,))
    )
    engine = Engine(OllamaChatModel(fake_ollama.url), SqliteStore(tmp_path / "bot.db"), config)
    await engine.start()
    matrix = MatrixConfig(
        homeserver=synapse.url,
        user_id=user_id,
        sync_timeout_ms=5_000,
        crypto_store=tmp_path / "crypto",
    )
    bot = MatrixBot(engine, matrix, access_token=token)
    try:
        await bot.start()
        assert engine.mcp is not None
        await engine.mcp.wait_for(lambda h: h.status("files") == "up")
        yield bot
    finally:
        await bot.close()
        await engine.close()


async def answer(human: Human, room_id: str, bot_id: str, event_id: str) -> dict[str, Any]:
    replies = await eventually(lambda: human.replies_to(room_id, bot_id, event_id))
    return replies[0]


async def test_tool_line_result_pings_nobody_and_calls_fold_into_details(
    human: Human, tool_bot: MatrixBot, fake_ollama: FakeOllama
) -> None:
    bot_id = tool_bot.config.user_id
    room_id = await human.create_room(invite=(bot_id,))
    await human.wait_joined(room_id, bot_id)

    allowed = await human.send(room_id, "!ollabot tools allow files.shout")
    reply = await answer(human, room_id, bot_id, allowed)
    assert "`files.shout` allowed" in reply["content"]["body"]

    fake_ollama.script(
        Reply(tool_calls=[{"name": "files__shout", "arguments": {}}]),
        Reply.text(f"It said: {SHOUT}"),
    )
    asked = await human.send(room_id, "shout please", mention=bot_id)
    first = await answer(human, room_id, bot_id, asked)

    async def finished() -> str | None:
        text = await human.visible_text(room_id, first["event_id"])
        return text if "It said:" in text and "🔧 `files.shout()` → ok, " in text else None

    await eventually(finished)
    await tool_bot.idle()
    for event in await human.events(room_id):
        if event["sender"] != bot_id or event["type"] != "m.room.message":
            continue
        content = event["content"]
        for shown in (content, content.get("m.new_content") or {}):
            if not shown:
                continue
            assert shown["m.mentions"] == {}
            assert "<script" not in shown.get("formatted_body", "")

    calls = await human.send(room_id, "!ollabot tools calls")
    folded = (await answer(human, room_id, bot_id, calls))["content"]
    html = folded["formatted_body"]
    assert "<details><summary>files.shout → ok, " in html
    assert "&lt;script&gt;" in html
    assert "<script" not in html
    assert folded["m.mentions"] == {}
