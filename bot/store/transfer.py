"""Copying a stopped SQLite install into PostgreSQL (``ollabot migrate``).

The tables that hold what the bot knows are copied whole, with their ids: sessions, messages,
per-scope settings, the audit log, adapter state and claimed events. Boots and leases are not:
they describe processes of the old install, none of which is running. The target is migrated
to the current schema first; it must be empty unless ``replace`` is asked for, and the copy is
one transaction, so a failed copy leaves the target as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.errors import StoreError
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SqliteStore

__all__ = [
    "TABLES",
    "SourceRunning",
    "Table",
    "TableCount",
    "TargetNotEmpty",
    "copy_sqlite_to_postgres",
]


@dataclass(frozen=True, slots=True)
class Table:
    """A table to copy: the columns both schemas have, and the ones that order its rows."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ("id",)


# Parents before children (messages refer to sessions).
TABLES: tuple[Table, ...] = (
    Table("sessions", ("id", "platform", "room", "thread", "created_at", "active")),
    Table(
        "messages",
        (
            "id",
            "session_id",
            "role",
            "content",
            "author_id",
            "author_name",
            "prompt_tokens",
            "eval_tokens",
            "created_at",
            "status",
            "duration",
            "refs",
            "owner_instance",
            "owner_boot",
        ),
    ),
    Table(
        "settings",
        ("platform", "scope_kind", "scope_id", "key", "value", "updated_at"),
        key=("platform", "scope_kind", "scope_id", "key"),
    ),
    Table(
        "audit",
        (
            "id",
            "platform",
            "scope_kind",
            "scope_id",
            "key",
            "old_value",
            "new_value",
            "actor_id",
            "actor_name",
            "allowed",
            "created_at",
        ),
    ),
    Table("state", ("key", "value", "updated_at"), key=("key",)),
    Table("events", ("platform", "event_id", "created_at"), key=("platform", "event_id")),
)
# SQLite stores times as ISO 8601 text and flags as 0/1; PostgreSQL has types for both.
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
    "active": bool,
    "allowed": bool,
}


async def _converted(
    table: Table, batches: AsyncIterator[list[tuple[Any, ...]]]
) -> AsyncIterator[list[tuple[Any, ...]]]:
    convert = [_CONVERT.get(column) for column in table.columns]
    async for batch in batches:
        yield [
            tuple(
                value if value is None or how is None else how(value)
                for value, how in zip(row, convert, strict=True)
            )
            for row in batch
        ]


@dataclass(frozen=True, slots=True)
class TableCount:
    """Rows of one table in the source and, after the copy, in the target."""

    table: str
    source: int
    target: int

    @property
    def matches(self) -> bool:
        return self.source == self.target


class TargetNotEmpty(StoreError):
    """The target database already holds data, and replacing it was not asked for."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        held = ", ".join(f"{table}: {rows}" for table, rows in counts.items() if rows)
        super().__init__(
            f"The target database already holds data ({held}); "
            "pass --force to replace it with the copy."
        )


class SourceRunning(StoreError):
    """A bot still runs on the SQLite file to copy."""

    def __init__(self, running: list[tuple[str, str, int]]) -> None:
        self.running = running
        who = ", ".join(f"instance '{i}', pid {pid} on {host}" for i, host, pid in running)
        super().__init__(
            f"A bot is still running on the SQLite file ({who}); stop it first, or the copy "
            "misses what it writes meanwhile."
        )


async def copy_sqlite_to_postgres(
    source: SqliteStore, target: PostgresStore, *, replace: bool = False
) -> list[TableCount]:
    """Copy every table of ``source`` into ``target`` (both open) and count both sides.

    Args:
        source: The stopped install's store (opening it brought it to the current schema).
        target: The PostgreSQL store (opening it created or migrated its schema).
        replace: Empty the target's tables first instead of refusing a target with data.

    Returns:
        One count per table, in :data:`TABLES` order.

    Raises:
        SourceRunning: A bot still runs on the SQLite file (its copy would miss what it writes).
        TargetNotEmpty: The target holds data and ``replace`` is false.
        StoreError: Either database failed (the target is then left as it was).
    """
    running = await source.running_elsewhere()
    if running:
        raise SourceRunning(running)
    before = {table.name: await target.count_rows(table.name) for table in TABLES}
    if any(before.values()) and not replace:
        raise TargetNotEmpty(before)
    await target.load_tables(
        [
            (
                table.name,
                table.columns,
                _converted(table, source.export_rows(table.name, table.columns, table.key)),
            )
            for table in TABLES
        ],
        replace=replace,
    )
    return [
        TableCount(
            table.name, await source.count_rows(table.name), await target.count_rows(table.name)
        )
        for table in TABLES
    ]
