"""What a chat user is told when the store fails, in the same words whichever database it is.

Each driver maps its own error codes onto these lines (:func:`bot.store.sqlite_db.store_error`,
:func:`bot.store.postgres_db.pg_store_error`); the failures that are not a driver's error are
built here.
"""

from __future__ import annotations

from bot.errors import StoreError

__all__ = ["BUSY", "DAMAGED", "FAILED", "FULL", "newer_schema", "no_message"]

BUSY = "The bot's database is busy; try again in a moment."
FULL = "The bot's database is full; ask the bot's operator to free disk space."
DAMAGED = "The bot's database is damaged; ask the bot's operator to restore it."
FAILED = "The bot's database failed; try again, and tell the bot's operator if it persists."


def newer_schema(current: int, latest: int) -> StoreError:
    """The database holds schema ``current``, newer than the ``latest`` this release knows."""
    return StoreError(
        "The bot's database was written by a newer version of the bot; upgrade it.",
        detail=f"schema version {current} > latest known {latest}",
    )


def no_message(message_id: int) -> StoreError:
    """An update named a message that is not stored."""
    return StoreError("The bot could not save its reply.", detail=f"no message {message_id}")
