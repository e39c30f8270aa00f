"""What an adapter hands the engine: who said what, where. Platform-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ScopeKind(StrEnum):
    """Where a setting applies, from widest to narrowest (after the configured defaults).

    ``SERVER`` is a Discord server or a Matrix space, ``ROOM`` a channel or room, ``THREAD`` a
    thread in one. Moderation is per scope: see :mod:`bot.conversation.permissions`.
    """

    SERVER = "server"
    ROOM = "room"
    THREAD = "thread"


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Identifies one conversation: (platform, room or channel id, thread id or none)."""

    platform: str
    room: str
    thread: str | None = None

    def __str__(self) -> str:
        return f"{self.platform}:{self.room}:{self.thread or '-'}"


@dataclass(frozen=True, slots=True)
class Author:
    """The person behind a turn or a command, and what the platform says they moderate.

    The adapter reports the platform's facts for each scope of the place the event happened
    in; the engine decides what they allow (:mod:`bot.conversation.permissions`).

    Attributes:
        id: The platform's user id.
        name: The display name.
        is_moderator: Moderates every scope of this place (the person at the terminal, a
            configured bot admin).
        moderates: The scopes the platform says they moderate here (Discord: Manage Server
            from their roles, Manage Channels or Manage Threads in this channel; Matrix: the
            power level in this room, or in every room of the space).
    """

    id: str
    name: str
    is_moderator: bool = False
    moderates: frozenset[ScopeKind] = frozenset()


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with a message. ``data`` is the raw bytes, already size-capped."""

    filename: str
    content_type: str
    data: bytes

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def is_text(self) -> bool:
        return self.content_type.startswith("text/") or self.content_type in {
            "application/json",
            "application/xml",
            "application/x-yaml",
        }


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message addressed to the bot.

    Attributes:
        key: The conversation it belongs to.
        author: Who wrote it.
        text: What they wrote, with the bot's mention removed.
        server: The Discord guild or Matrix space, for the settings cascade; ``None`` in DMs.
        attachments: Files that came with it.
        event_id: The platform's id of the message, so the same event is never answered twice.
        chain: Answer as a chain of thought (``cot``): reasoning steps, then the solution.
    """

    key: SessionKey
    author: Author
    text: str
    server: str | None = None
    attachments: tuple[Attachment, ...] = field(default=())
    event_id: str | None = None
    chain: bool = False
