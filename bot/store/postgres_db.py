"""The PostgreSQL connection under :class:`bot.store.postgres.PostgresStore`: pool, boots, errors.

The only module that imports ``asyncpg``.

- A pool of connections serves the callers; each operation borrows one, so operations of one
  process run side by side and PostgreSQL (not a lock in memory) keeps them consistent with the
  operations of other processes.
- Each open database is a *boot*: a random 63-bit number, locked with a session-level advisory
  lock on a connection of its own for as long as it is open. A boot is alive exactly when that
  lock is held; the server drops it as soon as the process's connection closes, however the
  process ended (SIGKILL included). What a boot wrote (a reply, a lease) is therefore known to
  be orphaned without heartbeats or timeouts: see :meth:`PostgresDatabase.boot_is_gone`.
- Migrations run at open, numbered, each in one transaction, one process at a time.
- Driver errors become :class:`bot.errors.StoreError` with a line fit for a chat user; the
  connection URL's password never reaches a message or a log line (:func:`redact_url`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bot.errors import StoreError
from bot.store.failures import BUSY, DAMAGED, FAILED, FULL, newer_schema
from bot.store.migrations.postgres import LATEST_VERSION, MIGRATIONS
from bot.store.rows import LEASE_COLUMNS, as_stored, to_lease_held

__all__ = ["Conn", "PostgresDatabase", "Row", "now", "pg_store_error", "redact_url"]

# Runtime classes are not subscriptable: the alias is for the type checker (asyncpg-stubs).
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
"""A pooled connection, as an operation borrows it."""
Row: TypeAlias = asyncpg.Record

log = logging.getLogger("bot.store.postgres")

# Two-key advisory locks live in a key space apart from the one-key boot locks.
LOCK_NAMESPACE = 0x6F6C6C61  # "olla"
_MIGRATE_KEY = 0

_UNREACHABLE = "The bot cannot reach its database; ask the bot's operator."
_REFUSED = "The bot's database refused its login; ask the bot's operator."
# SQLSTATE codes, then classes (their first two characters), and what a user is told.
_BY_CODE = {
    "40001": BUSY,  # serialization failure
    "40P01": BUSY,  # deadlock detected
    "55P03": BUSY,  # lock not available
    "57014": BUSY,  # query cancelled (statement timeout)
    "53300": BUSY,  # too many connections
}
_BY_CLASS = {
    "08": _UNREACHABLE,  # connection exception
    "28": _REFUSED,  # invalid authorization (wrong password)
    "3D": _REFUSED,  # no such database
    "53": FULL,  # insufficient resources (53100 disk full)
    "57": _UNREACHABLE,  # operator intervention (the server is shutting down)
    "XX": DAMAGED,  # internal error, data corrupted
}
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def pg_store_error(exc: BaseException, operation: str) -> StoreError:
    """Translate an asyncpg or socket error into a :class:`StoreError` (raise it ``from`` exc).

    Args:
        exc: What asyncpg, or the socket under it, raised.
        operation: What the store was doing, for the logs ("append message").

    Returns:
        An error whose ``user_message`` a chat user understands and whose ``detail`` keeps the
        SQLSTATE and the server's text (neither ever holds the password).
    """
    if isinstance(exc, asyncpg.PostgresError):
        code = str(getattr(exc, "sqlstate", "") or "")
        user_message = _BY_CODE.get(code) or _BY_CLASS.get(code[:2], FAILED)
        return StoreError(user_message, detail=f"PostgreSQL {operation} failed: {code} {exc}")
    if isinstance(exc, TimeoutError):
        return StoreError(BUSY, detail=f"PostgreSQL {operation} timed out")
    # A refused connect, or a connection the server closed (restart, crash).
    return StoreError(
        _UNREACHABLE, detail=f"PostgreSQL {operation} failed: {type(exc).__name__}: {exc}"
    )


def now() -> datetime:
    return datetime.now(UTC)


async def _apply_migrations(conn: asyncpg.Connection, target: int) -> int:
    # One process at a time: a second one waits here, then finds nothing left to do.
    await conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_NAMESPACE, _MIGRATE_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        if current > LATEST_VERSION:
            raise newer_schema(current, LATEST_VERSION)
        for migration in MIGRATIONS:
            if not current < migration.version <= target:
                continue
            async with conn.transaction():
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at)"
                    " VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    now(),
                )
            current = migration.version
            log.info("database schema migrated to v%d: %s", current, migration.description)
        return current
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_NAMESPACE, _MIGRATE_KEY)


class PostgresDatabase:
    """The pool and this process's boot on one PostgreSQL database.

    Use as ``async with`` or call :meth:`open` and :meth:`close`.

    Args:
        url: ``postgresql://user:password@host:port/database`` (any URL asyncpg accepts).
        instance: This process's name among the processes sharing the database.
        pool_size: The most connections this process opens at once.
        command_timeout: Seconds a statement may take before the caller is told "busy".
    """

    def __init__(
        self,
        url: str,
        *,
        instance: str = "main",
        pool_size: int = 10,
        command_timeout: float = 30.0,
    ) -> None:
        self._url = url
        self.instance = instance
        self.pool_size = pool_size
        self.command_timeout = command_timeout
        self.boot = secrets.randbits(63)
        self._pool: asyncpg.Pool | None = None
        self._life: asyncpg.Connection | None = None
        self._relock: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        """The database, for messages and logs (password hidden)."""
        return redact_url(self._url)

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
        """Connect, apply pending migrations and take this boot's liveness lock.

        Raises:
            StoreError: The server cannot be reached, refuses the login, or holds a schema from
                a newer release.
        """
        await self.open_at(LATEST_VERSION)

    async def open_at(self, version: int) -> int:
        """Like :meth:`open`, stopping the schema at ``version`` (tools, tests); the version."""
        if self._pool is not None:
            return version
        life: asyncpg.Connection | None = None
        pool: asyncpg.Pool | None = None
        try:
            life = await asyncpg.connect(self._url, timeout=self.command_timeout)
            reached = await _apply_migrations(life, version)
            await life.execute("SELECT pg_advisory_lock($1)", self.boot)
            life.add_termination_listener(self._life_lost)
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self.pool_size,
                command_timeout=self.command_timeout,
                timeout=self.command_timeout,
            )
        except BaseException as exc:
            if pool is not None:
                await pool.close()
            if life is not None:
                await life.close()
            if isinstance(exc, DRIVER_ERRORS):
                raise pg_store_error(exc, "open") from exc
            raise
        self._life, self._pool = life, pool
        log.info(
            "store open at %s (PostgreSQL, schema v%d, instance %s)",
            self.where,
            reached,
            self.instance,
        )
        return reached

    async def close(self) -> None:
        """Close the pool, then the boot's connection (which releases its lock). Idempotent."""
        pool, self._pool = self._pool, None
        life, self._life = self._life, None
        relock, self._relock = self._relock, None
        if relock is not None:
            relock.cancel()
            await asyncio.gather(relock, return_exceptions=True)
        if pool is not None:
            await pool.close()
        if life is not None:
            await life.close()

    def _life_lost(self, conn: object) -> None:
        """The connection holding the boot's lock closed: unless closing, take it again.

        Until then the other processes see this boot as gone (the server restarted, or an
        operator ended the session), so this is logged, and retried with backoff.
        """
        if conn is not self._life or self._pool is None or self._relock is not None:
            return  # a clean close, or already on it
        log.warning("lost the database connection that shows this process alive; reconnecting")
        self._relock = asyncio.get_running_loop().create_task(self._take_life_again())

    async def _take_life_again(self) -> None:
        delay = 0.2
        try:
            while self._pool is not None:
                life: asyncpg.Connection | None = None
                try:
                    life = await asyncpg.connect(self._url, timeout=self.command_timeout)
                    await life.execute("SELECT pg_advisory_lock($1)", self.boot)
                except DRIVER_ERRORS as exc:
                    if life is not None:
                        await life.close()
                    log.warning("still no database connection for the liveness lock: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                self._life = life
                life.add_termination_listener(self._life_lost)
                log.info("liveness lock taken again")
                return
        finally:
            self._relock = None

    @asynccontextmanager
    async def op(self, operation: str) -> AsyncIterator[Conn]:
        """A pooled connection for one operation, translating driver errors."""
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open; call open() first")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise pg_store_error(exc, operation) from exc

    @asynccontextmanager
    async def transaction(self, operation: str) -> AsyncIterator[Conn]:
        """Like :meth:`op`, inside a transaction (rolled back on error)."""
        async with self.op(operation) as conn, conn.transaction():
            yield conn

    async def boot_is_gone(self, conn: Conn, boot: int | None) -> bool:
        """Whether ``boot``'s process is gone (``None``: written before boots were recorded).

        Runs inside the caller's transaction: a gone boot's lock is taken until it ends, so two
        processes recovering at once cannot both take over what it left.
        """
        if boot is None:
            return True
        if boot == self.boot:
            return False
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", boot))

    # Leases: held by a boot, for as long as it lives

    async def acquire_lease(self, name: str) -> None:
        """Hold the lease ``name`` for as long as this store is open (or until released).

        Raises:
            LeaseHeld: A live process (another boot) holds it; says which.
            StoreError: The database failed.
        """
        mine = (name, self.boot, self.instance, socket.gethostname(), os.getpid())
        async with self.transaction("acquire lease") as conn:
            await conn.execute(
                "INSERT INTO leases (name, boot, instance, host, pid, acquired_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                *mine,
                now(),
            )
            row = await conn.fetchrow(
                f"SELECT {LEASE_COLUMNS} FROM leases WHERE name = $1 FOR UPDATE", name
            )
            assert row is not None  # inserted above, or held by someone
            holder = int(row[0])
            if holder == self.boot:
                return
            if not await self.boot_is_gone(conn, holder):
                raise to_lease_held(name, row, as_stored)
            log.info("lease %s taken over from a process that is gone", name)
            await conn.execute(
                "UPDATE leases SET boot = $2, instance = $3, host = $4, pid = $5,"
                " acquired_at = $6 WHERE name = $1",
                *mine,
                now(),
            )

    async def release_lease(self, name: str) -> None:
        """Give the lease ``name`` up, if this store holds it."""
        async with self.op("release lease") as conn:
            await conn.execute("DELETE FROM leases WHERE name = $1 AND boot = $2", name, self.boot)

    # Whole tables, for ``ollabot migrate`` (names come from bot.store.transfer, never a user)

    async def count_rows(self, table: str) -> int:
        """How many rows ``table`` has."""
        async with self.op("count rows") as conn:
            return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))

    async def load_tables(
        self,
        tables: Sequence[tuple[str, Sequence[str], AsyncIterator[list[tuple[Any, ...]]]]],
        *,
        replace: bool,
    ) -> None:
        """Bulk-copy rows into tables (``COPY``), in one transaction, ids kept.

        Args:
            tables: (table, columns, batches of rows) in an order that satisfies foreign keys.
            replace: Empty the tables first.
        """
        async with self.transaction("copy tables") as conn:
            if replace:
                names = ", ".join(name for name, _, _ in tables)
                await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            for name, columns, batches in tables:
                async for rows in batches:
                    await conn.copy_records_to_table(name, records=rows, columns=list(columns))
                if "id" in columns:
                    # Ids were copied as they were: new rows continue after the highest.
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"
                        f" COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"
                    )

    async def diagnostics(self) -> dict[str, int | str]:
        """The schema version and the server's version, for a health check or the logs."""
        async with self.op("read diagnostics") as conn:
            version = await conn.fetchval("SELECT MAX(version) FROM schema_version")
            server = await conn.fetchval("SHOW server_version")
        return {"schema_version": int(version), "server_version": str(server)}
