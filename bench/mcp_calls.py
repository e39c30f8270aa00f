"""Benchmark of one tool call on each path a reply can take, side by side.

Each call goes through what a reply uses: :class:`bot.model.toolbox.ToolSession` (allowlist,
schema validation against the tool's input schema, time budget, result cut), then

a. the built-in ``calculate`` (in process),
b. ``files.add`` on the tests' stdio MCP server (a child process, JSON-RPC over pipes),
c. ``search.find`` on the tests' streamable HTTP MCP server (a child process on loopback).

500 sequential calls each after 20 warm-up calls; reports calls/s, p50 and p95 latency, and the
ratio of each path's p50 to the built-in's. Run from the repository root:
``.venv/bin/python bench/mcp_calls.py``.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.model.mcp import McpHub, McpServerSpec  # noqa: E402 - needs the repository on sys.path
from bot.model.toolbox import ToolBox  # noqa: E402
from bot.model.tools import builtin_tools  # noqa: E402
from bot.types import ToolCall  # noqa: E402
from tests.fakes.mcp_launch import FILES_SCRIPT, search_server  # noqa: E402

CALLS = 500
WARMUP = 20


async def measure(box: ToolBox, call: ToolCall) -> list[float]:
    session = box.session(lambda entry: True)
    for _ in range(WARMUP):
        result = await session.run(call)
        assert not result.startswith("Error"), result
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        await session.run(call)
        times.append(time.perf_counter() - started)
    return times


async def main() -> None:
    with search_server() as search:
        files = McpServerSpec(name="files", command=sys.executable, args=(str(FILES_SCRIPT),))
        web = McpServerSpec(name="search", url=search.url)
        async with McpHub([files, web]) as hub:
            await hub.wait_for(lambda h: all(h.status(n) == "up" for n in h.server_names))
            box = ToolBox(builtin_tools(), hub)
            paths = [
                ("a. built-in calculate", "calculate", {"expression": "2+3"}),
                ("b. MCP stdio files.add", "files__add", {"a": 2, "b": 3}),
                ("c. MCP HTTP search.find", "search__find", {"query": "x"}),
            ]
            rows = [(label, ToolCall(name=n, arguments=a)) for label, n, a in paths]
            results = [(name, await measure(box, call)) for name, call in rows]
    base = statistics.median(results[0][1])
    print(f"python {platform.python_version()} on {platform.machine()}, {CALLS} calls each")
    print(f"{'path':26} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p50 / a':>8}")
    for name, times in results:
        p50 = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[18]
        rate = len(times) / sum(times)
        print(f"{name:26} {rate:9.0f} {p50 * 1e3:8.2f} {p95 * 1e3:8.2f} {p50 / base:8.0f}")


if __name__ == "__main__":
    asyncio.run(main())
