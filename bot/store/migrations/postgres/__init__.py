"""The schema steps of :class:`bot.store.postgres.PostgresStore`.

Numbered from 1 on their own: PostgreSQL's v1 is the whole schema SQLite reached at its v5.
"""

from __future__ import annotations

from bot.store.migrations import Migration, numbered
from bot.store.migrations.postgres import v01_initial

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]

MIGRATIONS = numbered([v01_initial])
LATEST_VERSION = MIGRATIONS[-1].version
