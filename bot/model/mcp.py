"""Tools from MCP servers: the client side of the Model Context Protocol (the ``mcp`` SDK).

The only module that imports ``mcp``. An :class:`McpHub` starts one supervisor task per configured
server and returns at once, so a slow or broken server never holds up the bot's start:

- A stdio server is started as a child process (the SDK kills its process tree on close); a
  streamable HTTP server is reached at its URL.
- Its tools are listed when it connects, and again when it says its list changed (the
  ``notifications/tools/list_changed`` of older protocol versions, or a ``subscriptions/listen``
  stream on 2026-07-28 connections).
- When the connection ends (the process exited, the stream was lost) its tools are withdrawn and
  it is started again after a backoff that doubles from 1 s to 30 s; the backoff resets once it
  is back. Its tools are then offered again.
- A call waits at most the server's ``timeout``; a call that times out fails alone (the server
  stays up). A call on a server that is down fails at once with :class:`bot.errors.ToolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

import anyio
import mcp.types as mcp_types
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp_types import CONNECTION_CLOSED
from pydantic import ValidationError

from bot.errors import ToolError
from bot.model.mcp_streams import WatchedTransport

__all__ = ["McpHub", "McpResult", "McpServerSpec", "McpToolInfo"]

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
CONNECT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """One server, as the hub needs it (env values already read from the bot's environment).

    Attributes:
        name: The server's name; its tools are called ``name.tool``.
        command: The program to start (stdio transport), or ``None`` with ``url``.
        args: Its arguments.
        env: Variables the server process sees (values are secrets: never logged).
        url: The streamable HTTP endpoint, or ``None`` with ``command``.
        timeout: Seconds one call may take.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    url: str | None = None
    timeout: float = 30.0

    @property
    def where(self) -> str:
        """Where it runs, for logs (never the environment)."""
        return self.url or f"{self.command} {' '.join(self.args)}".strip()


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    """A tool a server offers: its name there, what it does, and its JSON input schema."""

    server: str
    name: str
    description: str
    input_schema: Mapping[str, Any]

    @property
    def qualified(self) -> str:
        """``server.tool``: how users and moderators name it."""
        return f"{self.server}.{self.name}"


@dataclass(frozen=True, slots=True)
class McpResult:
    """A call's result as text, and whether the server flagged it as an error."""

    text: str
    is_error: bool


class _Server:
    """The state of one supervised server."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.client: Client | None = None
        self.tools: tuple[McpToolInfo, ...] = ()
        self.status = "starting"
        self.restarts = 0
        self.lost = asyncio.Event()
        self.relist = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class McpHub:
    """Starts, supervises and calls the configured MCP servers. See the module docstring.

    Args:
        specs: The servers.
        backoff_initial: Seconds before the first restart of a server that went away.
        backoff_max: The longest wait between restarts.
        errlog: Where stdio servers' stderr goes (a real file); the bot's stderr by default.
        connect_timeout: Seconds a server may take to start, answer the handshake and list its
            tools.
    """

    def __init__(
        self,
        specs: Sequence[McpServerSpec],
        *,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        errlog: TextIO | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("MCP server names must be unique")
        self._servers = {s.name: _Server(s) for s in specs}
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._errlog = errlog
        self._connect_timeout = connect_timeout
        self._changed = asyncio.Condition()
        self._version = 0
        self._closing = False
        self._listeners: list[Callable[[], None]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start supervising every server; returns at once (servers connect in the background)."""
        for server in self._servers.values():
            if server.task is None:
                server.task = asyncio.create_task(
                    self._supervise(server), name=f"mcp:{server.spec.name}"
                )

    async def close(self) -> None:
        """Stop every server (stdio processes are ended) and wait for the supervisors."""
        self._closing = True
        tasks = [s.task for s in self._servers.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> McpHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what is available ----------------------------------------------------------------------

    @property
    def server_names(self) -> list[str]:
        """Every configured server, up or not."""
        return list(self._servers)

    def tools(self) -> list[McpToolInfo]:
        """The tools of every server that is up now."""
        return [t for s in self._servers.values() if s.client is not None for t in s.tools]

    def status(self, server: str) -> str:
        """``up``, ``starting``, or ``down: <why>``."""
        return self._servers[server].status

    def restarts(self, server: str) -> int:
        """How many times the server was started again after it went away."""
        return self._servers[server].restarts

    @property
    def version(self) -> int:
        """Bumped whenever a server comes, goes or changes its tools."""
        return self._version

    async def wait_for(self, predicate: Callable[[McpHub], bool], within: float = 30.0) -> None:
        """Wait until ``predicate(self)`` holds after a change (or now).

        Raises:
            TimeoutError: It did not hold within ``within`` seconds.
        """
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _bump(self) -> None:
        self._version += 1
        async with self._changed:
            self._changed.notify_all()

    # --- calls ----------------------------------------------------------------------------------

    async def call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> McpResult:
        """Call ``tool`` on ``server`` with (already validated) ``arguments``.

        Raises:
            ToolError: The server is unknown or down, the call timed out, or the connection
                ended during the call (the server is then restarted).
        """
        state = self._servers.get(server)
        if state is None:
            raise ToolError(f"There is no MCP server '{server}'.")
        client = state.client
        if client is None:
            raise ToolError(
                f"The tool server '{server}' is not running ({state.status}).",
                detail=f"mcp server {server} is {state.status}",
            )
        timeout = state.spec.timeout
        try:
            # The SDK's read timeout fails the request; the outer bound also covers a transport
            # that stops reading altogether.
            async with asyncio.timeout(timeout + 1.0):
                result = await client.call_tool(tool, dict(arguments), read_timeout_seconds=timeout)
        except TimeoutError as err:
            raise _timed_out(server, tool, timeout) from err
        except MCPError as err:
            if "timed out" in err.error.message:
                raise _timed_out(server, tool, timeout) from err
            if err.error.code == CONNECTION_CLOSED:
                state.lost.set()
                raise ToolError(
                    f"The tool server '{server}' stopped during the call; it is being restarted.",
                    detail=f"mcp {server}.{tool}: connection closed during the call",
                ) from err
            raise ToolError(
                f"{server}.{tool} failed: {err.error.message}",
                detail=f"mcp {server}.{tool}: error {err.error.code}: {err.error.message}",
            ) from err
        except (ValidationError, anyio.BrokenResourceError, anyio.ClosedResourceError) as err:
            state.lost.set()
            raise ToolError(
                f"The tool server '{server}' sent a reply the bot could not read.",
                detail=f"mcp {server}.{tool}: {type(err).__name__}",
            ) from err
        except Exception as err:
            # The SDK's transports can fail in ways it does not translate (an HTTP client
            # error, an exception group from its task groups). Not hidden: the call fails with
            # the reason, the model and the user see it, the log has the trace.
            log.warning("MCP call failed", extra={"mcp_server": server}, exc_info=True)
            raise ToolError(
                f"{server}.{tool} failed: {_describe(err)}",
                detail=f"mcp {server}.{tool}: {type(err).__name__}",
            ) from err
        return McpResult(_result_text(result), bool(result.is_error))

    # --- supervision ----------------------------------------------------------------------------

    async def _supervise(self, server: _Server) -> None:
        spec = server.spec
        delay = self._backoff_initial
        extra = {"mcp_server": spec.name}
        while not self._closing:
            server.lost = asyncio.Event()
            server.relist = asyncio.Event()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    # Starting takes what it takes (a cold Python server imports a lot), within
                    # reason; the per-call timeout is for calls.
                    async with asyncio.timeout(self._connect_timeout):
                        client = await stack.enter_async_context(self._client(server))
                        await self._list(server, client)
                    server.client = client
                    server.status = "up"
                    delay = self._backoff_initial
                    log.info(
                        "MCP server up",
                        extra={**extra, "where": spec.where, "tools": len(server.tools)},
                    )
                    await self._bump()
                    await self._watch(server, client)
                why = "the connection ended"
            except asyncio.CancelledError:
                raise
            except (MCPError, OSError, TimeoutError, SubscriptionLost, ValueError) as err:
                why = _describe(err)
            except Exception as err:
                # The SDK's task groups wrap failures in exception groups, and a third-party
                # client can fail in ways not listed above: the server is restarted, the log and
                # `tools list` say why.
                log.warning(
                    "MCP server failed",
                    extra=extra,
                    exc_info=not isinstance(err, ExceptionGroup),
                )
                why = _describe(err)
            finally:
                server.client = None
                server.tools = ()
            if self._closing:
                break
            server.status = f"down: {why}"
            server.restarts += 1
            log.warning(
                "MCP server down; restarting",
                extra={**extra, "reason": why, "retry_in": delay},
            )
            await self._bump()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    def _client(self, server: _Server) -> Client:
        spec = server.spec

        async def on_message(message: Any) -> None:
            if isinstance(message, mcp_types.ServerNotification):
                if isinstance(message, mcp_types.ToolListChangedNotification):
                    server.relist.set()
            elif isinstance(message, Exception):
                log.info(
                    "MCP server sent something unreadable",
                    extra={"mcp_server": spec.name, "error": type(message).__name__},
                )

        transport: Any
        if spec.url is not None:
            transport = streamable_http_client(spec.url)
        else:
            assert spec.command is not None
            params = StdioServerParameters(
                command=spec.command, args=list(spec.args), env=dict(spec.env) or None
            )
            transport = stdio_client(params, errlog=self._errlog or sys.stderr)
        return Client(
            WatchedTransport(transport, server.lost),
            message_handler=on_message,
            read_timeout_seconds=None,
            cache=None,
        )

    async def _list(self, server: _Server, client: Client) -> None:
        tools: list[McpToolInfo] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the supervisor
            async with asyncio.timeout(max(server.spec.timeout, self._connect_timeout)):
                page = await client.list_tools(cursor=cursor)
            tools += [
                McpToolInfo(
                    server=server.spec.name,
                    name=t.name,
                    description=(t.description or t.title or "").strip(),
                    input_schema=t.input_schema,
                )
                for t in page.tools
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
        server.tools = tuple(tools)

    async def _watch(self, server: _Server, client: Client) -> None:
        """Until the connection ends: list the tools again whenever the server says they changed."""
        async with contextlib.AsyncExitStack() as stack:
            listener: asyncio.Task[None] | None = None
            try:
                sub = await stack.enter_async_context(client.listen(tools_list_changed=True))
            except (ListenNotSupportedError, MCPError) as err:
                # An older protocol (or a server without subscriptions): the notification, if
                # any, comes through the message handler.
                log.debug(
                    "no tools subscription", extra={"mcp_server": server.spec.name, "why": str(err)}
                )
            else:

                async def follow() -> None:
                    with contextlib.suppress(SubscriptionLost):
                        async for _ in sub:
                            server.relist.set()
                    server.lost.set()

                listener = asyncio.create_task(follow())
            try:
                while True:
                    lost = asyncio.ensure_future(server.lost.wait())
                    relist = asyncio.ensure_future(server.relist.wait())
                    await asyncio.wait({lost, relist}, return_when=asyncio.FIRST_COMPLETED)
                    lost.cancel()
                    relist.cancel()
                    if server.lost.is_set():
                        return
                    server.relist.clear()
                    await self._list(server, client)
                    log.info(
                        "MCP server tools changed",
                        extra={"mcp_server": server.spec.name, "tools": len(server.tools)},
                    )
                    await self._bump()
            finally:
                if listener is not None and not listener.done():
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, SubscriptionLost):
                        await listener


def _timed_out(server: str, tool: str, timeout: float) -> ToolError:
    return ToolError(
        f"{server}.{tool} took longer than {timeout:g} s and was stopped.",
        detail=f"mcp {server}.{tool}: timed out after {timeout:g} s",
    )


def _result_text(result: mcp_types.CallToolResult) -> str:
    """The text of a result: text blocks as they are, other blocks named."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource) and isinstance(
            block.resource, mcp_types.TextResourceContents
        ):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{block.type} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _describe(err: BaseException) -> str:
    if isinstance(err, MCPError):
        return err.error.message
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in err.exceptions)
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
