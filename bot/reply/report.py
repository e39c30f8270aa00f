"""What a :class:`bot.reply.streamer.ReplyStreamer` reports: each operation and the reply shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.reply.splitting import Part
from bot.reply.surface import ReplyStatus

__all__ = ["Operation", "StreamedReply"]


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
