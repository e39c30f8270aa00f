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
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from bot.errors import OllabotError, RateLimited
from bot.reply.splitting import Fence, Part, max_reserve, next_cut
from bot.reply.surface import Pacer, ReplyStatus, ReplySurface
from bot.types import Outcome, StreamChunk

__all__ = [
    "Operation",
    "Pacer",
    "ReplyStatus",
    "ReplyStreamer",
    "ReplySurface",
    "StreamedReply",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Operation:
    """One send or edit the streamer made (for benchmarks of latency and lag).

    Attributes:
        at: ``time.monotonic()`` (or the injected clock) when the operation succeeded.
        kind: "send" or "edit".
        message_id: The message sent or edited.
        length: Characters in that message afterwards.
        visible: Characters of the reply's display text (thinking block + answer) visible in
            all its messages afterwards.
        final: Whether it was made after :meth:`ReplyStreamer.finish` was called.
    """

    at: float
    kind: Literal["send", "edit"]
    message_id: str
    length: int
    visible: int
    final: bool


@dataclass(frozen=True, slots=True)
class StreamedReply:
    """What a finished :class:`ReplyStreamer` did.

    Attributes:
        text: The model's answer, exactly as streamed (no thinking, no footer, no notice).
        message_ids: The platform messages that show the reply, in order.
        edits: Successful edits.
        sends: Successful sends.
        rate_limited: 429s met on the way.
        parts: How the display text was split (``unsplit(parts)`` is the display text: the
            thinking block when shown, the answer, then any error or empty-answer notice).
        thinking: The model's thinking text (shown or not).
        operations: Every successful operation, in order.
        delivered: Whether the final state reached the platform (``False`` after giving up).
        status: The status the reply was finished with.
    """

    text: str
    message_ids: tuple[str, ...]
    edits: int
    sends: int
    rate_limited: int
    parts: tuple[Part, ...] = ()
    thinking: str = ""
    operations: tuple[Operation, ...] = ()
    delivered: bool = True
    status: ReplyStatus | None = None


THINKING_MARK = "> \N{THOUGHT BALLOON} "
"""How a shown thinking block starts (a Markdown blockquote)."""

PLACEHOLDER = "\N{HORIZONTAL ELLIPSIS}"
"""Shown for a message whose part is only whitespace (platforms refuse empty messages)."""

_UNEXPECTED = "Something went wrong while answering."

_EMPTY_NOTICES: Mapping[Outcome, str] = {
    Outcome.COMPLETE: "(The model returned an empty answer.)",
    Outcome.STOPPED: "(Stopped before any answer.)",
    Outcome.INTERRUPTED: "(Interrupted before any answer.)",
    Outcome.ERROR: "(The reply failed.)",
}


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
        self._max_chars = surface.max_chars
        next_cut("", 0, self._max_chars, more_coming=False)  # validates max_chars early
        self._show_thinking = show_thinking
        self._typing_interval = typing_interval
        self._typing_limit = typing_limit
        self._max_thinking_chars = max_thinking_chars
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._clock = clock
        self._on_operation = on_operation
        self._log_extra = dict(log_extra or {})

        self._answer: list[str] = []
        self._thinking: list[str] = []
        # The display text (thinking block, then answer) after the frozen parts, in pieces:
        # per-flush work stays proportional to one message, not to the whole reply.
        self._live: list[str] = []
        self._has_head = False
        self._thinking_shown = 0
        self._answer_started = False

        # Parts already decided; they never change (see bot.reply.splitting.next_cut).
        self._frozen: list[Part] = []
        self._frozen_texts: list[tuple[str, int]] = []
        self._settled = 0  # leading messages that show their frozen part: never touched again
        self._version = 0  # bumped by every visible change; keys the cache below
        self._desired_cache: tuple[int, list[tuple[str, int]]] | None = None
        self._cut_fence: Fence | None = None
        self._final: tuple[list[Part], list[tuple[str, int]]] | None = None

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
        self._status: ReplyStatus | None = None
        self._footer = ""
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
        if chunk.thinking:
            self._push_thinking(chunk.thinking)
        content = chunk.content
        if content:
            if not self._answer_started:
                self._answer_started = True
                if self._has_head:
                    self._live.append("\n\n")
            self._answer.append(content)
            self._live.append(content)
            self._version += 1
            if not self._dirty.is_set():  # else the flusher is already due (see _wake)
                self._wake()

    def _push_thinking(self, thinking: str) -> None:
        self._thinking.append(thinking)
        # Thinking that arrives after the answer started is kept but not shown: the displayed
        # text only ever grows at its end, so frozen parts stay valid.
        if self._show_thinking and not self._answer_started and self._show_more_thinking(thinking):
            self._version += 1
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
            self._status = status
            self._failures = 0
            self._footer = self._fit_footer(self._surface.render_status(status))
            self._version += 1
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
        parts, _ = self._final_state()
        self._result = StreamedReply(
            text=self.text,
            message_ids=tuple(self._ids),
            edits=self._edits,
            sends=self._sends,
            rate_limited=self._rate_limited,
            parts=tuple(parts),
            thinking="".join(self._thinking),
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
        if len(self._answer) > 1:
            self._answer[:] = ["".join(self._answer)]
        return self._answer[0] if self._answer else ""

    @property
    def message_ids(self) -> tuple[str, ...]:
        """The messages sent so far."""
        return tuple(self._ids)

    @property
    def typing_active(self) -> bool:
        """Whether typing notifications are still being sent."""
        return self._typing is not None and not self._typing.done()

    # --- what to show ---------------------------------------------------------------------------

    def _show_more_thinking(self, thinking: str) -> bool:
        room = self._max_thinking_chars - self._thinking_shown
        if room <= 0:
            return False
        if not self._has_head:
            self._has_head = True
            self._live.append(THINKING_MARK)
        piece = thinking[:room]
        self._thinking_shown += len(piece)
        self._live.append(piece.replace("\n", "\n> "))
        if len(thinking) > room:
            self._live.append(" " + PLACEHOLDER)
            self._thinking_shown = self._max_thinking_chars
        return True

    def _tail(self) -> str:
        """The display text not yet in a frozen part."""
        if len(self._live) > 1:
            self._live[:] = ["".join(self._live)]
        return self._live[0] if self._live else ""

    def _notice(self) -> str:
        """What the reply adds so the user sees its outcome: the error, or why it is empty."""
        status = self._status
        assert status is not None
        blank = not self.text.strip()
        # The footer usually says what went wrong; when it does not, the text must.
        if status.error and status.error not in self._footer:
            notice = f"\N{WARNING SIGN} {status.error}"
        elif blank and not status.error:
            notice = _EMPTY_NOTICES[status.outcome]
        else:
            return ""
        before = self._has_head or not blank
        return ("\n\n" if before else "") + notice

    def _fit_footer(self, footer: str) -> str:
        room = max_reserve(self._max_chars) - 1  # one for the newline before it
        if len(footer) > room:
            footer = footer[: room - 1] + PLACEHOLDER
        return footer

    def _final_state(self) -> tuple[list[Part], list[tuple[str, int]]]:
        if self._final is None:
            display = self._tail() + self._notice()
            parts = list(self._frozen)
            start, fence = 0, self._cut_fence
            reserve = len(self._footer) + 1 if self._footer else 0
            while (
                cut := next_cut(
                    display, start, self._max_chars, fence=fence, more_coming=False, reserve=reserve
                )
            ) is not None:
                parts.append(cut.part)
                start, fence = cut.end, cut.fence
            texts = [(_render(part), len(part.body)) for part in parts]
            last = parts[-1].text if parts and parts[-1].body.strip() else ""
            if self._footer:
                last = f"{last}\n{self._footer}" if last.strip() else self._footer
            if parts:
                texts[-1] = (last or PLACEHOLDER, len(parts[-1].body))
            else:
                texts = [(last or PLACEHOLDER, 0)]
            self._final = (parts, texts)
        return self._final

    def _desired(self) -> list[tuple[str, int]]:
        """The messages as they should look now: (text, body length) each."""
        if self._finishing:
            return self._final_state()[1]
        if self._desired_cache is not None and self._desired_cache[0] == self._version:
            return self._desired_cache[1]
        tail = self._tail()
        frozen_any = False
        while (
            cut := next_cut(tail, 0, self._max_chars, fence=self._cut_fence, more_coming=True)
        ) is not None:
            self._frozen.append(cut.part)
            self._frozen_texts.append((_render(cut.part), len(cut.part.body)))
            self._cut_fence = cut.fence
            tail = tail[cut.end :]
            frozen_any = True
        if frozen_any:
            self._live[:] = [tail]
        desired = list(self._frozen_texts)
        preview = next_cut(tail, 0, self._max_chars, fence=self._cut_fence, more_coming=False)
        # A part of nothing but whitespace waits for text rather than showing a placeholder.
        if preview is not None and preview.part.body.strip():
            desired.append((preview.part.text, len(preview.part.body)))
        self._desired_cache = (self._version, desired)
        return desired

    def _next_operation(self) -> tuple[int, str, int] | None:
        desired = self._desired()
        if not self._finishing:
            # Frozen parts already shown never change: skip them without comparing texts.
            while (
                self._settled < min(len(self._frozen_texts), len(self._shown))
                and self._shown[self._settled] == self._frozen_texts[self._settled][0]
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


def _render(part: Part) -> str:
    return part.text if part.body.strip() else PLACEHOLDER
