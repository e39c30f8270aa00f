"""A transport wrapper that notices when an MCP server's connection ends.

The SDK's client session does not say when its read stream ends while no request is waiting
(an idle stdio server that exited, on protocol versions without a ``subscriptions/listen``
stream). :class:`WatchedTransport` wraps any SDK transport (an async context manager yielding a
read and a write stream) and sets an event when the read stream ends, so the supervisor in
:mod:`bot.model.mcp` restarts the server at once. It needs nothing from ``mcp`` itself.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import anyio

__all__ = ["WatchedRead", "WatchedTransport"]


class WatchedTransport:
    """A transport whose read stream sets ``lost`` when it ends (the server went away)."""

    def __init__(self, inner: Any, lost: asyncio.Event) -> None:
        self._inner = inner
        self._lost = lost

    async def __aenter__(self) -> tuple[Any, Any]:
        read, write = await self._inner.__aenter__()
        return WatchedRead(read, self._lost), write

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._lost.set()
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result


class WatchedRead:
    """Delegates to the SDK's read stream; notes its end."""

    def __init__(self, inner: Any, lost: asyncio.Event) -> None:
        self._inner = inner
        self._lost = lost

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._lost.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> WatchedRead:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._lost.set()
            raise

    async def __aenter__(self) -> WatchedRead:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result
