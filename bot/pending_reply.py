"""A reply whose model must be learnt first: what ``ChatManager.send_message`` returns before
the manager has asked Ollama about its model.

The seed's examples never call ``initialize_model()``: the first message does it. A
:class:`PendingReply` looks like a :class:`bot.model.stream.ResponseStream` (iterate it, await
it, ``async with`` it, ``aclose()`` it); on first use it runs its ``start`` (which learns the
model and builds the real stream) and hands everything on to that stream. Once the model is
known, ``send_message`` returns the real stream directly, so the per-token path of later replies
is untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from collections.abc import Generator as SyncGenerator
from types import TracebackType
from typing import Any

from bot.model.stream import ResponseStream
from bot.types import Outcome, Response, StreamChunk

__all__ = ["PendingReply"]


class PendingReply:
    """A reply stream started on first use.

    Args:
        start: Learns what it must (the model) and returns the real stream. Its errors
            (``ModelNotFoundError``, ``OllamaUnavailableError``, ``ChatError``) surface where the
            reply is first iterated or awaited.
        model: The model's name, for the response of a reply closed before it started.
    """

    def __init__(self, start: Callable[[], Awaitable[ResponseStream]], *, model: str) -> None:
        self._start = start
        self._model = model
        self._stream: ResponseStream | None = None
        self._closed = False

    @property
    def response(self) -> Response | None:
        """The response once the stream has ended (``None`` before)."""
        if self._stream is None:
            return self._stopped() if self._closed else None
        return self._stream.response

    def _stopped(self) -> Response:
        return Response(model_name=self._model, outcome=Outcome.STOPPED)

    async def _inner(self) -> ResponseStream:
        if self._stream is None:
            self._stream = await self._start()
        return self._stream

    def __aiter__(self) -> PendingReply:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._closed and self._stream is None:
            raise StopAsyncIteration
        stream = await self._inner()
        return await stream.__anext__()

    def __await__(self) -> SyncGenerator[Any, None, Response]:
        return self._collect().__await__()

    async def _collect(self) -> Response:
        if self._closed and self._stream is None:
            return self._stopped()
        return await (await self._inner())

    async def aclose(self) -> None:
        """Stop the reply; one that had not started never reaches Ollama."""
        self._closed = True
        if self._stream is not None:
            await self._stream.aclose()

    async def __aenter__(self) -> PendingReply:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
