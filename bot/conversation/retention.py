"""Pruning what only matters for a while: old event claims and adapter caches in the store.

Event claims (so a redelivered event is not answered twice) and some adapter state (Discord's
reply-chain links, Matrix's thread flags) grow with every message. Platforms do not redeliver
events weeks old, and a conversation idle for longer than the retention can be started afresh,
so rows older than ``storage.retention_days`` are deleted: once at start-up, then every few
hours. Messages, settings and the audit log are never pruned here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from bot.errors import StoreError
from bot.store.port import Store

__all__ = ["PRUNE_INTERVAL", "Retention"]

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 6 * 3600.0
"""Seconds between two prunings while the bot runs."""


class Retention:
    """Prunes ``store`` on a schedule.

    Args:
        store: The open store.
        days: How long claims and prunable state are kept.
        interval: Seconds between prunings after the first.
    """

    def __init__(self, store: Store, *, days: float, interval: float = PRUNE_INTERVAL) -> None:
        self._store = store
        self._days = days
        self._interval = interval
        self._prefixes: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def prune_state_under(self, prefix: str) -> None:
        """Let adapter state whose key starts with ``prefix`` be pruned once it is old."""
        self._prefixes.add(prefix)

    async def prune(self) -> int:
        """Delete what is older than the retention now; returns how many rows went.

        Raises:
            StoreError: The database failed.
        """
        cutoff = datetime.now(UTC) - timedelta(days=self._days)
        deleted = await self._store.prune(cutoff, sorted(self._prefixes))
        logger.info("pruned old claims and state", extra={"rows": deleted, "days": self._days})
        return deleted

    async def start(self) -> None:
        """Prune once now, then every ``interval`` seconds until :meth:`close`."""
        await self._prune_logged()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ollabot-retention")

    async def close(self) -> None:
        """Stop the schedule. Safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._prune_logged()

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except StoreError as err:
            # Pruning can wait for the next round; the operator sees why in the log.
            logger.warning("could not prune old rows", extra={"detail": err.detail})
