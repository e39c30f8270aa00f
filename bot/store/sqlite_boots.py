"""Boots and leases in a SQLite file: which runs of the bot are alive, and who holds what.

A *boot* is one open :class:`bot.store.sqlite.SqliteStore`: a random 63-bit number with a row in
``boots`` naming its instance, host and pid (for messages), and a lock file beside the database
(``<file>.boots/<boot>.lock``) that the boot holds with ``flock`` for as long as it is open.
The kernel drops that lock when the process ends, however it ends (SIGKILL included), so a boot
is alive exactly when its row is not closed and its lock is held. Process ids are not used: a
container restarted after a crash often gets the very pid (and host name) its previous run had.

The PostgreSQL store answers the same questions with advisory locks
(:mod:`bot.store.postgres_db`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import datetime
from pathlib import Path

import aiosqlite

from bot.store.rows import LEASE_COLUMNS, to_lease_held
from bot.store.sqlite_db import fetch, now, run

__all__ = [
    "BootLock",
    "acquire_lease",
    "boot_is_gone",
    "close_boot",
    "live_boots",
    "open_boot",
    "release_lease",
]


class BootLock:
    """This boot's lock file, and the test of another boot's.

    Args:
        database: The SQLite file (``None`` for an in-memory database, which no other process
            can open: every other boot of it is gone).
        boot: This boot.
    """

    def __init__(self, database: Path | None, boot: int) -> None:
        self.directory = None if database is None else Path(f"{database}.boots")
        self.boot = boot
        self._fd: int | None = None

    def _path(self, boot: int) -> Path | None:
        return None if self.directory is None else self.directory / f"{boot}.lock"

    def take(self) -> None:
        """Hold this boot's lock until :meth:`release` or the end of the process."""
        path = self._path(self.boot)
        if path is None:
            return
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        path = self._path(self.boot)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)

    def held(self, boot: int) -> bool:
        """Whether ``boot``'s process still holds its lock (a gone one's file is removed)."""
        if boot == self.boot:
            return self._fd is not None
        path = self._path(boot)
        if path is None:
            return False
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        finally:
            os.close(fd)


async def open_boot(db: aiosqlite.Connection, boot: int, instance: str) -> None:
    """Record ``boot`` as alive; forget boots that closed cleanly (nothing of theirs is left)."""
    await run(db, "DELETE FROM boots WHERE closed_at IS NOT NULL")
    await run(
        db,
        "INSERT INTO boots (boot, instance, host, pid, started_at) VALUES (?, ?, ?, ?, ?)",
        (boot, instance, socket.gethostname(), os.getpid(), now()),
    )


async def close_boot(db: aiosqlite.Connection, boot: int) -> None:
    """Record that ``boot`` closed cleanly, and give up its leases."""
    await run(db, "UPDATE boots SET closed_at = ? WHERE boot = ?", (now(), boot))
    await run(db, "DELETE FROM leases WHERE boot = ?", (boot,))


async def boot_is_gone(db: aiosqlite.Connection, lock: BootLock, boot: int | None) -> bool:
    """Whether ``boot``'s process is gone (``None``: written before boots were recorded)."""
    if boot is None:
        return True
    rows = await fetch(db, "SELECT closed_at FROM boots WHERE boot = ?", (boot,))
    return not rows or rows[0][0] is not None or not lock.held(boot)


async def live_boots(db: aiosqlite.Connection, lock: BootLock) -> list[tuple[str, str, int]]:
    """(instance, host, pid) of every boot still alive but the caller's."""
    but = lock.boot
    rows = await fetch(
        db,
        "SELECT boot, instance, host, pid FROM boots WHERE closed_at IS NULL AND boot != ?",
        (but,),
    )
    return [
        (str(instance), str(host), int(pid))
        for boot, instance, host, pid in rows
        if not await boot_is_gone(db, lock, int(boot))
    ]


async def acquire_lease(db: aiosqlite.Connection, lock: BootLock, name: str, instance: str) -> None:
    """Take the lease ``name`` for ``boot`` (inside the caller's write transaction).

    Raises:
        LeaseHeld: Another live boot holds it.
    """
    rows = await fetch(db, f"SELECT {LEASE_COLUMNS} FROM leases WHERE name = ?", (name,))
    if rows:
        holder = rows[0][0]
        if holder == lock.boot:
            return
        if not await boot_is_gone(db, lock, holder):
            raise to_lease_held(name, rows[0], datetime.fromisoformat)
    await run(
        db,
        "INSERT INTO leases (name, boot, instance, host, pid, acquired_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET boot = excluded.boot,"
        " instance = excluded.instance, host = excluded.host, pid = excluded.pid,"
        " acquired_at = excluded.acquired_at",
        (name, lock.boot, instance, socket.gethostname(), os.getpid(), now()),
    )


async def release_lease(db: aiosqlite.Connection, name: str, boot: int) -> None:
    """Give up the lease ``name`` if ``boot`` holds it."""
    await run(db, "DELETE FROM leases WHERE name = ? AND boot = ?", (name, boot))
