"""The generation core: one model reply as a stream of chunks, with retries, timeouts and tools.

Both the engine and ``ChatManager`` generate through :class:`Generator`. What it guarantees:

- **Retries never duplicate text.** A retryable failure (Ollama down, HTTP 5xx, an error line, a
  dropped connection) is retried with :class:`bot.retry.RetryPolicy` only until the first chunk
  was handed out. After that the stream ends with ``Outcome.INTERRUPTED``, the partial text kept
  and ``Response.error`` saying why; the last chunk has ``done=True``.
- **Errors before any chunk are raised** (from iteration or ``await``) as :mod:`bot.errors` types.
- **Timeouts**: first token, gap between tokens, and total, each enforced around the wait for the
  next delta. A timeout closes the upstream stream (so Ollama stops) and gives
  :class:`bot.errors.GenerationTimeout`: raised if nothing was shown yet, else ``INTERRUPTED``.
- **Stopping**: ``aclose()`` (from the consuming task or any other) closes the HTTP stream; the
  response is ``Outcome.STOPPED`` with the partial text.
- **Tools**: when the model asks for tool calls and a tool runner was given, the calls run, their
  results go back to the model, and it is asked again (at most ``max_tool_rounds`` times; the last
  request offers no tools, so the model must answer). The caller sees text chunks only; the calls
  are reported in ``Response.tool_calls``. Text a model writes before a tool call is kept, and
  the rounds' texts are joined by a blank line.
- **Thinking** streams in ``StreamChunk.thinking`` and never ends up in ``Response.content``.
- **Cache**: with a cache, a hit is replayed as one ``done`` chunk (``Response.cached=True``); only
  complete replies that used no tools are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from collections.abc import Generator as SyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

from bot.backend import ChatDelta, ChatModel, ChatRequest
from bot.errors import GenerationTimeout, OllabotError, OllamaError
from bot.retry import RetryPolicy
from bot.types import Message, Outcome, Response, Role, StreamChunk, ToolCall

__all__ = [
    "Generator",
    "ResponseCacheLike",
    "ResponseStream",
    "Timeouts",
    "ToolRunnerLike",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a generation may take, in seconds.

    Attributes:
        connect: TCP connect to Ollama (applied by the backend, e.g. ``OllamaChatModel``).
        first_token: From sending a request to the first streamed delta (covers model loading
            and prompt evaluation).
        between_tokens: The longest gap between two deltas.
        total: The whole reply, retries and tool rounds included.
    """

    connect: float = 5.0
    first_token: float = 120.0
    between_tokens: float = 60.0
    total: float = 600.0


class ResponseCacheLike(Protocol):
    """A cache of whole replies (``bot.cache.ResponseCache`` implements it).

    ``get`` returns ``None`` for requests it does not cache (e.g. sampled ones).
    """

    def get(self, request: ChatRequest) -> Response | None: ...

    def put(self, request: ChatRequest, response: Response) -> None: ...


class ToolRunnerLike(Protocol):
    """Runs the model's tool calls (``bot.tools.ToolRegistry`` implements it).

    ``run`` never raises (except ``CancelledError``): a failure comes back as text for the model.
    """

    def schemas(self) -> list[dict[str, Any]]: ...

    async def run(self, call: ToolCall) -> str: ...


class Generator:
    """Streams replies from a :class:`bot.backend.ChatModel`. See the module docstring.

    Args:
        model: The backend.
        timeouts: Time limits for each reply.
        retry: How to retry failures before the first chunk.
        cache: Optional cache of whole replies.
        clock: Monotonic clock (seconds); tests and benches may pass their own.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        cache: ResponseCacheLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self._clock = clock

    def stream(
        self,
        request: ChatRequest,
        *,
        tool_runner: ToolRunnerLike | None = None,
        max_tool_rounds: int = 4,
        on_end: Callable[[Response], None] | None = None,
    ) -> ResponseStream:
        """Start one reply. Nothing is sent until the stream is iterated or awaited.

        Args:
            request: What to ask. Its ``tools`` default to ``tool_runner.schemas()``.
            tool_runner: Runs tool calls; without one, calls are only reported.
            max_tool_rounds: At most this many rounds of tool calls.
            on_end: Called once with the response when the stream ends with one (complete,
                stopped, interrupted, cached); not called when it fails before any text.

        Returns:
            A :class:`ResponseStream`: iterate it for chunks, ``await`` it for the
            :class:`bot.types.Response`, or both (iterate, then await).
        """
        return ResponseStream(self, request, tool_runner, max_tool_rounds, on_end=on_end)


_FIRST = "first token"
_BETWEEN = "between tokens"


class _Stopped(Exception):
    """Internal: the stream was asked to stop while waiting (never leaves this module)."""


class ResponseStream:
    """One reply in progress. Async-iterable (chunks) and awaitable (the whole response).

    ``await`` after iterating returns the response of what was iterated; ``await`` alone consumes
    the stream itself. Use ``async with`` or call :meth:`aclose` to stop early.
    """

    def __init__(
        self,
        generator: Generator,
        request: ChatRequest,
        tool_runner: ToolRunnerLike | None,
        max_tool_rounds: int,
        *,
        on_end: Callable[[Response], None] | None = None,
    ) -> None:
        self._gen = generator
        self._on_end = on_end
        self._request = request
        self._tool_runner = tool_runner
        self._max_tool_rounds = max_tool_rounds
        self._clock = generator._clock
        self._started = 0.0
        self._deadline = 0.0
        self._first_at: float | None = None
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[ToolCall] = []
        self._eval_count = 0
        self._prompt_eval_count = 0
        self._done_reason: str | None = None
        self._shown = False
        self._stop_requested = False
        self._timers: list[asyncio.Timeout] = []
        self._watchdog = _Watchdog()
        self._response: Response | None = None
        self._error: OllabotError | None = None
        self._finished = asyncio.Event()
        self._busy = False  # a task is inside the generator
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
        # the per-token path. The generator tracks ``_busy`` itself around each ``yield``.
        if self._busy and not self._finished.is_set():
            return self._wait_end()  # another task is inside the generator (closing it)
        return self._chunks.__anext__()

    async def _wait_end(self) -> StreamChunk:
        await self._finished.wait()
        raise StopAsyncIteration

    def _pause(self) -> None:
        """Called right before each ``yield``: no task is inside the generator any more."""
        self._busy = False
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
        self._stop_requested = True
        while self._busy:
            # The consumer is waiting inside the generator: end its wait now (as if it timed
            # out), so the generator winds down as "stopped".
            if self._watchdog.waiting:
                self._watchdog.fire()
            elif self._timers and not self._timers[-1].expired():
                self._timers[-1].reschedule(asyncio.get_running_loop().time())
            self._idle_waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self._finished.is_set():
            return
        self._busy = True
        try:
            await self._chunks.aclose()
        finally:
            self._busy = False
        self._finish(Outcome.STOPPED)
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
        # One generator for the whole reply (rounds included): every layer of async generator
        # costs about a microsecond per token, and this is the per-token path.
        self._busy = True
        self._started = self._clock()
        self._deadline = self._started + self._gen.timeouts.total
        self._watchdog.start(self._gen.timeouts.total)
        try:
            cache = self._gen.cache
            cached = cache.get(self._request) if cache is not None else None
            if cached is not None:
                self._first_at = self._clock()
                self._finish_cached(cached)
                self._pause()
                yield StreamChunk(content=cached.content, thinking=cached.thinking, done=True)
                self._busy = True
                return
            runner = self._tool_runner
            messages: list[Message] = list(self._request.messages)
            tools: Sequence[dict[str, Any]] = self._request.tools
            if not tools and runner is not None:
                tools = runner.schemas()
            rounds = 0
            while True:
                offer = tools if rounds < self._max_tool_rounds else ()
                request = dataclasses.replace(self._request, messages=tuple(messages), tools=offer)
                upstream, delta = await self._open(request)
                calls: list[ToolCall] = []
                text: list[str] = []
                try:
                    while True:
                        if delta.content or delta.thinking:
                            if not self._shown:
                                self._shown = True
                                self._first_at = self._clock()
                            if delta.content:
                                if not text and self._content:
                                    self._content.append("\n\n")  # text after a tool round
                                text.append(delta.content)
                                self._content.append(delta.content)
                            if delta.thinking:
                                self._thinking.append(delta.thinking)
                            self._pause()
                            yield StreamChunk(content=delta.content, thinking=delta.thinking)
                            self._busy = True
                        if delta.tool_calls:
                            calls.extend(delta.tool_calls)
                        if delta.done:
                            self._account(delta)
                            break
                        delta = await self._next(upstream, _BETWEEN)
                finally:
                    await _aclose(upstream)
                self._tool_calls.extend(calls)
                if not calls or runner is None or not offer:
                    break
                rounds += 1
                said = "".join(text)
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
            self._finish(Outcome.COMPLETE)
            self._pause()
            yield StreamChunk(done=True)
            self._busy = True
        except _Stopped:
            self._finish(Outcome.STOPPED)
            self._pause()
            yield StreamChunk(done=True)
            self._busy = True
        except OllabotError as err:
            if not self._shown:
                self._error = err
                log.warning("generation failed before any text: %s", err.detail)
                raise
            log.warning("generation interrupted after partial text: %s", err.detail)
            self._finish(Outcome.INTERRUPTED, error=err.user_message)
            self._pause()
            yield StreamChunk(done=True)
            self._busy = True
        except (GeneratorExit, asyncio.CancelledError):
            self._finish(Outcome.STOPPED)
            raise
        finally:
            self._watchdog.close()
            self._finished.set()
            self._pause()

    def _account(self, delta: ChatDelta) -> None:
        self._eval_count += delta.eval_count or 0
        if delta.prompt_eval_count is not None:
            self._prompt_eval_count = delta.prompt_eval_count
        self._done_reason = delta.done_reason

    async def _open(self, request: ChatRequest) -> tuple[AsyncIterator[ChatDelta], ChatDelta]:
        """Send ``request`` and wait for its first showable delta, retrying as the policy allows.

        Returns the upstream iterator and that delta (text, thinking, or the final one). Deltas
        before it (tool calls) are folded into it, so nothing is lost and nothing was shown yet
        while a retry is still allowed.
        """

        async def attempt() -> tuple[AsyncIterator[ChatDelta], ChatDelta]:
            upstream = self._gen.model.chat(request)
            try:
                calls: list[ToolCall] = []
                phase = _FIRST
                while True:
                    delta = await self._next(upstream, phase)
                    phase = _BETWEEN
                    calls.extend(delta.tool_calls)
                    if delta.content or delta.thinking or delta.done:
                        if calls != list(delta.tool_calls):
                            delta = dataclasses.replace(delta, tool_calls=tuple(calls))
                        return upstream, delta
            except BaseException:
                await _aclose(upstream)
                raise

        return await self._guarded(self._gen.retry.call(attempt))

    async def _next(self, upstream: AsyncIterator[ChatDelta], phase: str) -> ChatDelta:
        """The next delta, within the phase's limit and the total deadline."""
        if self._stop_requested:
            raise _Stopped
        limits = self._gen.timeouts
        limit = limits.between_tokens if phase is _BETWEEN else limits.first_token
        watchdog = self._watchdog
        task = watchdog.arm(limit)
        try:
            return await anext(upstream)
        except StopAsyncIteration:
            # The server closed the stream without a final line: treat it as a lost connection.
            raise OllamaError("The reply ended unexpectedly.", retryable=True) from None
        except asyncio.CancelledError:
            if not watchdog.fired_for(task):
                raise
            if self._stop_requested:
                raise _Stopped from None
            if watchdog.hit_total:
                raise GenerationTimeout("total", limits.total) from None
            raise GenerationTimeout(phase, limit) from None
        finally:
            watchdog.disarm()

    async def _guarded(self, awaitable: Awaitable[T]) -> T:
        """Await under the total deadline, and stoppable by :meth:`aclose` from another task."""
        try:
            return await self._timed(awaitable, self._deadline - self._clock())
        except TimeoutError:
            if self._stop_requested:
                raise _Stopped from None
            raise GenerationTimeout("total", self._gen.timeouts.total) from None

    async def _timed(self, awaitable: Awaitable[T], limit: float) -> T:
        if self._stop_requested:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # never awaited: do not leave a "coroutine was never awaited" warning
            raise _Stopped
        async with asyncio.timeout(max(limit, 0.0)) as timer:
            self._timers.append(timer)
            try:
                return await awaitable
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
            token_count=self._eval_count,
            prompt_token_count=self._prompt_eval_count,
            model_name=self._request.model,
            done_reason=self._done_reason,
            time_to_first_token=None if self._first_at is None else self._first_at - started,
            total_duration=now - started,
            tool_calls=tuple(self._tool_calls),
            outcome=outcome,
            error=error,
        )
        cache = self._gen.cache
        if cache is not None and outcome is Outcome.COMPLETE and not self._tool_calls:
            cache.put(self._request, self._response)
        if self._on_end is not None:
            self._on_end(self._response)

    def _finish_cached(self, cached: Response) -> None:
        now = self._clock()
        self._response = cached.model_copy(
            update={
                "cached": True,
                "time_to_first_token": now - self._started,
                "total_duration": now - self._started,
            }
        )
        if self._on_end is not None:
            self._on_end(self._response)


class _Watchdog:
    """Times out waits for the next delta with one reusable timer instead of one per token.

    ``asyncio.timeout()`` pushes and cancels a timer per delta (about 13 us each, a tenth of a
    fast model's token budget on this path). Here each wait only moves a deadline; the single
    timer wakes at the old deadline and re-arms itself while progress was made, and cancels the
    waiting task (turned into ``TimeoutError``, like ``asyncio.timeout``) once it has passed.
    """

    __slots__ = ("_cancelling", "_deadline", "_fired", "_handle", "_limit_at", "_loop", "_task")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._limit_at = 0.0
        self._cancelling = 0
        self._fired = False
        self._deadline = float("inf")

    def start(self, total: float) -> None:
        """Every wait from now on also ends ``total`` seconds from now."""
        self._loop = loop = asyncio.get_running_loop()
        self._deadline = loop.time() + total

    @property
    def hit_total(self) -> bool:
        """Whether the last wait was cut by the total deadline rather than its own limit."""
        return self._limit_at >= self._deadline

    @property
    def waiting(self) -> bool:
        return self._task is not None

    def arm(self, limit: float) -> asyncio.Task[Any]:
        """Start timing a wait of at most ``limit`` seconds by the current task; returns it.

        Pair with :meth:`disarm` in a ``finally``; on ``CancelledError`` ask :meth:`fired_for`.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        limit_at = loop.time() + limit
        if limit_at > self._deadline:
            limit_at = self._deadline
        self._limit_at = limit_at
        handle = self._handle
        if handle is None or handle.when() > limit_at:
            if handle is not None:
                handle.cancel()
            self._handle = loop.call_at(limit_at, self._check)
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        return task

    def disarm(self) -> None:
        self._task = None

    def fired_for(self, task: asyncio.Task[Any]) -> bool:
        """Whether a ``CancelledError`` in ``task`` came from this watchdog (then it is absorbed,
        like ``asyncio.timeout`` does) rather than from someone cancelling the task."""
        return self._fired and task.uncancel() <= self._cancelling

    def fire(self) -> None:
        """End the current wait now, as a timeout."""
        if self._task is not None and not self._fired:
            self._fired = True
            self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if self._task is None or self._loop is None:
            return  # nobody waits; the next wait arms a new timer
        if self._loop.time() >= self._limit_at:
            self.fire()
        else:
            self._handle = self._loop.call_at(self._limit_at, self._check)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    # ``ChatModel.chat`` is typed as an iterator but is an async generator in practice; closing
    # it closes the HTTP stream, which is how Ollama stops generating.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
