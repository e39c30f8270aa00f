"""The MCP client against real MCP servers written with the SDK: one over stdio, one over HTTP."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.errors import ToolError
from bot.model.mcp import McpHub, McpServerSpec
from tests.fakes.mcp_launch import FILES_SCRIPT, SearchServer, search_server

KEY = "canary-files-key-0d5e"


def files_spec(calls: Path, *, timeout: float = 10.0) -> McpServerSpec:
    return McpServerSpec(
        name="files",
        command=sys.executable,
        args=(str(FILES_SCRIPT),),
        env={"API_KEY": KEY, "CALLS_LOG": str(calls)},
        timeout=timeout,
    )


def received(calls: Path) -> list[str]:
    if not calls.exists():
        return []
    return [json.loads(line)["tool"] for line in calls.read_text().splitlines()]


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[McpHub]:
    hub = McpHub([files_spec(tmp_path / "calls.jsonl", timeout=3.0)], backoff_initial=0.05)
    async with hub:
        await hub.wait_for(lambda h: h.status("files") == "up")
        yield hub


@pytest.fixture(scope="module")
def search() -> Iterator[SearchServer]:
    with search_server() as server:
        yield server


async def test_stdio_server_tools_are_listed_and_called(files: McpHub) -> None:
    names = {t.qualified for t in files.tools()}
    assert {"files.read_file", "files.add", "files.hang", "files.crash"} <= names
    read = next(t for t in files.tools() if t.name == "read_file")
    assert read.description == "Read a text file from the notes folder."
    assert read.input_schema["required"] == ["path"]
    result = await files.call("files", "read_file", {"path": "notes.md"})
    assert result.text == "contents of notes.md: buy milk"
    assert not result.is_error


async def test_env_values_reach_the_server_process(files: McpHub) -> None:
    result = await files.call("files", "key_digest", {})
    assert result.text == hashlib.sha256(KEY.encode()).hexdigest()


async def test_a_hanging_call_times_out_alone_and_the_server_stays_up(files: McpHub) -> None:
    with pytest.raises(ToolError, match="took longer than 3 s"):
        await files.call("files", "hang", {})
    assert files.status("files") == "up"
    assert (await files.call("files", "add", {"a": 2, "b": 3})).text == "5"
    assert files.restarts("files") == 0


async def test_a_server_that_exits_mid_call_is_restarted_and_its_tools_come_back(
    files: McpHub, tmp_path: Path
) -> None:
    with pytest.raises(ToolError, match="stopped during the call"):
        await files.call("files", "crash", {})
    await files.wait_for(lambda h: h.restarts("files") >= 1 and h.status("files") == "up")
    assert "files.read_file" in {t.qualified for t in files.tools()}
    assert (await files.call("files", "add", {"a": 1, "b": 1})).text == "2"
    assert received(tmp_path / "calls.jsonl") == ["crash", "add"]


async def test_a_changed_tool_list_is_listed_again(files: McpHub) -> None:
    assert "files.extra" not in {t.qualified for t in files.tools()}
    await files.call("files", "grow", {})
    await files.wait_for(lambda h: "files.extra" in {t.qualified for t in h.tools()})
    assert (await files.call("files", "extra", {"text": "hi"})).text == "hi"


async def test_a_server_that_cannot_start_does_not_block_the_others(
    search: SearchServer,
) -> None:
    broken = McpServerSpec(
        name="broken", command=sys.executable, args=("-c", "raise SystemExit(2)")
    )
    web = McpServerSpec(name="search", url=search.url)
    async with McpHub([broken, web], backoff_initial=0.05, backoff_max=0.1) as hub:
        await hub.wait_for(lambda h: h.status("search") == "up" and h.restarts("broken") >= 2)
        assert hub.status("broken").startswith("down: ")
        assert [t.qualified for t in hub.tools()] == ["search.find"]
        with pytest.raises(ToolError, match="'broken' is not running"):
            await hub.call("broken", "anything", {})


async def test_http_server_tools_are_listed_and_called(search: SearchServer) -> None:
    async with McpHub([McpServerSpec(name="search", url=search.url)]) as hub:
        await hub.wait_for(lambda h: h.status("search") == "up")
        (find,) = hub.tools()
        assert find.qualified == "search.find"
        result = await hub.call("search", "find", {"query": "ollama", "limit": 2})
        assert result.text == "2 results for ollama: ollabot.example"


async def test_http_server_that_goes_away_is_reconnected(search: SearchServer) -> None:
    hub = McpHub([McpServerSpec(name="search", url=search.url)], backoff_initial=0.05)
    async with hub:
        await hub.wait_for(lambda h: h.status("search") == "up")
        search.stop()
        with pytest.raises(ToolError):
            await hub.call("search", "find", {"query": "x"})
        await hub.wait_for(lambda h: h.status("search").startswith("down"))
        assert hub.tools() == []
        search.start_again()
        await hub.wait_for(lambda h: h.status("search") == "up")
        assert (await hub.call("search", "find", {"query": "y"})).text.endswith("ollabot.example")


async def test_a_server_that_never_answers_blocks_neither_start_nor_the_others(
    search: SearchServer,
) -> None:
    silent = McpServerSpec(
        name="silent", command=sys.executable, args=("-c", "import sys; sys.stdin.read()")
    )
    web = McpServerSpec(name="search", url=search.url)
    hub = McpHub([silent, web], connect_timeout=60)
    async with hub:  # start() returns at once, with "silent" still starting
        assert hub.status("silent") == "starting"
        await hub.wait_for(lambda h: h.status("search") == "up")
        assert hub.status("silent") == "starting"
        assert (await hub.call("search", "find", {"query": "q"})).text.endswith("example")
