"""Numbered, forward-only schema migrations for :class:`bot.store.sqlite.SqliteStore`.

Each migration is a tuple of SQL statements that the store runs in one transaction and then
records in ``schema_version``. Never edit a released migration: add the next number. Statements
are kept apart (not one script) because ``sqlite3.executescript`` commits any open transaction
first, which would break the all-or-nothing guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.migrations import v01_initial, v02_message_duration, v03_events, v04_message_refs

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema.

    Attributes:
        version: Its number, 1 for the initial schema, each next one + 1.
        description: One line for ``schema_version`` and the logs.
        statements: The SQL statements, run in order inside one transaction.
    """

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(module.VERSION, module.DESCRIPTION, module.STATEMENTS)
    for module in (v01_initial, v02_message_duration, v03_events, v04_message_refs)
)
LATEST_VERSION = MIGRATIONS[-1].version

# A gap or a reordering would silently skip a step on some databases: refuse to import.
if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise RuntimeError("schema migrations must be numbered 1, 2, 3, ... without gaps")
