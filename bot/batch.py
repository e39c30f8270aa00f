"""Running many requests, or a handler over many chunks, without one failure losing the rest.

Each input gets a :class:`BatchItem` holding either its result or its error, in input order.
Errors are returned, not raised, so a caller can report every item; cancellation still propagates.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bot.types import Response

__all__ = ["BatchItem", "BatchTarget", "process_message_batch", "process_stream"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchItem(Generic[R]):
    """The outcome of one input: ``result`` if it succeeded, else ``error``.

    Attributes:
        result: What the work returned (``None`` when it failed).
        error: The exception it raised (``None`` when it succeeded).
    """

    result: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the work succeeded."""
        return self.error is None

    def unwrap(self) -> R:
        """The result, or raise the stored error.

        Raises:
            Exception: The error this item failed with.
        """
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # a success may legitimately be None


class BatchTarget(Protocol):
    """Anything that answers one message with a whole :class:`Response` (e.g. ``ChatManager``)."""

    async def get_response_with_meta(self, text: str) -> Response: ...


async def _settle(work: Callable[[], Awaitable[R]]) -> BatchItem[R]:
    try:
        # Called inside the try: a handler may fail before returning its awaitable.
        return BatchItem(result=await work())
    except Exception as err:
        # Not hidden: the error is handed back in this item for the caller to report.
        return BatchItem(error=err)


async def process_stream(
    stream: AsyncIterable[T], handler: Callable[[T], Awaitable[R]]
) -> list[BatchItem[R]]:
    """Run ``handler`` on each chunk of ``stream`` in turn, collecting the outcomes.

    Args:
        stream: Any async iterable (a ``ResponseStream``, a generator).
        handler: An async function applied to each chunk.

    Returns:
        One item per chunk, in stream order; a handler failure is that item's ``error``.

    Raises:
        Exception: Whatever the stream itself raises (the source failing is not a chunk's
            failure).
    """
    items: list[BatchItem[R]] = []
    async for chunk in stream:
        items.append(await _settle(functools.partial(handler, chunk)))
    return items


async def process_message_batch(
    manager_or_callable: BatchTarget | Callable[[str], Awaitable[Response]],
    messages: Sequence[str],
    batch_size: int = 4,
) -> list[BatchItem[Response]]:
    """Answer many messages with at most ``batch_size`` in flight at once.

    Args:
        manager_or_callable: A ``ChatManager`` (its ``get_response_with_meta`` is called) or an
            async function from message text to ``Response``.
        messages: The messages, each answered independently.
        batch_size: The most requests running at the same time (at least 1).

    Returns:
        One :class:`BatchItem` per message, in input order; a failed message carries its error
        (e.g. :class:`bot.errors.InputRejected`) and does not affect the others.

    Raises:
        ValueError: ``batch_size`` is below 1.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ask: Callable[[str], Awaitable[Response]]
    if callable(manager_or_callable) and not hasattr(manager_or_callable, "get_response_with_meta"):
        ask = manager_or_callable
    else:
        ask = manager_or_callable.get_response_with_meta
    gate = asyncio.Semaphore(batch_size)

    async def one(text: str) -> BatchItem[Response]:
        async with gate:
            return await _settle(lambda: ask(text))

    return list(await asyncio.gather(*(one(text) for text in messages)))
