"""The embedded :class:`bot.store.port.Store`: one SQLite file through aiosqlite.

The queries of sessions and messages, cut replies, events and leases. Settings, the audit log,
statistics and adapter state are in :mod:`bot.store.sqlite_settings`; the connection they all
run on, its pragmas, migrations and error translation in :mod:`bot.store.sqlite_db`; which runs
are alive in :mod:`bot.store.sqlite_boots`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.errors import StoreError
from bot.store import sqlite_boots as boots
from bot.store.context import newest_within_budget
from bot.store.failures import no_message
from bot.store.port import CutReply, MessageStatus, NewMessage, StoredMessage
from bot.store.rows import (
    CONTEXT_STATUSES,
    MESSAGE_COLUMNS,
    NEW_MESSAGE_COLUMNS,
    encode_refs,
    new_message_values,
    thread,
    to_cut_replies,
    to_stored_messages,
)
from bot.store.sqlite_db import fetch, insert, migrate, now, run, store_error
from bot.store.sqlite_settings import SqliteSettings
from bot.turn import SessionKey

__all__ = ["SqliteStore", "migrate", "store_error"]

log = logging.getLogger(__name__)

_CONTEXT_SQL = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE session_id = ? AND id < ? AND status IN ("
    + ", ".join("?" * len(CONTEXT_STATUSES))
    + ") ORDER BY id DESC LIMIT ?"
)


class SqliteStore(SqliteSettings):
    """A :class:`bot.store.port.Store` in one SQLite file. Safe for concurrent callers in one loop.

    Use as ``async with SqliteStore(path) as store:`` or call :meth:`open` and :meth:`close`.

    Args:
        path: The database file; its directory is created when missing.
        busy_timeout_ms: How long a statement waits for another process's lock before the
            caller gets "the database is busy".
        instance: This process's name among processes sharing the file; the replies it writes
            carry it (with this run's boot), and after a crash it marks only its own replies.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 5000, instance: str = "main"
    ) -> None:
        super().__init__(path, busy_timeout_ms=busy_timeout_ms)
        self.instance = instance
        self.boot = secrets.randbits(63)
        self._boot_lock = boots.BootLock(
            self.path if isinstance(self.path, Path) else None, self.boot
        )

    async def open(self) -> None:
        """Connect, migrate, and record this run as a live boot (see :mod:`bot.store.sqlite_boots`).

        Raises:
            StoreError: The file cannot be opened, or was written by a newer release.
        """
        if self._db is not None:
            return
        await super().open()
        try:
            self._boot_lock.take()
            async with self._transaction("record boot") as db:
                await boots.open_boot(db, self.boot, self.instance)
        except OSError as exc:
            await super().close()
            self._boot_lock.release()
            raise StoreError(
                "The bot cannot write beside its database file; ask the bot's operator.",
                detail=f"boot lock in {self._boot_lock.directory}: {exc}",
            ) from exc
        except BaseException:
            await super().close()
            self._boot_lock.release()
            raise

    async def close(self) -> None:
        """Record a clean end of this boot (its leases are given up), then close. Idempotent."""
        if self._db is not None:
            try:
                async with self._transaction("record clean close") as db:
                    await boots.close_boot(db, self.boot)
            except StoreError as err:
                # The file may be gone or locked: the boot then ends as a crashed one would.
                log.warning("could not record the store's clean close: %s", err.detail)
        await super().close()
        self._boot_lock.release()

    # Sessions

    async def session_id(self, key: SessionKey) -> int:
        """The id of the current session at ``key``, creating it when there is none."""
        find = (
            "SELECT id FROM sessions WHERE platform = ? AND room = ? AND thread = ? AND active = 1"
            " ORDER BY id DESC LIMIT 1"
        )
        params = (key.platform, key.room, thread(key))
        async with self._op("find session") as db:
            rows = await fetch(db, find, params)
            if rows:
                return int(rows[0][0])
            # OR IGNORE: another process may have created it since; the unique index decides.
            await run(
                db,
                "INSERT OR IGNORE INTO sessions (platform, room, thread, created_at, active)"
                " VALUES (?, ?, ?, ?, 1)",
                (*params, now()),
            )
            return int((await fetch(db, find, params))[0][0])

    async def reset_session(self, key: SessionKey) -> int:
        """Start a fresh session at ``key``; the old one keeps its history. Returns the new id."""
        params = (key.platform, key.room, thread(key))
        async with self._transaction("reset session") as db:
            await run(
                db,
                "UPDATE sessions SET active = 0"
                " WHERE platform = ? AND room = ? AND thread = ? AND active = 1",
                params,
            )
            return await insert(
                db,
                "INSERT INTO sessions (platform, room, thread, created_at, active)"
                " VALUES (?, ?, ?, ?, 1)",
                (*params, now()),
            )

    async def reset_place(self, key: SessionKey) -> int:
        """Start afresh every conversation under ``key``; how many had a session."""
        sql = "UPDATE sessions SET active = 0 WHERE platform = ? AND room = ? AND active = 1"
        params: tuple[str, ...] = (key.platform, key.room)
        if key.thread is not None:
            sql += " AND thread = ?"
            params += (key.thread,)
        async with self._transaction("reset place") as db:
            return max(0, await run(db, sql, params))

    # Messages

    async def append(self, session_id: int, message: NewMessage) -> int:
        """Store a message, stamped with this instance and boot; its id. Committed at once."""
        async with self._op("append message") as db:
            return await insert(
                db,
                f"INSERT INTO messages ({NEW_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_message_values(session_id, message, now(), self.instance, self.boot),
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

        ``refs`` (the platform messages showing it) are stored as a JSON list; ``None`` leaves
        the stored ones.

        Raises:
            StoreError: The database failed, or there is no message ``message_id``.
        """
        encoded = encode_refs(refs)
        async with self._op("update message") as db:
            changed = await run(
                db,
                "UPDATE messages SET content = ?, status = ?, eval_tokens = ?, prompt_tokens = ?,"
                " duration = ?, refs = COALESCE(?, refs) WHERE id = ?",
                (content, status.value, eval_tokens, prompt_tokens, duration, encoded, message_id),
            )
        if changed == 0:
            raise no_message(message_id)

    async def recent_messages(self, session_id: int, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a session (every status), oldest first."""
        if limit <= 0:
            return []
        async with self._op("read messages") as db:
            rows = await fetch(
                db,
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (session_id, limit),
            )
        return to_stored_messages(rows, datetime.fromisoformat)

    async def context_messages(self, session_id: int, char_budget: int) -> list[StoredMessage]:
        """The newest context messages whose contents fit in ``char_budget`` chars, oldest first.

        Reading stops at the first message that does not fit, so the result is always an
        unbroken tail of the conversation. Error and still-streaming messages are skipped.
        """
        async with self._op("load context") as db:

            async def fetch_older(before: int, limit: int) -> list[Any]:
                return await fetch(db, _CONTEXT_SQL, (session_id, before, *CONTEXT_STATUSES, limit))

            picked = await newest_within_budget(fetch_older, char_budget)
        return to_stored_messages(picked, datetime.fromisoformat)

    async def mark_interrupted(self) -> list[CutReply]:
        """Mark this instance's replies left streaming by a gone boot interrupted; returns them.

        A reply is this instance's when it carries this instance's name (or none: written before
        owners were recorded). One transaction: a message is returned exactly when this call
        marked it, and a reply another live process is writing is never touched.
        """
        async with self._transaction("mark interrupted") as db:
            rows = await fetch(
                db,
                # The literal lets SQLite pick the partial index on streaming messages.
                "SELECT m.id, s.platform, s.room, s.thread, m.content, m.refs, m.owner_boot"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE m.status = 'streaming'"
                " AND (m.owner_instance = ? OR m.owner_instance IS NULL) ORDER BY m.id",
                (self.instance,),
            )
            gone = {
                boot: await boots.boot_is_gone(db, self._boot_lock, boot)
                for boot in {row[6] for row in rows}
            }
            cut = [row for row in rows if row[6] == self.boot or gone[row[6]]]
            for row in cut:
                await run(
                    db,
                    "UPDATE messages SET status = ? WHERE id = ?",
                    (MessageStatus.INTERRUPTED.value, row[0]),
                )
        return to_cut_replies(cut)

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record that a platform event is being answered; ``False`` if it already was."""
        async with self._op("claim event") as db:
            inserted = await run(
                db,
                "INSERT OR IGNORE INTO events (platform, event_id, created_at) VALUES (?, ?, ?)",
                (platform, event_id, now()),
            )
        return inserted == 1

    async def release_event(self, platform: str, event_id: str) -> None:
        """Forget a claim whose event was never answered, so a redelivery is answered."""
        async with self._op("release event") as db:
            await run(
                db, "DELETE FROM events WHERE platform = ? AND event_id = ?", (platform, event_id)
            )

    async def prune(self, older_than: datetime, state_prefixes: Sequence[str] = ()) -> int:
        """Delete event claims, and adapter state under ``state_prefixes``, older than a time."""
        cutoff = older_than.astimezone(UTC).isoformat()
        async with self._op("prune") as db:
            deleted = await run(db, "DELETE FROM events WHERE created_at < ?", (cutoff,))
            for prefix in state_prefixes:
                deleted += await run(
                    db,
                    "DELETE FROM state WHERE substr(key, 1, ?) = ? AND updated_at < ?",
                    (len(prefix), prefix, cutoff),
                )
        return deleted

    # Leases

    async def acquire_lease(self, name: str) -> None:
        """Hold the lease ``name`` until this store closes or releases it.

        Raises:
            LeaseHeld: Another live boot holds it (the error names its instance, host and pid).
            StoreError: The database failed.
        """
        async with self._transaction("acquire lease") as db:
            await boots.acquire_lease(db, self._boot_lock, name, self.instance)

    async def running_elsewhere(self) -> list[tuple[str, str, int]]:
        """(instance, host, pid) of the other live stores on this file: running bots."""
        async with self._op("read boots") as db:
            return await boots.live_boots(db, self._boot_lock)

    async def release_lease(self, name: str) -> None:
        """Give the lease ``name`` up, if this store holds it."""
        async with self._op("release lease") as db:
            await boots.release_lease(db, name, self.boot)
