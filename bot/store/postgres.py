"""The :class:`bot.store.port.Store` on a PostgreSQL server, shared by several bot processes.

The queries of sessions and messages, cut replies and events; settings, the audit log,
statistics and adapter state are in :mod:`bot.store.postgres_settings`; the pool, the boot's
liveness lock, leases, migrations and error translation in :mod:`bot.store.postgres_db`.
Whatever must be atomic across processes is one statement or one transaction, never a lock in
memory:

- claiming an event is ``INSERT ... ON CONFLICT DO NOTHING``: exactly one process gets the row;
- replies are stamped with the instance and boot that write them, and
  :meth:`PostgresStore.mark_interrupted` marks only this instance's replies whose writer is gone,
  never one another live process is still writing;
- a lease (the one Matrix sync of an account) is a row naming the boot holding it: a live holder
  refuses everyone else, a gone one is replaced;
- settings are read from the database on every turn (nothing is cached), so a change made through
  one process is in force in the others from their next turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.store.context import newest_within_budget
from bot.store.failures import no_message
from bot.store.port import CutReply, MessageStatus, NewMessage, StoredMessage
from bot.store.postgres_db import LOCK_NAMESPACE, Row, now, pg_store_error, redact_url
from bot.store.postgres_settings import PostgresSettings
from bot.store.rows import (
    CONTEXT_STATUSES,
    MESSAGE_COLUMNS,
    NEW_MESSAGE_COLUMNS,
    as_stored,
    encode_refs,
    new_message_values,
    thread,
    to_cut_replies,
    to_stored_messages,
)
from bot.turn import SessionKey

__all__ = ["PostgresStore", "pg_store_error", "redact_url"]

# The statuses as literals, SQLite's set: the planner sees them when it prepares the statement.
_CONTEXT_SQL = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND id < $2 AND status IN ("
    + ", ".join(f"'{status.value}'" for status in CONTEXT_STATUSES)
    + ") ORDER BY id DESC LIMIT $3"
)


class PostgresStore(PostgresSettings):
    """A :class:`bot.store.port.Store` on PostgreSQL. Safe for concurrent callers and processes.

    Use as ``async with PostgresStore(url, instance="shards-0") as store:``; the arguments are
    :class:`bot.store.postgres_db.PostgresDatabase`'s.
    """

    # Sessions

    async def session_id(self, key: SessionKey) -> int:
        """The id of the current session at ``key``, creating it when there is none."""
        params = (key.platform, key.room, thread(key))
        find = (
            "SELECT id FROM sessions WHERE platform = $1 AND room = $2 AND thread = $3 AND active"
        )
        async with self.op("find session") as conn:
            found = await conn.fetchval(find, *params)
            if found is not None:
                return int(found)
            # Another process may create it meanwhile: the unique index decides, then re-read.
            await conn.execute(
                "INSERT INTO sessions (platform, room, thread, created_at, active)"
                " VALUES ($1, $2, $3, $4, TRUE) ON CONFLICT DO NOTHING",
                *params,
                now(),
            )
            return int(await conn.fetchval(find, *params))

    async def reset_session(self, key: SessionKey) -> int:
        """Start a fresh session at ``key``; the old one keeps its history. Returns the new id."""
        params = (key.platform, key.room, thread(key))
        async with self.transaction("reset session") as conn:
            # Resets of one key, from any process, take turns: the second sees the first's row.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                LOCK_NAMESPACE,
                "\x1f".join(params),
            )
            await conn.execute(
                "UPDATE sessions SET active = FALSE"
                " WHERE platform = $1 AND room = $2 AND thread = $3 AND active",
                *params,
            )
            return int(
                await conn.fetchval(
                    "INSERT INTO sessions (platform, room, thread, created_at, active)"
                    " VALUES ($1, $2, $3, $4, TRUE) RETURNING id",
                    *params,
                    now(),
                )
            )

    # Messages

    async def reset_place(self, key: SessionKey) -> int:
        """Start afresh every conversation under ``key``; how many had a session."""
        sql = "UPDATE sessions SET active = FALSE WHERE platform = $1 AND room = $2 AND active"
        args: list[str] = [key.platform, key.room]
        if key.thread is not None:
            sql += " AND thread = $3"
            args.append(key.thread)
        async with self.transaction("reset place") as conn:
            status = await conn.execute(sql, *args)
        return _count(status)

    async def append(self, session_id: int, message: NewMessage) -> int:
        """Store a message in a session, stamped with this instance and boot; returns its id."""
        async with self.op("append message") as conn:
            return int(
                await conn.fetchval(
                    f"INSERT INTO messages ({NEW_MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5,"
                    " $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                    *new_message_values(session_id, message, now(), self.instance, self.boot),
                )
            )

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

        Raises:
            StoreError: The database failed, or there is no message ``message_id``.
        """
        encoded = encode_refs(refs)
        async with self.op("update message") as conn:
            result = await conn.execute(
                "UPDATE messages SET content = $1, status = $2, eval_tokens = $3,"
                " prompt_tokens = $4, duration = $5, refs = COALESCE($6, refs) WHERE id = $7",
                content,
                status.value,
                eval_tokens,
                prompt_tokens,
                duration,
                encoded,
                message_id,
            )
        if result == "UPDATE 0":
            raise no_message(message_id)

    async def recent_messages(self, session_id: int, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a session (every status), oldest first."""
        if limit <= 0:
            return []
        async with self.op("read messages") as conn:
            rows = await conn.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1"
                " ORDER BY id DESC LIMIT $2",
                session_id,
                limit,
            )
        return to_stored_messages(rows, as_stored)

    async def context_messages(self, session_id: int, char_budget: int) -> list[StoredMessage]:
        """The newest context messages whose contents fit in ``char_budget`` chars, oldest first.

        The same unbroken tail as :meth:`bot.store.sqlite.SqliteStore.context_messages`, read
        newest first in growing batches.
        """
        async with self.op("load context") as conn:

            async def fetch_older(before: int, limit: int) -> list[Row]:
                return await conn.fetch(_CONTEXT_SQL, session_id, before, limit)

            picked = await newest_within_budget(fetch_older, char_budget)
        return to_stored_messages(picked, as_stored)

    async def mark_interrupted(self) -> list[CutReply]:
        """Mark this instance's replies left streaming by a dead boot interrupted; returns them.

        A reply is this instance's when it carries this instance's name (or none: written before
        owners were recorded). Its writer is dead when nobody holds the writer's boot lock, or
        when the writer is this very store (nothing of its own is streaming at start-up). A
        reply another live process is writing is never touched, even one with the same name.
        """
        async with self.transaction("mark interrupted") as conn:
            # FOR UPDATE: two processes recovering at once each get a reply at most once.
            rows = await conn.fetch(
                "SELECT m.id, s.platform, s.room, s.thread, m.content, m.refs, m.owner_boot"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE m.status = 'streaming'"
                " AND (m.owner_instance = $1 OR m.owner_instance IS NULL)"
                " ORDER BY m.id FOR UPDATE OF m",
                self.instance,
            )
            gone = {boot: await self.boot_is_gone(conn, boot) for boot in {row[6] for row in rows}}
            cut = [row for row in rows if row[6] == self.boot or gone[row[6]]]
            await conn.execute(
                "UPDATE messages SET status = 'interrupted' WHERE id = ANY($1::bigint[])",
                [row[0] for row in cut],
            )
        return to_cut_replies(cut)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record that a platform event is being answered; ``False`` if any process already did."""
        async with self.op("claim event") as conn:
            result = await conn.execute(
                "INSERT INTO events (platform, event_id, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING",
                platform,
                event_id,
                now(),
            )
        return bool(result == "INSERT 0 1")

    async def release_event(self, platform: str, event_id: str) -> None:
        """Forget a claim whose event was never answered, so a redelivery is answered."""
        async with self.op("release event") as conn:
            await conn.execute(
                "DELETE FROM events WHERE platform = $1 AND event_id = $2", platform, event_id
            )

    async def prune(self, older_than: datetime, state_prefixes: Sequence[str] = ()) -> int:
        """Delete event claims, and adapter state under ``state_prefixes``, older than a time."""
        async with self.op("prune") as conn:
            result = await conn.execute("DELETE FROM events WHERE created_at < $1", older_than)
            deleted = _count(result)
            for prefix in state_prefixes:
                result = await conn.execute(
                    "DELETE FROM state WHERE left(key, $1) = $2 AND updated_at < $3",
                    len(prefix),
                    prefix,
                    older_than,
                )
                deleted += _count(result)
        return deleted


def _count(status: str) -> int:
    """The row count of a command status such as ``"DELETE 3"``."""
    return int(status.rsplit(" ", 1)[-1])
