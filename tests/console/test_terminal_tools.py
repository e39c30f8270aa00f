"""Tools in the terminal chat: ``/tools`` commands and a tool call, with a real stdio MCP server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.cli.runner import finish, read_until, start_ollabot, write_config
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.mcp_launch import FILES_SCRIPT


async def test_tools_allow_list_call_and_calls_in_the_terminal(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("llama3.2", capabilities=["completion", "tools"])
    config = write_config(
        tmp_path,
        f'[[mcp.servers]]\nname = "files"\ncommand = {json.dumps(sys.executable)}\n'
        f"args = [{json.dumps(str(FILES_SCRIPT))}]\n",
    )
    proc = await start_ollabot(
        "--config", str(config), "chat", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(b"/tools allow files.add\n")
    await read_until(proc.stdout, "allowed")
    for _ in range(150):  # the server starts in the background: ask until it lists its tools
        proc.stdin.write(b"/tools list\n")
        await proc.stdin.drain()
        if "files.add" in await read_until(proc.stdout, "Tools here"):
            break
        await asyncio.sleep(0.2)
    fake_ollama.script(
        Reply(tool_calls=[{"name": "files__add", "arguments": {"a": 2, "b": 3}}]),
        Reply.text("Two and three make five."),
    )
    result = await finish(proc, "what is 2 + 3?\n/tools calls\n/quit\n")

    assert result.code == 0, result.output
    assert "files.add(a=2, b=3)" in result.stdout
    assert "Two and three make five." in result.stdout
    tool_results = [
        m["content"] for m in fake_ollama.requests[-1]["messages"] if m["role"] == "tool"
    ]
    assert tool_results == ["5"]
    assert "Tool calls of the last reply here" in result.stdout
    assert "Traceback" not in result.output
