"""Numbered, forward-only schema migrations, one package per backend.

``sqlite`` holds the steps of :class:`bot.store.sqlite.SqliteStore`, ``postgres`` those of
:class:`bot.store.postgres.PostgresStore`. Each backend numbers its own steps from 1: the two
schemas hold the same data in each database's own types, and a change that needs a step in both
gets one in each package, each written for its dialect.

Each migration is a tuple of SQL statements that the store runs in one transaction and then
records in ``schema_version``. Never edit a released migration: add the next number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["Migration", "numbered"]


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


def numbered(modules: Iterable[ModuleType]) -> tuple[Migration, ...]:
    """The migrations that ``modules`` define (``VERSION``, ``DESCRIPTION``, ``STATEMENTS``).

    Raises:
        RuntimeError: The versions are not 1, 2, 3, ... in order: a gap or a reordering would
            silently skip a step on some databases.
    """
    steps = tuple(
        Migration(module.VERSION, module.DESCRIPTION, module.STATEMENTS) for module in modules
    )
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise RuntimeError("schema migrations must be numbered 1, 2, 3, ... without gaps")
    return steps
