"""A turn's context: the newest messages of a session that fit in a character budget.

Both store drivers choose them with :func:`newest_within_budget`, giving it a callable that
reads one batch with their own SQL. Reading newest first in batches keeps a long session cheap:
the first batch usually covers the budget, and the next is sized to be the last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bot.store.rows import Row

__all__ = ["FIRST_BATCH", "MAX_BATCH", "NO_ID_LIMIT", "newest_within_budget"]

FIRST_BATCH = 32
MAX_BATCH = 1024
# Larger than any id: the first read starts from the newest message.
NO_ID_LIMIT = 2**63 - 1

R = TypeVar("R", bound=Row)


async def newest_within_budget(
    fetch_older: Callable[[int, int], Awaitable[Sequence[R]]], char_budget: int
) -> list[R]:
    """The newest context rows whose contents fit in ``char_budget`` characters, newest first.

    Reading stops at the first row that does not fit, so the rows are always an unbroken tail
    of the conversation (an older short message is never pulled in past a long one).

    Args:
        fetch_older: ``(before, limit)`` -> at most ``limit`` of the session's context rows
            with an id below ``before``, newest first, in
            :data:`bot.store.rows.MESSAGE_COLUMNS` order (the id first, the content fourth).
        char_budget: How many characters of content the rows may hold together.

    Returns:
        The rows picked, newest first (as read).
    """
    picked: list[R] = []
    used = 0
    before = NO_ID_LIMIT
    batch = FIRST_BATCH
    while used < char_budget:
        rows = await fetch_older(before, batch)
        for row in rows:
            used += len(row[3])
            if used > char_budget:
                break
            picked.append(row)
        if used > char_budget or len(rows) < batch:
            break
        before = rows[-1][0]
        # Size the next read from the mean message so far, with a quarter to spare: one more
        # read is usually the last, and few rows are read only to be dropped.
        mean = max(used // len(picked), 1)
        batch = min(FIRST_BATCH + 5 * (char_budget - used) // (4 * mean), MAX_BATCH)
    return picked
