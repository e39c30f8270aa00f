"""Where one reply is shown in a Matrix room: a message, then ``m.replace`` edits of it.

The engine's ``ReplyStreamer`` decides what text to show and when; this surface posts it. A 429
``M_LIMIT_EXCEEDED`` comes back as :class:`bot.errors.RateLimited` with the homeserver's
``retry_after_ms``, so the room's pacer learns the limit and the streamer retries with the
newest text (matrix-nio itself is told not to retry 429s, see :mod:`adapters.matrix.client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import nio

from adapters.matrix.crypto import KeyChange
from adapters.matrix.render import content, edit_content
from bot.errors import ChatError, RateLimited
from bot.reply.streamer import Pacer, ReplyStatus
from bot.types import Outcome

__all__ = ["MatrixSurface", "RoomSender", "SendStats", "render_status", "send_checked"]

log = logging.getLogger(__name__)

_TYPING_TIMEOUT_MS = 30_000


async def send_checked(client: nio.AsyncClient, room_id: str, body: dict[str, Any]) -> str:
    """Send one ``m.room.message``; its event id.

    Raises:
        RateLimited: The homeserver answered 429 (``retry_after`` in seconds).
        ChatError: Any other refusal, or the homeserver could not be reached.
    """
    try:
        response = await client.room_send(room_id, "m.room.message", body)
    except KeyChange as err:
        await client.tell_key_change(room_id, err)
        raise ChatError(
            f"I will not send into this encrypted room: a device of {err.user_id} "
            f"({err.device_id}) presented new keys.",
            {"room": room_id, "user": err.user_id, "device_id": err.device_id},
        ) from err
    except (nio.OlmTrustError, nio.GroupEncryptionError, nio.MembersSyncError) as err:
        raise ChatError(
            "Could not encrypt the message for this room.", {"room": room_id, "error": repr(err)}
        ) from err
    except (aiohttp.ClientError, TimeoutError, nio.LocalProtocolError) as err:
        raise ChatError(
            "Could not post to the Matrix room (homeserver unreachable).",
            {"room": room_id, "error": repr(err)},
        ) from err
    status = getattr(response, "status_code", None)
    log.debug("sent to %s: %s", room_id, status or "ok")
    if isinstance(response, nio.RoomSendResponse):
        return str(response.event_id)
    if status in ("M_LIMIT_EXCEEDED", 429):
        retry_ms = getattr(response, "retry_after_ms", None) or 5000
        raise RateLimited(retry_ms / 1000, detail=f"{room_id}: {response}")
    raise ChatError(
        f"The homeserver refused the message ({status}).",
        {"room": room_id, "error": str(response)},
    )


def render_status(status: ReplyStatus) -> str:
    """The footer of a finished reply: none when complete, else why it ended early."""
    if status.outcome is Outcome.COMPLETE:
        return ""  # the final edit is exactly the model's text
    # One newline: the streamer puts the footer on a line of its own after the text, which
    # makes a paragraph of it; alone (no text), it is the whole message, with no blank line.
    if status.outcome is Outcome.STOPPED:
        return "\n*⏹ Stopped.*"
    if status.outcome is Outcome.LENGTH:
        return "\n*✂️ Cut at the length limit.*"
    reason = status.error or "the reply ended early"
    if status.outcome is Outcome.INTERRUPTED:
        return f"\n*⚠️ Interrupted: {reason}*"
    return f"\n*⚠️ {reason}*"


@dataclass
class SendStats:
    """Counters across every reply of one bot (for logs and the benchmark)."""

    messages: int = 0
    edits: int = 0
    rate_limited: int = 0


class RoomSender:
    """Relations every message of one reply carries: a thread, or a reply to the asking message.

    Args:
        client: The logged-in client.
        room_id: The room.
        reply_to: The event being answered.
        thread_root: The thread to post in, or ``None`` for plain replies.
    """

    def __init__(
        self, client: nio.AsyncClient, room_id: str, reply_to: str, thread_root: str | None
    ) -> None:
        self.client = client
        self.room_id = room_id
        self.reply_to = reply_to
        self.thread_root = thread_root

    def relation(self, first: bool) -> dict[str, Any] | None:
        if self.thread_root is not None:
            # m.thread with a reply fallback, so clients without threads still show context.
            return {
                "rel_type": "m.thread",
                "event_id": self.thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": self.reply_to},
            }
        if first:
            return {"m.in_reply_to": {"event_id": self.reply_to}}
        return None

    async def send(
        self,
        text: str,
        *,
        first: bool = True,
        msgtype: str = "m.text",
        body: dict[str, Any] | None = None,
    ) -> str:
        """Post ``text`` (Markdown), or the ready ``body`` when given, with the relations."""
        body = dict(body) if body is not None else content(text, msgtype=msgtype)
        relation = self.relation(first)
        if relation is not None:
            body["m.relates_to"] = relation
        return await send_checked(self.client, self.room_id, body)

    async def edit(self, event_id: str, text: str, *, msgtype: str = "m.text") -> None:
        await send_checked(self.client, self.room_id, edit_content(event_id, text, msgtype=msgtype))


class MatrixSurface:
    """A :class:`bot.reply.streamer.ReplySurface` for one reply in a Matrix room.

    Args:
        sender: Posts into the room with the reply's relations.
        pacer: The room's pacer, shared by every reply in that room.
        max_chars: Longest body of one message.
        on_sent: Called with each new event id (the adapter maps it to the session, so a
            reaction on it can stop the reply).
        stats: Counters shared by every surface of the bot.
    """

    def __init__(
        self,
        sender: RoomSender,
        pacer: Pacer,
        *,
        max_chars: int,
        on_sent: Callable[[str], None] | None = None,
        stats: SendStats | None = None,
    ) -> None:
        self._sender = sender
        self._pacer = pacer
        self._max_chars = max_chars
        self._on_sent = on_sent
        self.sent: list[str] = []
        self.stats = stats if stats is not None else SendStats()

    @property
    def max_chars(self) -> int:
        return self._max_chars

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    async def send(self, text: str) -> str:
        try:
            event_id = await self._sender.send(text, first=not self.sent)
        except RateLimited:
            self.stats.rate_limited += 1
            raise
        self.stats.messages += 1
        self.sent.append(event_id)
        if self._on_sent is not None:
            self._on_sent(event_id)
        await self._stop_typing()
        return event_id

    async def edit(self, message_id: str, text: str) -> None:
        try:
            await self._sender.edit(message_id, text)
        except RateLimited:
            self.stats.rate_limited += 1
            raise
        self.stats.edits += 1

    def render_status(self, status: ReplyStatus) -> str:
        return render_status(status)

    async def typing(self) -> None:
        await self._typing(True)

    async def _stop_typing(self) -> None:
        await self._typing(False)

    async def _typing(self, on: bool) -> None:
        # Typing is a courtesy: a failure must not fail the reply, but it is logged.
        try:
            response = await self._sender.client.room_typing(
                self._sender.room_id, typing_state=on, timeout=_TYPING_TIMEOUT_MS
            )
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("typing notification failed in %s: %r", self._sender.room_id, err)
            return
        if not isinstance(response, nio.RoomTypingResponse):
            log.warning("typing notification refused in %s: %s", self._sender.room_id, response)
