"""The SQLite connection under :class:`bot.store.sqlite.SqliteStore`: pragmas, migrations, errors.

The file runs in WAL mode with ``synchronous=NORMAL`` (a commit is durable against a process
crash, and against power loss up to the last checkpoint, without an fsync per message),
``foreign_keys=ON`` and a ``busy_timeout`` so a second process holding the lock briefly is
waited for instead of failing at once.

One connection serves every caller. aiosqlite runs its statements one at a time on a worker
thread, and an :class:`asyncio.Lock` around each operation keeps a multi-statement transaction
from interleaving with another caller's statements. Driver errors become
:class:`bot.errors.StoreError` here, with a line fit for a chat user and the driver detail for
the logs; the connection stays usable once the cause (a lock, a full disk) goes away.
"""

from __future__ import annotations

import asyncio
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
from bot.store.failures import BUSY, DAMAGED, FAILED, FULL, newer_schema
from bot.store.migrations.sqlite import LATEST_VERSION, MIGRATIONS

__all__ = ["SqliteDatabase", "fetch", "insert", "migrate", "now", "run", "store_error"]

log = logging.getLogger("bot.store.sqlite")

WAL_CHECKPOINT_PAGES = 4000

_IO = "The bot could not read or write its database (disk I/O error); ask the bot's operator."
_NO_ACCESS = "The bot cannot open or write its database file; ask the bot's operator."
# Primary SQLite result codes (the low byte of an extended code) and what a user is told.
_USER_MESSAGES = {
    5: BUSY,  # SQLITE_BUSY
    6: BUSY,  # SQLITE_LOCKED
    13: FULL,  # SQLITE_FULL
    10: _IO,  # SQLITE_IOERR
    11: DAMAGED,  # SQLITE_CORRUPT
    26: DAMAGED,  # SQLITE_NOTADB
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
    user_message = _USER_MESSAGES.get(code & 0xFF, FAILED) if code is not None else FAILED
    return StoreError(user_message, detail=f"SQLite {operation} failed: {name}: {exc}")


def now() -> str:
    """The current time as stored (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat()


async def fetch(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    # execute_fetchall steps the statement to the end in one worker call, so no cursor is left
    # open to pin a read snapshot (which would stall WAL checkpoints).
    return list(await db.execute_fetchall(sql, tuple(params)))


async def insert(db: aiosqlite.Connection, sql: str, params: Iterable[Any]) -> int:
    row = await db.execute_insert(sql, tuple(params))
    if row is None:  # pragma: no cover - SQLite always answers last_insert_rowid()
        raise StoreError(FAILED, detail=f"no row id after {sql!r}")
    return int(row[0])


async def run(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
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
    await run(
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
            await run(db, "BEGIN IMMEDIATE")
            rows = await fetch(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = int(rows[0][0])
            if current > LATEST_VERSION:
                raise newer_schema(current, LATEST_VERSION)
            if current >= migration.version:
                await run(db, "ROLLBACK")
                continue
            for statement in migration.statements:
                await run(db, statement)
            await run(
                db,
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, now()),
            )
            await run(db, "COMMIT")
        except BaseException:
            await _rollback_quietly(db)
            raise
        log.info("database schema migrated to v%d: %s", migration.version, migration.description)
    rows = await fetch(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(rows[0][0])


async def _connect(path: str | Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    # isolation_level=None: no implicit BEGINs from the sqlite3 module; the store says when a
    # transaction starts (BEGIN IMMEDIATE) and a lone statement commits by itself.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await run(db, f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await run(db, "PRAGMA foreign_keys = ON")
        mode = (await fetch(db, "PRAGMA journal_mode = WAL"))[0][0]
        if mode != "wal" and str(path) != ":memory:":
            log.warning("SQLite journal mode is %s, not wal (the file system may lack it)", mode)
        await run(db, "PRAGMA synchronous = NORMAL")
        # With synchronous=NORMAL the only fsyncs are at checkpoints; checkpointing every 4,000
        # pages (16 MB of WAL) instead of 1,000 makes them a quarter as frequent.
        await run(db, f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
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


class SqliteDatabase:
    """One SQLite file, open, migrated, and shared by concurrent callers in one loop.

    :class:`bot.store.sqlite.SqliteStore` adds the queries. Use as ``async with`` or call
    :meth:`open` and :meth:`close`.

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
                raise RuntimeError("The SQLite store is not open; call open() first")
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
                await run(db, "BEGIN IMMEDIATE")
                yield db
                await run(db, "COMMIT")
            except BaseException:
                await _rollback_quietly(db)
                raise

    # Whole tables, for ``ollabot migrate`` (names come from bot.store.transfer, never a user)

    async def count_rows(self, table: str) -> int:
        """How many rows ``table`` has."""
        async with self._op("count rows") as db:
            return int((await fetch(db, f"SELECT COUNT(*) FROM {table}"))[0][0])

    async def export_rows(
        self, table: str, columns: Sequence[str], key: Sequence[str], *, batch: int = 5000
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Every row of ``table`` (``columns``, as stored), in batches ordered by ``key``."""
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)} LIMIT ? OFFSET ?"
        offset = 0
        while True:
            async with self._op(f"read {table}") as db:
                rows = await fetch(db, sql, (batch, offset))
            if not rows:
                return
            yield [tuple(row) for row in rows]
            offset += len(rows)

    async def diagnostics(self) -> dict[str, int | str]:
        """The connection's settings and schema version, for a health check or the logs.

        Returns:
            ``schema_version``, ``journal_mode``, ``synchronous`` (1 is NORMAL),
            ``foreign_keys`` (1 is on), ``busy_timeout`` (ms) and ``wal_autocheckpoint`` (pages).
        """
        found: dict[str, int | str] = {}
        async with self._op("read diagnostics") as db:
            rows = await fetch(db, "SELECT MAX(version) FROM schema_version")
            found["schema_version"] = int(rows[0][0])
            for pragma in (
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "wal_autocheckpoint",
            ):
                found[pragma] = (await fetch(db, f"PRAGMA {pragma}"))[0][0]
        return found
