"""Boots and leases in a SQLite file: which runs of the bot are alive, and who holds what.

A *boot* is one open :class:`bot.store.sqlite.SqliteStore`: a random 63-bit number with a row in
``boots`` naming its instance, host and pid. It is alive while its row is not closed and, on
this host, its process still runs (a process killed with SIGKILL leaves its row open, but its
pid is gone). A boot on another host is taken as alive: SQLite is not shared across machines
(use PostgreSQL for that), so this only errs on the side of leaving things alone.

The PostgreSQL store answers the same questions with advisory locks
(:mod:`bot.store.postgres_db`).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

import aiosqlite

from bot.errors import LeaseHeld
from bot.store.sqlite_db import fetch, now, run

__all__ = [
    "acquire_lease",
    "boot_is_gone",
    "close_boot",
    "live_boots",
    "open_boot",
    "release_lease",
]


def _pid_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


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


async def boot_is_gone(db: aiosqlite.Connection, boot: int | None) -> bool:
    """Whether ``boot``'s process is gone (``None``: written before boots were recorded)."""
    if boot is None:
        return True
    rows = await fetch(db, "SELECT host, pid, closed_at FROM boots WHERE boot = ?", (boot,))
    if not rows:
        return True
    host, pid, closed_at = rows[0]
    if closed_at is not None:
        return True
    return host == socket.gethostname() and not _pid_runs(int(pid))


async def live_boots(db: aiosqlite.Connection, but: int) -> list[tuple[str, str, int]]:
    """(instance, host, pid) of every boot still alive, except ``but`` (the caller's)."""
    rows = await fetch(
        db,
        "SELECT boot, instance, host, pid FROM boots WHERE closed_at IS NULL AND boot != ?",
        (but,),
    )
    return [
        (str(instance), str(host), int(pid))
        for boot, instance, host, pid in rows
        if not await boot_is_gone(db, int(boot))
    ]


async def acquire_lease(db: aiosqlite.Connection, name: str, boot: int, instance: str) -> None:
    """Take the lease ``name`` for ``boot`` (inside the caller's write transaction).

    Raises:
        LeaseHeld: Another live boot holds it.
    """
    rows = await fetch(
        db, "SELECT boot, instance, host, pid, acquired_at FROM leases WHERE name = ?", (name,)
    )
    if rows:
        holder, holder_instance, host, pid, since = rows[0]
        if holder == boot:
            return
        if not await boot_is_gone(db, holder):
            raise LeaseHeld(
                name,
                instance=holder_instance,
                host=host,
                pid=int(pid),
                since=datetime.fromisoformat(since),
            )
    await run(
        db,
        "INSERT INTO leases (name, boot, instance, host, pid, acquired_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET boot = excluded.boot,"
        " instance = excluded.instance, host = excluded.host, pid = excluded.pid,"
        " acquired_at = excluded.acquired_at",
        (name, boot, instance, socket.gethostname(), os.getpid(), now()),
    )


async def release_lease(db: aiosqlite.Connection, name: str, boot: int) -> None:
    """Give up the lease ``name`` if ``boot`` holds it."""
    await run(db, "DELETE FROM leases WHERE name = ? AND boot = ?", (name, boot))
