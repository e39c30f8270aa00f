"""Reading a Matrix message event and deciding whether the bot is addressed.

Pure functions over the event's JSON (``event.source``): no client, no I/O, so every rule is
tested without a homeserver. The caller looks up the facts that need state (is this a direct
room, is the replied-to event the bot's, is this thread one the bot answers in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from adapters.matrix.media import MEDIA_TYPES, Media, parse_media

__all__ = ["Facts", "Incoming", "Reason", "addressed", "parse_message", "strip_mention"]


class Reason(StrEnum):
    """Why the bot answers a message."""

    MENTION = "mention"
    DIRECT = "direct"
    REPLY = "reply"
    THREAD = "thread"


@dataclass(frozen=True, slots=True)
class Incoming:
    """The parts of an ``m.room.message`` event the adapter needs.

    Attributes:
        event_id: The event's id.
        sender: Who sent it.
        body: Plain text, with a legacy reply fallback (leading ``> `` lines) removed.
        formatted_body: HTML body, if any (pills live there).
        mentioned_user_ids: ``m.mentions.user_ids``.
        thread_root: The thread root when the message is in a thread.
        reply_to: The event it really replies to (not a thread's fallback reply).
        is_edit: An ``m.replace`` edit (never answered: the original was).
        msgtype: ``m.text``, ``m.notice``, ``m.emote``, ``m.image``, ``m.file``...
        media: The file of an ``m.image``/``m.file`` message (then ``body`` is its caption).
    """

    event_id: str
    sender: str
    body: str
    formatted_body: str | None
    mentioned_user_ids: frozenset[str]
    thread_root: str | None
    reply_to: str | None
    is_edit: bool
    msgtype: str
    media: Media | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the caller knows about the room and the message's relations."""

    bot_user_id: str
    bot_display_name: str | None
    is_direct: bool
    reply_to_is_bot: bool
    thread_is_bot: bool


def _strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def parse_message(source: dict[str, Any]) -> Incoming | None:
    """Read an ``m.room.message`` event; ``None`` for anything else or a malformed one."""
    if source.get("type") != "m.room.message":
        return None
    content = source.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("body"), str):
        return None
    relates = content.get("m.relates_to")
    relates = relates if isinstance(relates, dict) else {}
    rel_type = relates.get("rel_type")
    thread_root = relates.get("event_id") if rel_type == "m.thread" else None
    in_reply = relates.get("m.in_reply_to")
    reply_to = in_reply.get("event_id") if isinstance(in_reply, dict) else None
    if rel_type == "m.thread" and relates.get("is_falling_back", False):
        reply_to = None  # the thread's fallback points at its latest event, not a real reply
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
    if not isinstance(user_ids, list):
        # Anyone can send any JSON here ("user_ids": null, 5...): only a list is read.
        user_ids = []
    body: str = content["body"]
    if reply_to is not None:
        body = _strip_reply_fallback(body)
    media = None
    msgtype = content.get("msgtype")
    if isinstance(msgtype, str) and msgtype in MEDIA_TYPES:
        parsed = parse_media(content)
        if parsed is None:
            return None  # a file message without a usable file
        media, body = parsed
    formatted = content.get("formatted_body")
    return Incoming(
        event_id=str(source.get("event_id", "")),
        sender=str(source.get("sender", "")),
        body=body,
        formatted_body=formatted if isinstance(formatted, str) else None,
        mentioned_user_ids=frozenset(u for u in user_ids if isinstance(u, str)),
        thread_root=thread_root if isinstance(thread_root, str) else None,
        reply_to=reply_to if isinstance(reply_to, str) else None,
        is_edit=rel_type == "m.replace",
        msgtype=str(content.get("msgtype", "")),
        media=media,
    )


def _names(bot_user_id: str, display_name: str | None) -> list[str]:
    names = [bot_user_id, bot_user_id.split(":", 1)[0].lstrip("@")]
    if display_name:
        names.append(display_name)
    return [n for n in names if n]


def _mentions_in_text(message: Incoming, facts: Facts) -> bool:
    if message.formatted_body and f"matrix.to/#/{facts.bot_user_id}" in message.formatted_body:
        return True
    for name in _names(facts.bot_user_id, facts.bot_display_name):
        if re.search(rf"(?<![\w@]){re.escape(name)}(?![\w])", message.body, re.IGNORECASE):
            return True
    return False


def addressed(message: Incoming, facts: Facts) -> Reason | None:
    """Why the bot should answer ``message``, or ``None`` when it should stay quiet.

    The caller has already dropped the bot's own messages and ignored users.
    """
    if message.is_edit or message.msgtype not in {"m.text", "m.emote", *MEDIA_TYPES}:
        return None
    if facts.bot_user_id in message.mentioned_user_ids or _mentions_in_text(message, facts):
        return Reason.MENTION
    if facts.is_direct:
        return Reason.DIRECT
    if facts.reply_to_is_bot:
        return Reason.REPLY
    if message.thread_root is not None and facts.thread_is_bot:
        return Reason.THREAD
    return None


def strip_mention(text: str, bot_user_id: str, display_name: str | None) -> str:
    """``text`` without a leading address to the bot ("ollabot: hi" -> "hi")."""
    for name in sorted(_names(bot_user_id, display_name), key=len, reverse=True):
        pattern = rf"^\s*@?{re.escape(name.lstrip('@'))}\s*[:,]?\s*"
        stripped = re.sub(pattern, "", text, count=1, flags=re.IGNORECASE)
        if stripped != text:
            return stripped.strip()
    return text.strip()
