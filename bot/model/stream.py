"""One reply in progress: :class:`ResponseStream`, made by ``Generator.stream``.

The guarantees it keeps (retries, timeouts, stopping, tool rounds, thinking, the cache) are
listed in :mod:`bot.model.generation`; its waits for deltas are timed by
:class:`bot.model.watchdog.Watchdog`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from collections.abc import Generator as SyncGenerator
from types import TracebackType
from typing import Any, TypeVar

from bot.errors import GenerationTimeout, OllabotError, OllamaError
from bot.model.port import ChatDelta, ChatModel, ChatRequest, ResponseCacheLike, ToolRunnerLike
from bot.model.retry import RetryPolicy
from bot.model.watchdog import BETWEEN, FIRST, Timeouts, Watchdog
from bot.types import Message, Outcome, Response, Role, StreamChunk, ToolCall

__all__ = ["ResponseStream"]

log = logging.getLogger("bot.model.generation")

T = TypeVar("T")


class _Stopped(Exception):
    """Internal: the stream was asked to stop while waiting (never leaves this module)."""


class ResponseStream:
    """One reply in progress. Async-iterable (chunks) and awaitable (the whole response).

    ``await`` after iterating returns the response of what was iterated; ``await`` alone consumes
    the stream itself. Use ``async with`` or call :meth:`aclose` to stop early.
    """

    def __init__(
        self,
        model: ChatModel,
        request: ChatRequest,
        tool_runner: ToolRunnerLike | None,
        max_tool_rounds: int,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        cache: ResponseCacheLike | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[Response], None] | None = None,
    ) -> None:
        self._model = model
        self._timeouts = timeouts
        self._retry = retry
        self._cache = cache
        self._on_end = on_end
        self._request = request
        self._tool_runner = tool_runner
        self._max_tool_rounds = max_tool_rounds
        self._clock = clock
        self._started = 0.0
        self._deadline = 0.0
        self._first_at: float | None = None
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._eval_count = 0
        # Chunks of the current round not yet covered by Ollama's final counters: when the
        # round never gets its final line (stopped, connection lost) they are the count.
        self._uncounted = 0
        self._prompt_eval_count = 0
        self._done_reason: str | None = None
        self._shown = False
        self._stop_requested = False
        # Set by aclose() or by the watchdog once the total deadline passed: checked before each
        # wait for a delta (one attribute read per token instead of a clock call).
        self._halt = False
        self._timers: list[asyncio.Timeout] = []
        # The task running the generator, ``None`` while a chunk is out with the consumer.
        self._inside: asyncio.Task[Any] | None = None
        # Deltas received so far: the watchdog's only per-token input.
        self._ticks = 0
        self._watchdog = Watchdog(self)
        self._response: Response | None = None
        self._error: OllabotError | None = None
        self._finished = asyncio.Event()
        self._idle_waiter: asyncio.Future[None] | None = None
        self._chunks = self._produce()

    # -- public surface ----------------------------------------------------------------------

    @property
    def response(self) -> Response | None:
        """The response once the stream has ended (``None`` before)."""
        return self._response

    def __aiter__(self) -> ResponseStream:
        return self

    def __anext__(self) -> Awaitable[StreamChunk]:
        # A plain method returning the generator's own awaitable: no extra coroutine frame on
        # the per-token path. The generator tracks ``_inside`` itself around each ``yield``.
        if self._inside is not None and not self._finished.is_set():
            return self._wait_end()  # another task is inside the generator (closing it)
        return self._chunks.__anext__()

    async def _wait_end(self) -> StreamChunk:
        await self._finished.wait()
        raise StopAsyncIteration

    def _idle(self) -> None:
        """No task is inside the generator any more: let a waiting :meth:`aclose` go on."""
        waiter, self._idle_waiter = self._idle_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __await__(self) -> SyncGenerator[Any, None, Response]:
        return self._collect().__await__()

    async def _collect(self) -> Response:
        async for _ in self:
            pass
        if self._error is not None:
            raise self._error
        assert self._response is not None
        return self._response

    async def aclose(self) -> None:
        """Stop the reply: close the HTTP stream; the response becomes ``STOPPED``.

        Safe from any task, and a no-op once the stream has ended.
        """
        if self._finished.is_set():
            return
        self._stop_requested = self._halt = True
        while (inside := self._inside) is not None:
            # The consumer is waiting inside the generator: end its wait now (as if it timed
            # out), so the generator winds down as "stopped".
            if self._watchdog.armed:
                self._watchdog.fire(inside)
            elif self._timers and not self._timers[-1].expired():
                self._timers[-1].reschedule(asyncio.get_running_loop().time())
            self._idle_waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self._finished.is_set():
            return
        # Another task's __anext__ waits for the end while this one closes the generator (whose
        # ``finally`` clears ``_inside``).
        self._inside = asyncio.current_task()
        await self._chunks.aclose()
        self._finish(Outcome.STOPPED)  # a stream never iterated (else the generator did it)
        self._finished.set()

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the producer ------------------------------------------------------------------------

    async def _produce(self) -> AsyncGenerator[StreamChunk, None]:
        # One generator for the whole reply (rounds included), with the wait for the next delta
        # inlined: every layer of async generator or coroutine costs on each token, and on each
        # suspension the event loop passes through all of them. Per token this loop only does
        # what it must: note the delta (``_ticks``), keep its text, hand out one chunk.
        current_task = asyncio.current_task
        self._inside = current_task()
        self._started = self._clock()
        self._deadline = self._started + self._timeouts.total
        watchdog = self._watchdog
        watchdog.start(self._timeouts.total)
        try:
            cache = self._cache
            cached = cache.get(self._request) if cache is not None else None
            if cached is not None:
                self._finish_cached(cached)
                self._inside = None
                self._idle()
                # The last chunk: when the consumer asks for more the generator just ends, with no
                # await on the way, so there is no task inside to track any more.
                yield StreamChunk(content=cached.content, thinking=cached.thinking, done=True)
                return
            runner = self._tool_runner
            messages: list[Message] = list(self._request.messages)
            tools: Sequence[dict[str, Any]] = self._request.tools
            if not tools and runner is not None:
                tools = runner.schemas()
            content = self._content
            rounds = 0
            while True:
                offer = tools if rounds < self._max_tool_rounds else ()
                request = dataclasses.replace(self._request, messages=tuple(messages), tools=offer)
                upstream, delta = await self._open(request)
                receive = upstream.__anext__
                calls: list[ToolCall] = []
                said_from = -1  # where this round's text starts in ``content`` once it has some
                try:
                    while True:
                        text = delta.content
                        if text or delta.thinking:
                            if not self._shown:
                                self._shown = True
                                self._first_at = self._clock()
                            if text:
                                if said_from < 0:
                                    if content:
                                        content.append("\n\n")  # text after a tool round
                                    said_from = len(content)
                                content.append(text)
                            if delta.thinking:
                                self._thinking.append(delta.thinking)
                            self._uncounted += 1
                            # No aclose() can be waiting for idle here: one that found this task
                            # inside cancelled its wait (for a delta or a timed step), and the
                            # task goes on to a last chunk, whose _idle() wakes it.
                            self._inside = None
                            yield StreamChunk(text, delta.thinking)  # positional: the cheapest call
                            self._inside = current_task()
                        if delta.tool_calls:
                            calls.extend(delta.tool_calls)
                        if delta.done:
                            self._account(delta)
                            break
                        if self._halt:
                            self._raise_halt()
                        try:
                            delta = await receive()
                        except StopAsyncIteration:
                            raise _ended() from None
                        except asyncio.CancelledError:
                            self._raise_if_timed_out(BETWEEN)
                            raise
                        self._ticks += 1
                finally:
                    watchdog.disarm()
                    await _aclose(upstream)
                self._tool_calls.extend(calls)
                if not calls or runner is None or not offer:
                    break
                rounds += 1
                said = "".join(content[said_from:]) if said_from >= 0 else ""
                messages.append(Message(role=Role.ASSISTANT, content=said, tool_calls=tuple(calls)))
                for call in calls:
                    result = await self._guarded(runner.run(call))
                    messages.append(
                        Message(
                            role=Role.TOOL,
                            content=result.strip() or "(no output)",
                            metadata={"tool_name": call.name},
                        )
                    )
            # Ollama ends a reply cut by num_predict or a full context with "length": the text
            # looks whole, so the outcome must say it is not.
            self._finish(Outcome.LENGTH if self._done_reason == "length" else Outcome.COMPLETE)
            self._inside = None
            self._idle()
            yield StreamChunk(done=True)  # the last chunk (as for a cache hit)
        except _Stopped:
            self._finish(Outcome.STOPPED)
            self._inside = None
            self._idle()
            yield StreamChunk(done=True)
        except OllabotError as err:
            if not self._shown:
                self._error = err
                log.warning("generation failed before any text: %s", err.detail)
                raise
            log.warning("generation interrupted after partial text: %s", err.detail)
            self._finish(Outcome.INTERRUPTED, error=err.user_message)
            self._inside = None
            self._idle()
            yield StreamChunk(done=True)
        except (GeneratorExit, asyncio.CancelledError):
            self._finish(Outcome.STOPPED)
            raise
        finally:
            watchdog.close()
            self._finished.set()
            self._inside = None
            self._idle()

    def _account(self, delta: ChatDelta) -> None:
        self._eval_count += delta.eval_count or 0
        self._uncounted = 0
        if delta.prompt_eval_count is not None:
            self._prompt_eval_count = delta.prompt_eval_count
        self._done_reason = delta.done_reason

    async def _open(self, request: ChatRequest) -> tuple[AsyncIterator[ChatDelta], ChatDelta]:
        """Send ``request`` and wait for its first showable delta, retrying as the policy allows.

        Returns the upstream iterator and that delta (text, thinking, or the final one). Deltas
        before it (tool calls) are folded into it, so nothing is lost and nothing was shown yet
        while a retry is still allowed. The watchdog is left timing gaps between tokens.
        """
        limits = self._timeouts
        watchdog = self._watchdog

        async def attempt() -> tuple[AsyncIterator[ChatDelta], ChatDelta]:
            upstream = self._model.chat(request)
            try:
                watchdog.watch(FIRST, limits.first_token)
                delta = await self._next(upstream, FIRST)
                watchdog.watch(BETWEEN, limits.between_tokens)
                calls = list(delta.tool_calls)
                while not (delta.content or delta.thinking or delta.done):
                    delta = await self._next(upstream, BETWEEN)
                    calls.extend(delta.tool_calls)
                if calls != list(delta.tool_calls):
                    delta = dataclasses.replace(delta, tool_calls=tuple(calls))
                return upstream, delta
            except BaseException:
                # Every error here came out of the upstream generator (an error line, a lost or
                # ended stream, a timeout or stop delivered inside its wait), which closed its
                # HTTP stream on the way out: there is nothing left to close before a retry.
                watchdog.disarm()
                raise

        return await self._guarded(self._retry.call(attempt))

    async def _next(self, upstream: AsyncIterator[ChatDelta], phase: str) -> ChatDelta:
        """The next delta while the watchdog times ``phase`` (the per-token loop inlines this)."""
        if self._halt:
            self._raise_halt()
        try:
            delta = await anext(upstream)
        except StopAsyncIteration:
            raise _ended() from None
        except asyncio.CancelledError:
            self._raise_if_timed_out(phase)
            raise
        self._ticks += 1
        return delta

    def _raise_halt(self) -> None:
        if self._stop_requested:
            raise _Stopped
        raise GenerationTimeout("total", self._timeouts.total)

    def _raise_if_timed_out(self, phase: str) -> None:
        """On ``CancelledError`` while waiting: raise what the watchdog meant by it, if it did.

        Returns (and the caller re-raises the cancellation) when someone else cancelled the task.
        """
        watchdog = self._watchdog
        task = asyncio.current_task()
        assert task is not None
        if not watchdog.fired_for(task):
            return
        if self._stop_requested:
            raise _Stopped from None
        limits = self._timeouts
        if watchdog.hit_total:
            raise GenerationTimeout("total", limits.total) from None
        limit = limits.between_tokens if phase is BETWEEN else limits.first_token
        raise GenerationTimeout(phase, limit) from None

    async def _guarded(self, step: Coroutine[Any, Any, T]) -> T:
        """Await under the total deadline, and stoppable by :meth:`aclose` from another task."""
        try:
            return await self._timed(step, self._deadline - self._clock())
        except TimeoutError:
            if self._stop_requested:
                raise _Stopped from None
            raise GenerationTimeout("total", self._timeouts.total) from None

    async def _timed(self, step: Coroutine[Any, Any, T], limit: float) -> T:
        if self._stop_requested:
            step.close()  # never awaited: do not leave a "coroutine was never awaited" warning
            raise _Stopped
        async with asyncio.timeout(max(limit, 0.0)) as timer:
            self._timers.append(timer)
            try:
                return await step
            finally:
                self._timers.remove(timer)

    # -- the response ------------------------------------------------------------------------

    def _finish(self, outcome: Outcome, *, error: str | None = None) -> None:
        if self._response is not None or self._error is not None:
            return
        now = self._clock()
        started = self._started or now
        self._response = Response(
            content="".join(self._content),
            thinking="".join(self._thinking),
            token_count=self._eval_count + self._uncounted,
            token_count_estimated=self._uncounted > 0,
            prompt_token_count=self._prompt_eval_count,
            model_name=self._request.model,
            done_reason=self._done_reason,
            time_to_first_token=None if self._first_at is None else self._first_at - started,
            total_duration=now - started,
            tool_calls=tuple(self._tool_calls),
            outcome=outcome,
            error=error,
        )
        if self._cache is not None:
            self._cache.put(self._request, self._response)  # it keeps only what it should
        if self._on_end is not None:
            self._on_end(self._response)

    def _finish_cached(self, cached: Response) -> None:
        now = self._clock()
        self._response = cached.model_copy(  # ``cached=True`` already (ResponseCacheLike.get)
            update={
                "time_to_first_token": now - self._started,
                "total_duration": now - self._started,
            }
        )
        if self._on_end is not None:
            self._on_end(self._response)


def _ended() -> OllamaError:
    # The server closed the stream without a final line: treat it as a lost connection.
    return OllamaError("The reply ended unexpectedly.", retryable=True)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    # ``ChatModel.chat`` is typed as an iterator but is an async generator in practice; closing
    # it closes the HTTP stream, which is how Ollama stops generating.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
