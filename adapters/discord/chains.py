"""Reply chains: which conversation a reply continues, kept in the store across restarts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from bot.errors import StoreError
from bot.store.port import Store

logger = logging.getLogger(__name__)

CHAIN_STATE_PREFIX = "discord:chain:"


class ReplyChains:
    """Maps every message of a chain (the user's and the bot's) to the chain's root id.

    A chain is a convenience on top of the conversation, not part of it: when the store fails
    (locked, full disk), a lookup finds no chain and a link is skipped, both logged, so that the
    message still reaches the engine, which tells the user what is wrong with the database.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def root_of(self, message_id: int | str) -> str | None:
        """The root of the chain ``message_id`` belongs to; ``None`` if it is in none."""
        try:
            return await self._store.get_state(f"{CHAIN_STATE_PREFIX}{message_id}")
        except StoreError as err:
            logger.warning("reply chain lookup failed", extra={"detail": err.detail})
            return None

    async def link(self, root: str, message_ids: Iterable[int | str]) -> None:
        """Record that ``message_ids`` belong to the chain rooted at ``root``."""
        try:
            for message_id in message_ids:
                await self._store.set_state(f"{CHAIN_STATE_PREFIX}{message_id}", root)
        except StoreError as err:
            logger.warning("reply chain not recorded", extra={"detail": err.detail})

    def linker(self, root: str) -> Callable[[int], Awaitable[None]]:
        """A callback linking each new message of a reply to the chain, as it is created."""

        async def link(message_id: int) -> None:
            await self.link(root, [message_id])

        return link
