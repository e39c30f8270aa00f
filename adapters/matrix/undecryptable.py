"""Messages the bot could not decrypt: never ignored silently, answered once if the key comes.

A message can arrive before its room key does (the key is late, was withheld, or the message was
sent before the bot joined). nio requests the key from the sender's devices when it fails to
decrypt; this module keeps the event, and if the key has not arrived after
``undecryptable_notice_after`` seconds, tells the sender (once per sender and room per
``undecryptable_notice_interval``) that the bot could not read it and asks them to send it again.
After every sync it tries the kept events again: one that now decrypts is handled like any
message, once (the engine's ``claim_event`` guards a second answer). The kept events are also
saved in the bot's store (the newest hundred), so a key that comes after a restart still leads to
the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nio

from adapters.matrix.config import MatrixConfig
from bot.errors import StoreError
from bot.store.port import Store

__all__ = ["NOTICE", "Undecryptable"]

log = logging.getLogger(__name__)

NOTICE = (
    "🔒 I could not decrypt your message: its key has not reached me. "
    "Please send it again (if this keeps happening, check that your client shares keys "
    "with my device)."
)
_MAX_PENDING = 1000
_MAX_SAVED = 100


class Undecryptable:
    """Events waiting for their room key.

    Args:
        client: The encrypting client.
        config: The adapter settings (delays).
        spawn: Runs a coroutine as a tracked background task.
        notify: Posts a notice in a room replying to an event: ``(room, event_id, text)``.
        handle: Handles a decrypted event like one that arrived decrypted: ``(room, event)``.
        store: Where the kept events survive a restart, under ``state_key``.
        state_key: The store's state key for them.
    """

    def __init__(
        self,
        client: nio.AsyncClient,
        config: MatrixConfig,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        notify: Callable[[str, str, str], Awaitable[None]],
        handle: Callable[[str, Any], Awaitable[None]],
        store: Store,
        state_key: str,
    ) -> None:
        self.client = client
        self.config = config
        self._spawn = spawn
        self._notify = notify
        self._handle = handle
        self._pending: OrderedDict[str, tuple[str, nio.MegolmEvent]] = OrderedDict()
        self._noticed: dict[tuple[str, str], float] = {}
        self._store = store
        self._state_key = state_key

    def __len__(self) -> int:
        return len(self._pending)

    async def add(self, room_id: str, event: nio.MegolmEvent) -> None:
        """Keep ``event`` until its key arrives; request the key; tell the sender if it does not."""
        self._pending[event.event_id] = (room_id, event)
        while len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        await self._save()
        log.warning(
            "message could not be decrypted; requesting its key",
            extra={"platform": "matrix", "room": room_id, "event": event.event_id,
                   "sender": event.sender, "session_id": event.session_id},
        )  # fmt: skip
        if event.session_id not in self.client.outgoing_key_requests:
            try:
                await self.client.request_room_key(event)
            except nio.LocalProtocolError as err:
                log.info("room key already requested: %s", err)
        self._spawn(self._notice_later(room_id, event))

    async def _notice_later(self, room_id: str, event: nio.MegolmEvent) -> None:
        await asyncio.sleep(self.config.undecryptable_notice_after)
        if event.event_id not in self._pending:
            return  # decrypted meanwhile, and answered
        now = time.monotonic()
        key = (room_id, event.sender)
        last = self._noticed.get(key)
        if last is not None and now - last < self.config.undecryptable_notice_interval:
            return
        self._noticed[key] = now
        await self._notify(room_id, event.event_id, NOTICE)

    async def load(self) -> None:
        """Keep again the events saved by the last run (their keys may still come)."""
        raw = await self._store.get_state(self._state_key)
        for room_id, source in json.loads(raw) if raw else []:
            event = nio.MegolmEvent.from_dict(source)
            if isinstance(event, nio.MegolmEvent):
                event.room_id = room_id
                self._pending[event.event_id] = (room_id, event)

    async def _save(self) -> None:
        kept = list(self._pending.values())[-_MAX_SAVED:]
        value = json.dumps([[room_id, event.source] for room_id, event in kept])
        try:
            await self._store.set_state(self._state_key, value)
        except StoreError as err:
            # Kept in memory for this run; only a restart before the key comes loses them.
            log.warning("undecryptable events not saved", extra={"detail": err.detail})

    async def retry(self) -> None:
        """Try every kept event again (a sync may have brought keys); handle those that decrypt."""
        for event_id, (room_id, event) in list(self._pending.items()):
            try:
                decrypted = self.client.decrypt_event(event)
            except nio.EncryptionError:
                continue
            self._pending.pop(event_id, None)
            await self._save()
            log.info(
                "late room key: message decrypted",
                extra={"platform": "matrix", "room": room_id, "event": event_id},
            )
            decrypted.room_id = room_id
            await self._handle(room_id, decrypted)
