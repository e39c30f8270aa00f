"""Turn a stream of model chunks into paced send/edit operations on a platform message.

The engine decides what text to show and when; the adapter only knows how to show it, through
a :class:`ReplySurface` (the port lives in :mod:`bot.reply.surface` and is re-exported here). A
:class:`ReplyStreamer` shows the first token at once, then edits the message with the newest
text each time the destination's :class:`Pacer` allows one more operation (edits that went
stale while waiting are never sent), opens continuation messages when the platform's limit is
reached (see :mod:`bot.reply.splitting`), rides out 429s, and ends with a final edit carrying the
whole reply and the surface's status footer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable, Mapping
from types import TracebackType
from typing import Literal

from bot.errors import OllabotError, RateLimited
from bot.reply.layout import PLACEHOLDER, THINKING_MARK, ReplyLayout
from bot.reply.pacing import acquire_first, acquire_last
from bot.reply.report import Operation, StreamedReply
from bot.reply.surface import Pacer, ReplyStatus, ReplySurface, is_append_only
from bot.types import Outcome, StreamChunk

__all__ = [
    "PLACEHOLDER",
    "THINKING_MARK",
    "Operation",
    "Pacer",
    "ReplyStatus",
    "ReplyStreamer",
    "ReplySurface",
    "StreamedReply",
]

logger = logging.getLogger(__name__)


_UNEXPECTED = "Something went wrong while answering."


class ReplyStreamer:
    """Stream one reply onto a :class:`ReplySurface`: paced, coalesced, split, never lost.

    Use::

        streamer = ReplyStreamer(surface, show_thinking=False)
        await streamer.start()               # typing indicator until the first text
        async for chunk in stream:
            streamer.push(chunk)             # cheap: append and wake the flusher
        reply = await streamer.finish(ReplyStatus(Outcome.COMPLETE, model="llama3.2"))

    A single background flusher waits for new text, then for a grant from ``surface.pacer``,
    then renders the *newest* text into one send or edit: at most one operation per grant, and
    edits that went stale while waiting are never made. Parts that reach ``surface.max_chars``
    are frozen with a last edit and the reply continues in a new message. On
    :class:`~bot.errors.RateLimited` the pacer is penalized and the newest text retried.

    ``finish`` makes the final state visible: the whole display text, split, with
    ``"\\n" + surface.render_status(status)`` appended to the last message. An error the footer
    does not mention is added after the text, and an empty answer without an error says so:
    the user always sees an outcome.

    Args:
        surface: Where the reply is shown.
        show_thinking: Show the model's thinking before the answer, as a "💭" blockquote.
        typing_interval: Seconds between typing notifications before the first text (0: none).
        typing_limit: Stop typing notifications after this many seconds even without text
            (a safety net for a streamer its owner forgot to finish).
        max_thinking_chars: Thinking shown beyond this many characters is elided with "…".
        max_attempts: Failed operations in a row after ``finish`` before giving up (logged).
        retry_backoff: First pause after a failure other than a 429 (doubles, at most 4 s).
        clock: Monotonic clock for :class:`Operation` timestamps.
        on_operation: Called after each successful operation (benchmarks).
        log_extra: Fields added to every log record (session, request ids).

    Raises:
        ValueError: The surface's ``max_chars`` is below :data:`bot.reply.splitting.MIN_MAX_CHARS`.
    """

    def __init__(
        self,
        surface: ReplySurface,
        *,
        show_thinking: bool = False,
        typing_interval: float = 8.0,
        typing_limit: float = 600.0,
        max_thinking_chars: int = 1500,
        max_attempts: int = 8,
        retry_backoff: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        on_operation: Callable[[Operation], None] | None = None,
        log_extra: Mapping[str, object] | None = None,
    ) -> None:
        self._surface = surface
        self._pacer = surface.pacer
        self._layout = ReplyLayout(
            surface.max_chars,
            show_thinking=show_thinking,
            max_thinking_chars=max_thinking_chars,
            append_only=is_append_only(surface),
        )
        self._typing_interval = typing_interval
        self._typing_limit = typing_limit
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._clock = clock
        self._on_operation = on_operation
        self._log_extra = dict(log_extra or {})

        self._settled = 0  # leading messages that show their frozen part: never touched again

        self._ids: list[str] = []
        self._shown: list[str] = []
        self._shown_bodies: list[int] = []
        self._operations: list[Operation] = []
        self._sends = 0
        self._edits = 0
        self._rate_limited = 0
        self._failures = 0
        self._gave_up = False

        self._dirty = asyncio.Event()
        self._first_visible = asyncio.Event()
        self._finishing = False
        self._flusher: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None
        self._result: StreamedReply | None = None

    # --- the per-token path ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the typing notifications and the flusher. Idempotent."""
        if self._typing is None and self._typing_interval > 0 and not self._finishing:
            self._typing = asyncio.create_task(self._typing_loop())
        self._ensure_flusher()

    def push(self, chunk: StreamChunk) -> None:
        """Take one chunk of the model's stream (cheap: append and wake the flusher).

        Raises:
            RuntimeError: The reply was already finished.
        """
        if self._finishing:
            raise RuntimeError("ReplyStreamer.push() after finish()")
        layout = self._layout
        if chunk.thinking and layout.add_thinking(chunk.thinking) and not self._dirty.is_set():
            self._wake()
        content = chunk.content
        if content:
            layout.add_answer(content)
            if not self._dirty.is_set():  # else the flusher is already due (see _wake)
                self._wake()

    def push_note(self, text: str, *, paragraph: bool = False) -> None:
        """Show ``text`` after what is shown so far, outside the answer (a tool call's line).

        It is displayed like the answer (same splitting, same protections) but is not part of
        :attr:`text`, so it is neither stored nor sent back to the model. With ``paragraph`` it
        starts a new paragraph.

        Raises:
            RuntimeError: The reply was already finished.
        """
        if self._finishing:
            raise RuntimeError("ReplyStreamer.push_note() after finish()")
        if text:
            self._layout.add_note(text, paragraph=paragraph)
            if not self._dirty.is_set():
                self._wake()

    def _wake(self) -> None:
        # Called only while the flag is clear: once set, the flusher is already due to run
        # (and exists: only aclose() cancels it, and finish() starts a new one), so the
        # following chunks need nothing more than their append.
        self._ensure_flusher()
        self._dirty.set()

    async def feed(self, chunk: StreamChunk) -> None:
        """:meth:`push`, then let the flusher run."""
        self.push(chunk)
        await asyncio.sleep(0)

    async def finish(self, status: ReplyStatus) -> StreamedReply:
        """End the reply: make the final state visible (whole text and footer), then report.

        Retries the final operations through 429s and failures, up to ``max_attempts`` in a
        row, then gives up with an error in the log (``delivered`` is then ``False``).
        Calling it again returns the same result.

        Args:
            status: How the reply ended; the surface renders it as the footer.

        Returns:
            What was shown and how.
        """
        if self._result is not None:
            return self._result
        if not self._finishing:
            self._finishing = True
            self._failures = 0
            self._layout.finish(status, self._surface.render_status(status))
        self._ensure_flusher()
        self._dirty.set()
        flusher = self._flusher
        assert flusher is not None
        try:
            await flusher
        except BaseException:
            await self.aclose()
            raise
        await self._stop_typing()
        parts, _ = self._layout.final_state()
        self._result = StreamedReply(
            text=self.text,
            message_ids=tuple(self._ids),
            edits=self._edits,
            sends=self._sends,
            rate_limited=self._rate_limited,
            parts=tuple(parts),
            thinking=self._layout.thinking,
            operations=tuple(self._operations),
            delivered=not self._gave_up,
            status=status,
        )
        return self._result

    async def run(
        self,
        chunks: AsyncIterable[StreamChunk],
        *,
        status_for: Callable[[OllabotError | None], ReplyStatus],
    ) -> StreamedReply:
        """Stream ``chunks`` to the end and finish; an :class:`OllabotError` ends the reply.

        Args:
            chunks: The model's stream.
            status_for: The status to finish with, given the error that ended the stream
                (``None`` when it ended normally).

        Returns:
            What was shown. The error, if any, is shown to the user and in ``status``.
        """
        await self.start()
        try:
            async for chunk in chunks:
                self.push(chunk)
        except OllabotError as err:
            return await self.finish(status_for(err))
        return await self.finish(status_for(None))

    async def aclose(self) -> None:
        """Stop the background tasks without a final edit (for cancellation)."""
        await _cancel(self._typing, self._flusher)

    async def __aenter__(self) -> ReplyStreamer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._result is None and isinstance(exc, Exception):
            # The user sees that the reply ended, and why, even when the caller did not finish.
            error = exc.user_message if isinstance(exc, OllabotError) else _UNEXPECTED
            await self.finish(ReplyStatus(Outcome.ERROR, error=error))
        await self.aclose()

    @property
    def text(self) -> str:
        """The answer so far."""
        return self._layout.text

    @property
    def message_ids(self) -> tuple[str, ...]:
        """The messages sent so far."""
        return tuple(self._ids)

    @property
    def typing_active(self) -> bool:
        """Whether typing notifications are still being sent."""
        return self._typing is not None and not self._typing.done()

    # --- what to do next -----------------------------------------------------------------------

    def _next_operation(self) -> tuple[int, str, int] | None:
        layout = self._layout
        desired = layout.desired()
        if not self._finishing:
            # Frozen parts already shown never change: skip them without comparing texts.
            while (
                self._settled < min(len(layout.frozen_texts), len(self._shown))
                and self._shown[self._settled] == layout.frozen_texts[self._settled][0]
            ):
                self._settled += 1
        for index in range(self._settled, len(desired)):
            text, body = desired[index]
            if index >= len(self._shown) or self._shown[index] != text:
                return index, text, body
        for index in range(len(desired), len(self._shown)):
            # Never expected (the parts only grow); keeps every message valid if it happens.
            if self._shown[index] != PLACEHOLDER:
                return index, PLACEHOLDER, 0
        return None

    # --- background tasks -----------------------------------------------------------------------

    def _ensure_flusher(self) -> None:
        # A flusher cancelled by aclose() is replaced, so finish() still works afterwards.
        if self._flusher is None or self._flusher.cancelled():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            if self._next_operation() is None:
                self._dirty.clear()
                if self._finishing:
                    return
                continue
            if not self._sends:
                # The reply's first message goes before the edits waiting in the destination:
                # nothing is visible yet, while the other replies' edits can wait a little.
                await acquire_first(self._pacer)
            elif self._finishing:
                # Its final operations wait their turn, then may borrow: nothing of this reply
                # follows them, and when the channel is done nobody else needs the tokens.
                await acquire_last(self._pacer)
            else:
                await self._pacer.acquire()
            operation = self._next_operation()  # the newest text, after the wait
            if operation is None:
                continue
            try:
                await self._perform(*operation)
            except RateLimited as err:
                self._rate_limited += 1
                self._pacer.penalize(err.retry_after)
                if not self._keep_trying(err):
                    return
            except OllabotError as err:
                if not self._keep_trying(err):
                    return
                await asyncio.sleep(min(4.0, self._retry_backoff * 2 ** (self._failures - 1)))
            else:
                self._failures = 0

    async def _perform(self, index: int, text: str, body: int) -> None:
        kind: Literal["send", "edit"]
        if index == len(self._ids):
            message_id = await self._surface.send(text)
            self._ids.append(message_id)
            self._shown.append(text)
            self._shown_bodies.append(body)
            self._sends += 1
            self._first_visible.set()
            kind = "send"
        else:
            message_id = self._ids[index]
            await self._surface.edit(message_id, text)
            self._shown[index] = text
            self._shown_bodies[index] = body
            self._edits += 1
            kind = "edit"
        operation = Operation(
            at=self._clock(),
            kind=kind,
            message_id=message_id,
            length=len(text),
            visible=sum(self._shown_bodies),
            final=self._finishing,
        )
        self._operations.append(operation)
        if self._on_operation is not None:
            self._on_operation(operation)

    def _keep_trying(self, err: OllabotError) -> bool:
        self._failures += 1
        extra = {**self._log_extra, "error": type(err).__name__, "detail": err.detail}
        if self._finishing and self._failures >= self._max_attempts:
            logger.error(
                "giving up on the final reply message after %d failed attempts; "
                "the user may see an incomplete reply",
                self._failures,
                extra=extra,
            )
            self._gave_up = True
            return False
        # A 429 is routine while streaming (the pacer learns from it); anything else is not.
        level = logging.INFO if isinstance(err, RateLimited) else logging.WARNING
        logger.log(
            level, "reply message operation failed; retrying with the newest text", extra=extra
        )
        return True

    async def _typing_loop(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._typing_limit):
                await self._type_until_visible()

    async def _type_until_visible(self) -> None:
        while not self._first_visible.is_set() and not self._finishing:
            try:
                await self._surface.typing()
            except OllabotError as err:
                # Only cosmetic: the reply itself still goes out.
                logger.info(
                    "typing notification failed",
                    extra={**self._log_extra, "error": type(err).__name__},
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._typing_interval):
                    await self._first_visible.wait()

    async def _stop_typing(self) -> None:
        await _cancel(self._typing)


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel ``tasks`` and wait until they are done.

    ``asyncio.wait`` does not raise what the tasks raise, so their cancellation is absorbed
    while a cancellation of the caller still propagates.
    """
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
