"""What both store drivers read and write alike: rows into dataclasses, values into JSON.

Messages, cut replies, audit entries, channel statistics, settings and the holder of a lease
are read from rows here; setting values and a reply's platform refs are encoded here.

The SQLite and PostgreSQL stores select the same columns in the same order and store the same
JSON; only their SQL dialect, parameter style and driver calls differ, and how a time comes
back: ISO 8601 text from SQLite, a ``datetime`` from asyncpg. A converter that reads a time
takes that difference as ``read_time`` (``datetime.fromisoformat``, or :func:`as_stored`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from bot.errors import LeaseHeld
from bot.store.port import (
    AuditEntry,
    ChannelStats,
    CutReply,
    MessageStatus,
    NewMessage,
    Scope,
    ScopeKind,
    StoredMessage,
)
from bot.turn import SessionKey
from bot.types import Role

__all__ = [
    "AUDIT_COLUMNS",
    "CONTEXT_STATUSES",
    "LEASE_COLUMNS",
    "MESSAGE_COLUMNS",
    "ReadTime",
    "Row",
    "as_stored",
    "decode_refs",
    "decode_value",
    "encode_refs",
    "encode_value",
    "scope_params",
    "thread",
    "to_audit_entries",
    "to_channel_stats",
    "to_cut_replies",
    "to_lease_held",
    "to_settings",
    "to_stored_messages",
    "NEW_MESSAGE_COLUMNS",
    "new_message_values",
]

log = logging.getLogger(__name__)

# In the field order of StoredMessage: to_stored_messages builds it positionally.
MESSAGE_COLUMNS = (
    "id, session_id, role, content, author_id, author_name, prompt_tokens, eval_tokens, "
    "created_at, status, duration"
)
AUDIT_COLUMNS = (
    "id, platform, scope_kind, scope_id, key, old_value, new_value, actor_id, actor_name,"
    " allowed, created_at"
)
LEASE_COLUMNS = "boot, instance, host, pid, acquired_at"
# The columns an appended message fills, in the order of new_message_values.
NEW_MESSAGE_COLUMNS = (
    "session_id, role, content, author_id, author_name, prompt_tokens, eval_tokens, created_at,"
    " status, duration, owner_instance, owner_boot"
)
# Statuses that count as conversation context: errors and half-streamed leftovers do not.
CONTEXT_STATUSES = (
    MessageStatus.COMPLETE,
    MessageStatus.LENGTH,
    MessageStatus.STOPPED,
    MessageStatus.INTERRUPTED,
)
# Plain dict lookups: calling the enum class costs more than the rest of the row conversion.
_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in MessageStatus}

ReadTime = Callable[[Any], datetime]
"""How a driver's time column becomes a ``datetime``."""


class Row(Protocol):
    """A row as either driver returns it (a tuple from aiosqlite, an ``asyncpg.Record``)."""

    def __getitem__(self, index: int, /) -> Any: ...


def new_message_values(
    session_id: int, message: NewMessage, created_at: object, instance: str, boot: int
) -> tuple[Any, ...]:
    """The values of :data:`NEW_MESSAGE_COLUMNS` for ``message``, stamped with its writer.

    ``created_at`` is the driver's own form of the time (SQLite stores text, PostgreSQL a
    ``timestamptz``).
    """
    return (
        session_id,
        message.role.value,
        message.content,
        message.author_id,
        message.author_name,
        message.prompt_tokens,
        message.eval_tokens,
        created_at,
        message.status.value,
        message.duration,
        instance,
        boot,
    )


def as_stored(value: datetime) -> datetime:
    """The ``read_time`` of a driver that returns times as ``datetime`` already (asyncpg)."""
    return value


def thread(key: SessionKey) -> str:
    """The session's thread column: ``""`` for none, so the unique index compares it."""
    return key.thread or ""


def scope_params(scope: Scope) -> tuple[str, str, str]:
    """The (platform, scope_kind, scope_id) columns that name ``scope``."""
    return (scope.platform, scope.kind.value, scope.id)


def to_stored_messages(rows: Sequence[Row], read_time: ReadTime) -> list[StoredMessage]:
    """Rows of :data:`MESSAGE_COLUMNS`, read newest first, as messages oldest first.

    Positional, in the dataclass's field order: context loads build hundreds per turn.
    """
    roles, statuses = _ROLES, _STATUSES
    return [
        StoredMessage(
            row[0],
            row[1],
            roles[row[2]],
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            read_time(row[8]),
            statuses[row[9]],
            row[10],
        )
        for row in reversed(rows)
    ]


def to_cut_replies(rows: Sequence[Row]) -> list[CutReply]:
    """Rows of (message id, platform, room, thread, content, refs, ...) as :class:`CutReply`."""
    return [
        CutReply(
            message_id=int(row[0]),
            key=SessionKey(row[1], row[2], row[3] or None),
            content=row[4],
            refs=decode_refs(row[5]),
        )
        for row in rows
    ]


def to_audit_entries(rows: Sequence[Row], read_time: ReadTime) -> list[AuditEntry]:
    """Rows of :data:`AUDIT_COLUMNS` as :class:`AuditEntry`, in the order read."""
    return [
        AuditEntry(
            id=row[0],
            scope=Scope(row[1], ScopeKind(row[2]), row[3]),
            key=row[4],
            old_value=json.loads(row[5]),
            new_value=json.loads(row[6]),
            actor_id=row[7],
            actor_name=row[8],
            allowed=bool(row[9]),  # SQLite stores 0 or 1
            created_at=read_time(row[10]),
        )
        for row in rows
    ]


def to_channel_stats(row: Row) -> ChannelStats:
    """The row (count, prompt tokens, eval tokens, mean speed or NULL) as :class:`ChannelStats`."""
    return ChannelStats(
        messages=int(row[0]),
        prompt_tokens=int(row[1]),
        eval_tokens=int(row[2]),
        mean_tokens_per_second=None if row[3] is None else float(row[3]),
    )


def to_lease_held(name: str, row: Row, read_time: ReadTime) -> LeaseHeld:
    """The refusal of the lease ``name``, naming its live holder (a row of LEASE_COLUMNS)."""
    return LeaseHeld(name, instance=row[1], host=row[2], pid=int(row[3]), since=read_time(row[4]))


def to_settings(rows: Sequence[Row]) -> dict[str, Any]:
    """Rows of (key, JSON value) as a dict of decoded values."""
    return {row[0]: json.loads(row[1]) for row in rows}


def encode_value(value: Any) -> str | None:
    """A setting's value as stored: JSON, or ``None`` (clear it) for ``None``.

    Raises:
        TypeError: ``value`` cannot be stored as JSON.
    """
    return None if value is None else json.dumps(value)


def decode_value(encoded: str | None) -> Any:
    """A stored setting's value; ``None`` when there is none."""
    return None if encoded is None else json.loads(encoded)


def encode_refs(refs: Sequence[str] | None) -> str | None:
    """A reply's platform message refs as stored (a JSON list); ``None`` keeps the stored ones."""
    return None if refs is None else json.dumps(list(refs))


def decode_refs(encoded: str | None) -> tuple[str, ...]:
    """Stored refs; none when there are none or they cannot be read (logged, never raised)."""
    if not encoded:
        return ()
    try:
        decoded = json.loads(encoded)
    except ValueError:
        log.warning("unreadable message refs ignored: %r", encoded[:100])
        return ()
    if not isinstance(decoded, list):
        return ()
    return tuple(str(ref) for ref in decoded)
