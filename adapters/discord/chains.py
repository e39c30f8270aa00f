"""Reply chains: which conversation a reply continues, kept in the store across restarts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from bot.store import Store

_PREFIX = "discord:chain:"


class ReplyChains:
    """Maps every message of a chain (the user's and the bot's) to the chain's root id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def root_of(self, message_id: int | str) -> str | None:
        """The root of the chain ``message_id`` belongs to; ``None`` if it is in none."""
        return await self._store.get_state(f"{_PREFIX}{message_id}")

    async def link(self, root: str, message_ids: Iterable[int | str]) -> None:
        """Record that ``message_ids`` belong to the chain rooted at ``root``."""
        for message_id in message_ids:
            await self._store.set_state(f"{_PREFIX}{message_id}", root)

    def linker(self, root: str) -> Callable[[int], Awaitable[None]]:
        """A callback linking each new message of a reply to the chain, as it is created."""

        async def link(message_id: int) -> None:
            await self.link(root, [message_id])

        return link
