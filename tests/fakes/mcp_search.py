"""A real MCP server over streamable HTTP, written with the official SDK, for the tests.

``python tests/fakes/mcp_search.py PORT`` serves ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("search", log_level="WARNING")


@server.tool()
def find(query: str, limit: int = 3) -> str:
    """Search the web (a canned answer)."""
    return f"{limit} results for {query}: ollabot.example"


if __name__ == "__main__":
    server.run("streamable-http", port=int(sys.argv[1]))
