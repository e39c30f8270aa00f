"""The generation core: one model reply as a stream of chunks, with retries, timeouts and tools.

Both the engine and ``ChatManager`` generate through :class:`Generator`. What it guarantees:

- **Retries never duplicate text.** A retryable failure (Ollama down, HTTP 5xx, an error line, a
  dropped connection) is retried with :class:`bot.model.retry.RetryPolicy` only until the first
  chunk was handed out. After that the stream ends with ``Outcome.INTERRUPTED``, the partial text
  kept and ``Response.error`` saying why; the last chunk has ``done=True``.
- **Errors before any chunk are raised** (from iteration or ``await``) as :mod:`bot.errors` types.
- **Timeouts**: first token, gap between tokens, and total, each enforced on the wait for the
  next delta (time the consumer holds a chunk is no gap) by a coarse watchdog timer, so a limit
  fires at most ``min(limit / 8, 1 s)`` late and costs nothing per token. A timeout closes the
  upstream stream (so Ollama stops) and gives :class:`bot.errors.GenerationTimeout`: raised if
  nothing was shown yet, else ``INTERRUPTED``.
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

The pieces: :class:`Generator` (here) starts replies; :class:`bot.model.stream.ResponseStream`
is one reply in progress; :class:`bot.model.watchdog.Watchdog` enforces :class:`Timeouts`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.model.port import ChatModel, ChatRequest, ResponseCacheLike, ToolRunnerLike
from bot.model.retry import RetryPolicy
from bot.model.stream import ResponseStream
from bot.model.watchdog import Timeouts
from bot.types import Response

__all__ = [
    "Generator",
    "ResponseCacheLike",
    "ResponseStream",
    "Timeouts",
    "ToolRunnerLike",
]


class Generator:
    """Streams replies from a :class:`bot.model.port.ChatModel`. See the module docstring.

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
        return ResponseStream(
            self.model,
            request,
            tool_runner,
            max_tool_rounds,
            timeouts=self.timeouts,
            retry=self.retry,
            cache=self.cache,
            clock=self._clock,
            on_end=on_end,
        )
