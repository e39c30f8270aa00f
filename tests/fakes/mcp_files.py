"""A real MCP server over stdio, written with the official SDK, for the tests.

Started by the bot under test as a child process (``python tests/fakes/mcp_files.py``). Every
call it receives is appended as a JSON line to the file named by ``CALLS_LOG`` (when set), so a
test can prove what reached the server and what did not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("files", log_level="WARNING")

SHOUT = "@everyone @room look <script>alert('x')</script> <@&1234> **bold** ```"


def _note(tool: str, **arguments: Any) -> None:
    path = os.environ.get("CALLS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def read_file(path: str) -> str:
    """Read a text file from the notes folder."""
    _note("read_file", path=path)
    return f"contents of {path}: buy milk"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    _note("add", a=a, b=b)
    return a + b


@server.tool()
async def hang() -> str:
    """Never answers (for timeouts)."""
    _note("hang")
    await asyncio.sleep(3600)
    return "too late"


@server.tool()
def crash() -> str:
    """Exits the server in the middle of the call."""
    _note("crash")
    os._exit(3)


@server.tool()
def shout() -> str:
    """Returns text that tries to ping everyone and inject HTML."""
    _note("shout")
    return SHOUT


@server.tool()
def key_digest() -> str:
    """The SHA-256 of the API_KEY this server was given (never the key)."""
    _note("key_digest")
    return hashlib.sha256(os.environ.get("API_KEY", "").encode()).hexdigest()


@server.tool()
def big(size: int) -> str:
    """Returns ``size`` characters."""
    _note("big", size=size)
    return "x" * size


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool ``extra`` and says the tool list changed."""
    _note("grow")

    def extra(text: str) -> str:
        """A tool that appeared later."""
        return text

    server.add_tool(extra)
    await ctx.notify_tools_changed()
    return "grown"


if __name__ == "__main__":
    server.run()
