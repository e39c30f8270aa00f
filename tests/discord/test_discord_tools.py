"""Tools from an MCP server on Discord: the slash commands, the call line, pings, the file."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord import DiscordBot
from bot.config import BotConfig, LimitsConfig, McpConfig, McpServerConfig
from bot.conversation.engine import Engine
from bot.model.ollama import OllamaChatModel
from bot.store.sqlite import SqliteStore
from tests.discord.conftest import World
from tests.discord.helpers import finished_reply
from tests.discord.test_discord_commands import response_of
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.mcp_files import SHOUT
from tests.fakes.mcp_launch import FILES_SCRIPT


@pytest.fixture
async def engine(fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Engine]:
    fake_ollama.add_model("llama3.2", capabilities=["completion", "tools"])
    files = McpServerConfig(name="files", command=sys.executable, args=(str(FILES_SCRIPT),))
    config = BotConfig(
        limits=LimitsConfig(user_messages_per_minute=1000), mcp=McpConfig(servers=(files,))
    )
    engine = Engine(OllamaChatModel(fake_ollama.url), SqliteStore(tmp_path / "bot.db"), config)
    async with engine:
        assert engine.mcp is not None
        await engine.mcp.wait_for(lambda h: h.status("files") == "up")
        yield engine


async def test_tools_allow_then_a_call_line_and_a_result_that_pings_nobody(
    world: World, bot: DiscordBot, fake_ollama: FakeOllama
) -> None:
    fake = world.fake
    refused = await fake.send_slash(
        world.alice, world.general, "tools", subcommand="allow", options={"tool": "files.*"}
    )
    assert "moderator" in (await response_of(world, refused)).lower()
    assert refused.ephemeral
    allowed = await fake.send_slash(
        world.mod, world.general, "tools", subcommand="allow", options={"tool": "files.shout"}
    )
    assert "`files.shout` allowed" in await response_of(world, allowed)
    listed = await fake.send_slash(world.alice, world.general, "tools", subcommand="list")
    text = await response_of(world, listed)
    assert "`files.shout`" in text
    assert "— allowed" in text
    assert "`files.read_file`: Read a text file from the notes folder. — not allowed" in text

    fake_ollama.script(
        Reply(tool_calls=[{"name": "files__shout", "arguments": {}}]),
        Reply.text(f"The tool said: {SHOUT}"),
    )
    before = len([m for m in fake.bot_messages_in(world.general.id) if not m.loading])
    await fake.post_message(
        world.alice, world.general, f"<@{fake.bot_user.id}> shout", mentions=[fake.bot_user]
    )
    [reply] = await finished_reply(fake, world.general.id, after=before)
    assert "🔧 `files.shout()` → ok, " in reply.content
    assert "@everyone" in reply.content  # shown as text, but it pings no one:
    assert reply.history[0].allowed_mentions == {"parse": [], "replied_user": False}
    assert all(e.allowed_mentions == {"parse": []} for e in reply.history[1:])

    calls = await fake.send_slash(world.alice, world.general, "tools", subcommand="calls")
    await response_of(world, calls)
    assert calls.ephemeral, calls.callback_data
    message = fake.messages[calls.original_id or 0]
    (attachment,) = message.attachments
    assert attachment["filename"] == "tool-calls.txt"
    _, _, data = fake.attachment_data[int(attachment["id"])]
    assert SHOUT in data.decode()
    assert message.allowed_mentions is not None
    assert message.allowed_mentions["parse"] == []


async def test_tool_names_are_autocompleted_with_server_patterns(
    world: World, bot: DiscordBot
) -> None:
    choices = await world.fake.autocomplete(
        world.mod, world.general, "tools", subcommand="allow", option="tool", value="files.re"
    )
    assert [c["value"] for c in choices] == ["files.read_file"]
    choices = await world.fake.autocomplete(
        world.mod, world.general, "tools", subcommand="deny", option="tool", value="*"
    )
    assert [c["value"] for c in choices] == ["files.*"]
