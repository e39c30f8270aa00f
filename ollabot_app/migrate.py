"""``ollabot migrate``: copy a stopped SQLite install into PostgreSQL, and prove it by counting.

Prints one line per table with the rows in the source and in the target after the copy, and
exits 1 when any count differs. The target's password is never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from bot.config import BotConfig
from bot.errors import ConfigError
from bot.store.postgres import PostgresStore, redact_url
from bot.store.sqlite import SqliteStore
from bot.store.transfer import copy_sqlite_to_postgres

__all__ = ["migrate_command"]

_SQLITE = "sqlite:"
_POSTGRES = ("postgresql://", "postgres://")


def _source_path(source: str | None, config: BotConfig) -> Path:
    if source is None:
        return config.storage.path
    if not source.startswith(_SQLITE):
        raise ConfigError("--from: expected sqlite:PATH (the SQLite file of a stopped install)")
    path = Path(source.removeprefix(_SQLITE).removeprefix("//"))
    if not path.is_file():
        raise ConfigError(f"--from: no SQLite file at {path}")
    return path


def _target_url(target: str | None, config: BotConfig) -> str:
    url = target or config.storage.database_url
    if url is None:
        raise ConfigError(
            "--to: name the PostgreSQL database (postgresql://user:password@host/db), or set "
            "OLLABOT_DATABASE_URL or storage.url"
        )
    if not url.startswith(_POSTGRES):
        raise ConfigError("--to: expected a postgresql:// URL")
    return url


async def migrate_command(
    config: BotConfig,
    *,
    source: str | None,
    target: str | None,
    force: bool,
    out: TextIO | None = None,
) -> int:
    """Copy ``source`` (``sqlite:PATH``; default ``storage.path``) into ``target`` (a URL;
    default the configured database) and print the counts.

    Returns:
        0 when every table's counts match, 1 otherwise.

    Raises:
        ConfigError: ``--from`` or ``--to`` is not usable.
        StoreError: A database failed, or the target holds data and ``force`` is false.
    """
    out = out or sys.stdout  # looked up now: a test may have replaced it since the import
    path = _source_path(source, config)
    url = _target_url(target, config)
    out.write(f"Copying {path} into {redact_url(url)}\n")
    async with (
        SqliteStore(path, busy_timeout_ms=config.storage.busy_timeout_ms) as sqlite,
        PostgresStore(url, instance="migrate", pool_size=2) as postgres,
    ):
        counts = await copy_sqlite_to_postgres(sqlite, postgres, replace=force)
    width = max(len(c.table) for c in counts)
    out.write(f"{'table'.ljust(width)}  {'source':>9}  {'target':>9}\n")
    for count in counts:
        mark = "" if count.matches else "  MISMATCH"
        out.write(f"{count.table.ljust(width)}  {count.source:>9}  {count.target:>9}{mark}\n")
    if all(c.matches for c in counts):
        out.write(f"Done: all {len(counts)} tables copied, every count matches.\n")
        return 0
    out.write("The counts differ: the copy is incomplete; see the table above.\n")
    return 1
