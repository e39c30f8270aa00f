"""The schema steps of :class:`bot.store.sqlite.SqliteStore`.

Statements are kept apart (not one script) because ``sqlite3.executescript`` commits any open
transaction first, which would break the all-or-nothing guarantee.
"""

from __future__ import annotations

from bot.store.migrations import Migration, numbered
from bot.store.migrations.sqlite import (
    v01_initial,
    v02_message_duration,
    v03_events,
    v04_message_refs,
    v05_owners_and_leases,
)

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]

MIGRATIONS = numbered(
    [v01_initial, v02_message_duration, v03_events, v04_message_refs, v05_owners_and_leases]
)
LATEST_VERSION = MIGRATIONS[-1].version
