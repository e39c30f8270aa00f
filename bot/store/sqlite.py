"""The embedded :class:`bot.store.port.Store`: one SQLite file through aiosqlite.

The only module that imports ``aiosqlite``. The file runs in WAL mode with
``synchronous=NORMAL`` (a commit is durable against a process crash, and against power loss up to
the last checkpoint, without an fsync per message), ``foreign_keys=ON`` and a ``busy_timeout`` so
a second process holding the lock briefly is waited for instead of failing at once.

One connection serves every caller. aiosqlite runs its statements one at a time on a worker
thread, and an :class:`asyncio.Lock` around each operation keeps a multi-statement transaction
from interleaving with another caller's statements. Driver errors become
:class:`bot.errors.StoreError` here, with a line fit for a chat user and the driver detail for
the logs; the connection stays usable once the cause (a lock, a full disk) goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from bot.errors import StoreError
from bot.store.migrations import LATEST_VERSION, MIGRATIONS
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

__all__ = ["SqliteStore", "migrate", "store_error"]

log = logging.getLogger(__name__)

_MESSAGE_COLUMNS = (
    "id, session_id, role, content, author_id, author_name, prompt_tokens, eval_tokens, "
    "created_at, status, duration"
)
# Statuses that count as conversation context: errors and half-streamed leftovers do not.
_CONTEXT_STATUSES = (MessageStatus.COMPLETE, MessageStatus.STOPPED, MessageStatus.INTERRUPTED)
_CONTEXT_SQL = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages "
    "WHERE session_id = ? AND id < ? AND status IN (?, ?, ?) ORDER BY id DESC LIMIT ?"
)
# context_messages reads newest-first in growing batches: the first usually covers the budget.
_FIRST_BATCH = 32
_MAX_BATCH = 1024
_NO_ID_LIMIT = 2**63 - 1
_WAL_CHECKPOINT_PAGES = 4000

_BUSY = "The bot's database is busy; try again in a moment."
_FULL = "The bot's database is full; ask the bot's operator to free disk space."
_IO = "The bot could not read or write its database (disk I/O error); ask the bot's operator."
_DAMAGED = "The bot's database is damaged; ask the bot's operator to restore it."
_NO_ACCESS = "The bot cannot open or write its database file; ask the bot's operator."
_FAILED = "The bot's database failed; try again, and tell the bot's operator if it persists."
# Primary SQLite result codes (the low byte of an extended code) and what a user is told.
_USER_MESSAGES = {
    5: _BUSY,  # SQLITE_BUSY
    6: _BUSY,  # SQLITE_LOCKED
    13: _FULL,  # SQLITE_FULL
    10: _IO,  # SQLITE_IOERR
    11: _DAMAGED,  # SQLITE_CORRUPT
    26: _DAMAGED,  # SQLITE_NOTADB
    8: _NO_ACCESS,  # SQLITE_READONLY
    14: _NO_ACCESS,  # SQLITE_CANTOPEN
    3: _NO_ACCESS,  # SQLITE_PERM
}


def store_error(exc: sqlite3.Error, operation: str) -> StoreError:
    """Translate a driver error into a :class:`StoreError` (the caller raises it ``from`` exc).

    Args:
        exc: What sqlite3 (through aiosqlite) raised.
        operation: What the store was doing, for the logs ("append message").

    Returns:
        An error whose ``user_message`` says what happened in words a chat user understands
        and whose ``detail`` keeps the driver's code and text.
    """
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    name: str = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    user_message = _USER_MESSAGES.get(code & 0xFF, _FAILED) if code is not None else _FAILED
    return StoreError(user_message, detail=f"SQLite {operation} failed: {name}: {exc}")


# Plain dict lookups: calling the enum class costs more than the rest of the row conversion.
_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in MessageStatus}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _thread(key: SessionKey) -> str:
    return key.thread or ""


def _message(row: Sequence[Any]) -> StoredMessage:
    # Positional, in _MESSAGE_COLUMNS order (the dataclass's field order): context loads build
    # hundreds of these per turn.
    return StoredMessage(
        row[0],
        row[1],
        _ROLES[row[2]],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        datetime.fromisoformat(row[8]),
        _STATUSES[row[9]],
        row[10],
    )


def _refs(encoded: str | None) -> tuple[str, ...]:
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


async def _fetch(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    # execute_fetchall steps the statement to the end in one worker call, so no cursor is left
    # open to pin a read snapshot (which would stall WAL checkpoints).
    return list(await db.execute_fetchall(sql, tuple(params)))


async def _insert(db: aiosqlite.Connection, sql: str, params: Iterable[Any]) -> int:
    row = await db.execute_insert(sql, tuple(params))
    if row is None:  # pragma: no cover - SQLite always answers last_insert_rowid()
        raise StoreError(_FAILED, detail=f"no row id after {sql!r}")
    return int(row[0])


async def _run(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
    cursor = await db.execute(sql, tuple(params))
    return cursor.rowcount


async def _rollback_quietly(db: aiosqlite.Connection) -> None:
    # The worker runs statements in order, so this ROLLBACK (queued before the first suspension,
    # even in a cancelled task) lands after the BEGIN it undoes and before anyone else's work.
    try:
        await db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.debug("rollback after a failed transaction: %s", exc)


async def _apply_migrations(db: aiosqlite.Connection, target: int) -> int:
    await _run(
        db,
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        # IMMEDIATE takes the write lock before reading the version, so two processes opening
        # the same file cannot both apply a step.
        try:
            await _run(db, "BEGIN IMMEDIATE")
            rows = await _fetch(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = int(rows[0][0])
            if current > LATEST_VERSION:
                raise StoreError(
                    "The bot's database was written by a newer version of the bot; upgrade it.",
                    detail=f"schema version {current} > latest known {LATEST_VERSION}",
                )
            if current >= migration.version:
                await _run(db, "ROLLBACK")
                continue
            for statement in migration.statements:
                await _run(db, statement)
            await _run(
                db,
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, _now()),
            )
            await _run(db, "COMMIT")
        except BaseException:
            await _rollback_quietly(db)
            raise
        log.info("database schema migrated to v%d: %s", migration.version, migration.description)
    rows = await _fetch(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(rows[0][0])


async def _connect(path: str | Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    # isolation_level=None: no implicit BEGINs from the sqlite3 module; the store says when a
    # transaction starts (BEGIN IMMEDIATE) and a lone statement commits by itself.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await _run(db, f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await _run(db, "PRAGMA foreign_keys = ON")
        mode = (await _fetch(db, "PRAGMA journal_mode = WAL"))[0][0]
        if mode != "wal" and str(path) != ":memory:":
            log.warning("SQLite journal mode is %s, not wal (the file system may lack it)", mode)
        await _run(db, "PRAGMA synchronous = NORMAL")
        # With synchronous=NORMAL the only fsyncs are at checkpoints; checkpointing every 4,000
        # pages (16 MB of WAL) instead of 1,000 makes them a quarter as frequent.
        await _run(db, f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
    except BaseException:
        await db.close()
        raise
    return db


async def migrate(path: str | Path, *, version: int = LATEST_VERSION) -> int:
    """Bring the database file at ``path`` up to schema ``version`` and close it.

    The store does this itself on :meth:`SqliteStore.open`; this is for tools and for tests that
    need a database as an older release left it.

    Args:
        path: The SQLite file; created when missing.
        version: The schema version to stop at (never goes back).

    Returns:
        The schema version the file has now.

    Raises:
        StoreError: The file cannot be opened or migrated.
    """
    try:
        db = await _connect(path, 5000)
        try:
            return await _apply_migrations(db, version)
        finally:
            await db.close()
    except sqlite3.Error as exc:
        raise store_error(exc, "migrate") from exc


class SqliteStore:
    """A :class:`bot.store.port.Store` in one SQLite file. Safe for concurrent callers in one loop.

    Use as ``async with SqliteStore(path) as store:`` or call :meth:`open` and :meth:`close`.

    Args:
        path: The database file; its directory is created when missing.
        busy_timeout_ms: How long a statement waits for another process's lock before the
            caller gets "the database is busy".
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, set the pragmas and apply pending migrations.

        Raises:
            StoreError: The file cannot be opened, or was written by a newer release.
        """
        if self._db is not None:
            return
        if isinstance(self.path, Path):
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        try:
            db = await _connect(self.path, self.busy_timeout_ms)
            try:
                version = await _apply_migrations(db, LATEST_VERSION)
            except BaseException:
                await db.close()
                raise
        except sqlite3.Error as exc:
            raise store_error(exc, "open") from exc
        self._db = db
        log.info("store open at %s (schema v%d)", self.path, version)

    async def close(self) -> None:
        """Close the connection; waits for a running operation. Idempotent."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    @asynccontextmanager
    async def _op(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection for one operation, translating driver errors."""
        async with self._lock:
            if self._db is None:
                raise RuntimeError("SqliteStore is not open; call open() first")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise store_error(exc, operation) from exc

    @asynccontextmanager
    async def _transaction(self, operation: str) -> AsyncIterator[aiosqlite.Connection]:
        """Like :meth:`_op`, inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        async with self._op(operation) as db:
            # BEGIN inside the try: a caller cancelled while BEGIN is queued must still roll
            # back, or the connection stays in a transaction every later caller trips over.
            try:
                await _run(db, "BEGIN IMMEDIATE")
                yield db
                await _run(db, "COMMIT")
            except BaseException:
                await _rollback_quietly(db)
                raise

    async def diagnostics(self) -> dict[str, int | str]:
        """The connection's settings and schema version, for a health check or the logs.

        Returns:
            ``schema_version``, ``journal_mode``, ``synchronous`` (1 is NORMAL),
            ``foreign_keys`` (1 is on), ``busy_timeout`` (ms) and ``wal_autocheckpoint`` (pages).
        """
        found: dict[str, int | str] = {}
        async with self._op("read diagnostics") as db:
            rows = await _fetch(db, "SELECT MAX(version) FROM schema_version")
            found["schema_version"] = int(rows[0][0])
            for pragma in (
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "wal_autocheckpoint",
            ):
                found[pragma] = (await _fetch(db, f"PRAGMA {pragma}"))[0][0]
        return found

    # Sessions

    async def session_id(self, key: SessionKey) -> int:
        """The id of the current session at ``key``, creating it when there is none."""
        find = (
            "SELECT id FROM sessions WHERE platform = ? AND room = ? AND thread = ? AND active = 1"
            " ORDER BY id DESC LIMIT 1"
        )
        params = (key.platform, key.room, _thread(key))
        async with self._op("find session") as db:
            rows = await _fetch(db, find, params)
            if rows:
                return int(rows[0][0])
            # OR IGNORE: another process may have created it since; the unique index decides.
            await _run(
                db,
                "INSERT OR IGNORE INTO sessions (platform, room, thread, created_at, active)"
                " VALUES (?, ?, ?, ?, 1)",
                (*params, _now()),
            )
            return int((await _fetch(db, find, params))[0][0])

    async def reset_session(self, key: SessionKey) -> int:
        """Start a fresh session at ``key``; the old one keeps its history. Returns the new id."""
        params = (key.platform, key.room, _thread(key))
        async with self._transaction("reset session") as db:
            await _run(
                db,
                "UPDATE sessions SET active = 0"
                " WHERE platform = ? AND room = ? AND thread = ? AND active = 1",
                params,
            )
            return await _insert(
                db,
                "INSERT INTO sessions (platform, room, thread, created_at, active)"
                " VALUES (?, ?, ?, ?, 1)",
                (*params, _now()),
            )

    # Messages

    async def append(self, session_id: int, message: NewMessage) -> int:
        """Store a message in a session; returns its id. One statement, committed at once."""
        async with self._op("append message") as db:
            return await _insert(
                db,
                "INSERT INTO messages (session_id, role, content, author_id, author_name,"
                " prompt_tokens, eval_tokens, created_at, status, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    message.role.value,
                    message.content,
                    message.author_id,
                    message.author_name,
                    message.prompt_tokens,
                    message.eval_tokens,
                    _now(),
                    message.status.value,
                    message.duration,
                ),
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
        encoded = None if refs is None else json.dumps(list(refs))
        async with self._op("update message") as db:
            changed = await _run(
                db,
                "UPDATE messages SET content = ?, status = ?, eval_tokens = ?, prompt_tokens = ?,"
                " duration = ?, refs = COALESCE(?, refs) WHERE id = ?",
                (content, status.value, eval_tokens, prompt_tokens, duration, encoded, message_id),
            )
        if changed == 0:
            raise StoreError("The bot could not save its reply.", detail=f"no message {message_id}")

    async def recent_messages(self, session_id: int, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages of a session (every status), oldest first."""
        if limit <= 0:
            return []
        async with self._op("read messages") as db:
            rows = await _fetch(
                db,
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (session_id, limit),
            )
        return [_message(row) for row in reversed(rows)]

    async def context_messages(self, session_id: int, char_budget: int) -> list[StoredMessage]:
        """The newest context messages whose contents fit in ``char_budget`` chars, oldest first.

        Reading stops at the first message that does not fit, so the result is always an
        unbroken tail of the conversation. Error and still-streaming messages are skipped.
        """
        picked: list[Sequence[Any]] = []
        used = 0
        before = _NO_ID_LIMIT
        batch = _FIRST_BATCH
        async with self._op("load context") as db:
            while used < char_budget:
                rows = await _fetch(
                    db, _CONTEXT_SQL, (session_id, before, *_CONTEXT_STATUSES, batch)
                )
                for row in rows:
                    used += len(row[3])
                    if used > char_budget:
                        break
                    picked.append(row)
                if used > char_budget or len(rows) < batch:
                    break
                before = rows[-1][0]
                # Size the next read from the mean message so far, with a quarter to spare: one
                # more read is usually the last, and few rows are read only to be dropped.
                mean = max(used // len(picked), 1)
                batch = min(_FIRST_BATCH + 5 * (char_budget - used) // (4 * mean), _MAX_BATCH)
        return [_message(row) for row in reversed(picked)]

    async def mark_interrupted(self) -> list[CutReply]:
        """Mark every message left streaming (by a crash) interrupted; returns them, by id.

        One transaction: a message is returned exactly when this call marked it.
        """
        async with self._transaction("mark interrupted") as db:
            rows = await _fetch(
                db,
                # The literal lets SQLite pick the partial index on streaming messages.
                "SELECT m.id, s.platform, s.room, s.thread, m.content, m.refs"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE m.status = 'streaming' ORDER BY m.id",
            )
            await _run(
                db,
                "UPDATE messages SET status = ? WHERE status = 'streaming'",
                (MessageStatus.INTERRUPTED.value,),
            )
        return [
            CutReply(
                message_id=int(row[0]),
                key=SessionKey(row[1], row[2], row[3] or None),
                content=row[4],
                refs=_refs(row[5]),
            )
            for row in rows
        ]

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record that a platform event is being answered; ``False`` if it already was."""
        async with self._op("claim event") as db:
            inserted = await _run(
                db,
                "INSERT OR IGNORE INTO events (platform, event_id, created_at) VALUES (?, ?, ?)",
                (platform, event_id, _now()),
            )
        return inserted == 1

    # Settings and audit

    async def get_settings(self, scope: Scope) -> dict[str, Any]:
        """Every setting stored at exactly ``scope`` (no cascade), JSON-decoded."""
        async with self._op("read settings") as db:
            rows = await _fetch(
                db,
                "SELECT key, value FROM settings"
                " WHERE platform = ? AND scope_kind = ? AND scope_id = ?",
                (scope.platform, scope.kind.value, scope.id),
            )
        return {key: json.loads(value) for key, value in rows}

    async def set_setting(self, scope: Scope, key: str, value: Any) -> Any:
        """Set (or, with ``None``, clear) one setting; returns the old value (``None`` if unset).

        Raises:
            TypeError: ``value`` cannot be stored as JSON.
            StoreError: The database failed.
        """
        encoded = None if value is None else json.dumps(value)
        where = (scope.platform, scope.kind.value, scope.id, key)
        async with self._transaction("write setting") as db:
            rows = await _fetch(
                db,
                "SELECT value FROM settings"
                " WHERE platform = ? AND scope_kind = ? AND scope_id = ? AND key = ?",
                where,
            )
            if encoded is None:
                await _run(
                    db,
                    "DELETE FROM settings"
                    " WHERE platform = ? AND scope_kind = ? AND scope_id = ? AND key = ?",
                    where,
                )
            else:
                await _run(
                    db,
                    "INSERT INTO settings (platform, scope_kind, scope_id, key, value, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, scope_kind, scope_id, key)"
                    " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (*where, encoded, _now()),
                )
        return json.loads(rows[0][0]) if rows else None

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
    ) -> None:
        """Log a settings change, or a refused attempt (``allowed=False``)."""
        async with self._op("write audit") as db:
            await _run(
                db,
                "INSERT INTO audit (platform, scope_kind, scope_id, key, old_value, new_value,"
                " actor_id, actor_name, allowed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scope.platform,
                    scope.kind.value,
                    scope.id,
                    key,
                    json.dumps(old_value),
                    json.dumps(new_value),
                    actor_id,
                    actor_name,
                    int(allowed),
                    _now(),
                ),
            )

    async def audit_log(self, scope: Scope | None = None, limit: int = 50) -> list[AuditEntry]:
        """The last ``limit`` audit entries, of ``scope`` or of every scope, newest first."""
        sql = (
            "SELECT id, platform, scope_kind, scope_id, key, old_value, new_value, actor_id,"
            " actor_name, allowed, created_at FROM audit"
        )
        params: tuple[Any, ...] = (limit,)
        if scope is not None:
            sql += " WHERE platform = ? AND scope_kind = ? AND scope_id = ?"
            params = (scope.platform, scope.kind.value, scope.id, limit)
        async with self._op("read audit") as db:
            rows = await _fetch(db, sql + " ORDER BY id DESC LIMIT ?", params)
        return [
            AuditEntry(
                id=row[0],
                scope=Scope(row[1], ScopeKind(row[2]), row[3]),
                key=row[4],
                old_value=json.loads(row[5]),
                new_value=json.loads(row[6]),
                actor_id=row[7],
                actor_name=row[8],
                allowed=bool(row[9]),
                created_at=datetime.fromisoformat(row[10]),
            )
            for row in rows
        ]

    async def channel_stats(self, platform: str, room: str) -> ChannelStats:
        """Messages and tokens of every session of a room, and the mean reply speed.

        ``mean_tokens_per_second`` averages ``eval_tokens / duration`` over the assistant
        messages that have a duration; ``None`` when there are none.
        """
        async with self._op("read stats") as db:
            rows = await _fetch(
                db,
                "SELECT COUNT(*), COALESCE(SUM(m.prompt_tokens), 0),"
                " COALESCE(SUM(m.eval_tokens), 0),"
                " AVG(CASE WHEN m.role = ? AND m.duration > 0 THEN m.eval_tokens / m.duration END)"
                " FROM messages AS m JOIN sessions AS s ON s.id = m.session_id"
                " WHERE s.platform = ? AND s.room = ?",
                (Role.ASSISTANT.value, platform, room),
            )
        count, prompt_tokens, eval_tokens, speed = rows[0]
        return ChannelStats(
            messages=int(count),
            prompt_tokens=int(prompt_tokens),
            eval_tokens=int(eval_tokens),
            mean_tokens_per_second=None if speed is None else float(speed),
        )

    # Adapter state

    async def get_state(self, key: str) -> str | None:
        """Adapter state that survives restarts (sync tokens, command hashes)."""
        async with self._op("read state") as db:
            rows = await _fetch(db, "SELECT value FROM state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_state(self, key: str, value: str) -> None:
        """Store adapter state under ``key``, replacing what was there."""
        async with self._op("write state") as db:
            await _run(
                db,
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, _now()),
            )
