"""The port to persistent storage: sessions, messages, settings per scope, an audit log.

``SqliteStore`` (in :mod:`bot.store.sqlite`) is the embedded default; a server database can
replace it by implementing :class:`Store`. Every method raises :class:`bot.errors.StoreError`
when the database fails (locked, disk full), never a driver exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.turn import ScopeKind as ScopeKind  # re-exported: the store's own vocabulary
from bot.turn import SessionKey
from bot.types import Outcome, Role


class MessageStatus(StrEnum):
    """A stored message's state: an :class:`Outcome`, or still streaming (crash leftovers)."""

    COMPLETE = "complete"
    LENGTH = "length"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    STREAMING = "streaming"

    @classmethod
    def of(cls, outcome: Outcome) -> MessageStatus:
        return cls(outcome.value)


@dataclass(frozen=True, slots=True)
class Scope:
    """A place settings can be attached to, e.g. (discord, room, "1234")."""

    platform: str
    kind: ScopeKind
    id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as stored. ``status`` is the outcome for assistant messages."""

    id: int
    session_id: int
    role: Role
    content: str
    author_id: str | None
    author_name: str | None
    prompt_tokens: int
    eval_tokens: int
    created_at: datetime
    status: MessageStatus
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append. ``status`` defaults to complete."""

    role: Role
    content: str
    author_id: str | None = None
    author_name: str | None = None
    prompt_tokens: int = 0
    eval_tokens: int = 0
    status: MessageStatus = MessageStatus.COMPLETE
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class CutReply:
    """An assistant reply a crash left half-written, as :meth:`Store.mark_interrupted` found it.

    Attributes:
        message_id: The stored message's id.
        key: The conversation it belongs to (platform, room, thread).
        content: The text saved before the crash.
        refs: The platform messages that show it, in order, as the adapter's surface named
            them (empty when none was sent, or the store predates refs).
    """

    message_id: int
    key: SessionKey
    content: str
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One settings change (or refused attempt) by someone."""

    id: int
    scope: Scope
    key: str
    old_value: Any
    new_value: Any
    actor_id: str
    actor_name: str
    allowed: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Counters for one room/channel across all of its sessions."""

    messages: int
    prompt_tokens: int
    eval_tokens: int
    mean_tokens_per_second: float | None


class Store(Protocol):
    """Persistent state of the bot. Implementations must be safe for concurrent callers."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        ...

    async def close(self) -> None: ...

    async def session_id(self, key: SessionKey) -> int:
        """The id of the current session at ``key``, creating it when there is none."""
        ...

    async def reset_session(self, key: SessionKey) -> int:
        """Start a fresh session at ``key`` (old history kept but no longer used); its id."""
        ...

    async def reset_place(self, key: SessionKey) -> int:
        """Start afresh every conversation under ``key``; how many had a session.

        With a thread, that thread's conversation; without, the room's own and every thread's
        (or reply chain's) in it. Old history is kept but no longer used; the next message in
        each starts a new session.
        """
        ...

    async def append(self, session_id: int, message: NewMessage) -> int:
        """Store a message; returns its id."""
        ...

    async def update_message(
        self,
        message_id: int,
        *,
        content: str,
        status: MessageStatus,
        eval_tokens: int = 0,
        prompt_tokens: int = 0,
        duration: float | None = None,
        refs: Sequence[str] | None = None,
    ) -> None:
        """Set the text and outcome of a message stored while it was streaming.

        ``refs`` are the platform messages showing it (``None`` leaves the stored ones).
        """
        ...

    async def recent_messages(self, session_id: int, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a session, oldest first."""
        ...

    async def context_messages(self, session_id: int, char_budget: int) -> list[StoredMessage]:
        """The newest messages whose content fits in ``char_budget`` characters, oldest first.

        Only complete, stopped and interrupted replies and user messages are returned (errors
        are not context).
        """
        ...

    async def mark_interrupted(self) -> list[CutReply]:
        """Mark this instance's replies left streaming by a crash interrupted; those, by id.

        Every stored message records the instance (the store's ``instance`` name) and the boot
        (one run of a process) that wrote it. Only replies of this instance whose boot is gone
        are marked: never a reply another live process is still writing.
        """
        ...

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record that a platform event is being answered; ``False`` if it was already.

        Atomic across every process sharing the database: exactly one claim succeeds.
        """
        ...

    async def acquire_lease(self, name: str) -> None:
        """Hold the lease ``name`` (e.g. the one Matrix sync of an account) while open.

        A lease whose holder's process is gone is taken over.

        Raises:
            bot.errors.LeaseHeld: Another live process holds it.
        """
        ...

    async def release_lease(self, name: str) -> None:
        """Give up the lease ``name`` if this store holds it (closing the store does too)."""
        ...

    async def release_event(self, platform: str, event_id: str) -> None:
        """Forget a claim whose event was never answered (cancelled while it waited)."""
        ...

    async def prune(self, older_than: datetime, state_prefixes: Sequence[str] = ()) -> int:
        """Delete what only matters for a while; returns how many rows went.

        Event claims made before ``older_than`` (platforms do not redeliver events that old),
        and adapter state under one of ``state_prefixes`` last written before it. Messages,
        settings and the audit log are kept.
        """
        ...

    async def get_settings(self, scope: Scope) -> dict[str, Any]: ...

    async def set_setting(self, scope: Scope, key: str, value: Any) -> Any:
        """Set (or, with ``None``, clear) one setting; returns the old value."""
        ...

    async def audit(
        self,
        scope: Scope,
        key: str,
        old_value: Any,
        new_value: Any,
        *,
        actor_id: str,
        actor_name: str,
        allowed: bool,
    ) -> None: ...

    async def audit_log(self, scope: Scope | None = None, limit: int = 50) -> list[AuditEntry]: ...

    async def channel_stats(self, platform: str, room: str) -> ChannelStats: ...

    async def get_state(self, key: str) -> str | None:
        """Adapter state that must survive restarts (sync tokens, command hashes)."""
        ...

    async def set_state(self, key: str, value: str) -> None: ...
