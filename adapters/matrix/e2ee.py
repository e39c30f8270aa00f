"""Encrypted rooms, seen from the sync loop and the replier.

:class:`SyncEncryption` is what the client does for encryption around each ``/sync``: key
upkeep, emoji verification, messages whose key came late, and telling which device an event came
from. :class:`EncryptionNotices` is what the bot says about encryption in a room: that an
unverified device is not answered (under ``device_trust = "verified"``), or, without encryption
support, that it cannot read the room and how to enable it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nio

from adapters.matrix.addressing import Incoming
from adapters.matrix.config import MatrixConfig
from adapters.matrix.crypto import BotClient
from adapters.matrix.surface import send_checked
from adapters.matrix.undecryptable import Undecryptable
from adapters.matrix.verification import Verifier
from bot.errors import OllabotError
from bot.reply.streamer import Pacer
from bot.store.port import Store

__all__ = ["EncryptionNotices", "SyncEncryption"]

log = logging.getLogger(__name__)

_UNSUPPORTED = (
    "🔒 This room is end-to-end encrypted, and this installation of the bot cannot read "
    "encrypted messages. Its operator can enable encryption by installing matrix-nio's e2e "
    "support (pip install 'matrix-nio[e2e]') and setting [matrix] encryption = true. "
    "Until then, talk to me in an unencrypted room."
)
_UNSUPPORTED_INTERVAL = 600.0
_UNVERIFIED = (
    "🔒 I only answer verified devices in encrypted rooms, and your device {device} is not "
    "verified, so I do not share this room's keys with it. Verify it with me by emoji from your "
    "client (a moderator can), then send your message again. (This notice is not encrypted: "
    "your device could not read it otherwise.)"
)


class SyncEncryption:
    """The sync loop's encryption work.

    Args:
        client: The bot's client (encrypting or not).
        config: The adapter settings.
        spawn: Runs a coroutine as a tracked background task.
        notify: Posts a notice replying to an event: ``(room, event_id, text)``.
        handle: Handles an event decrypted late, like one that came decrypted.
        is_moderator: Whether a user moderates a room: ``(room, user)``.
        store: The bot's store (messages waiting for their key survive a restart there).
        state_key: The state key for them.
    """

    def __init__(
        self,
        client: BotClient,
        config: MatrixConfig,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        notify: Callable[[str, str, str], Awaitable[None]],
        handle: Callable[[str, Any], Awaitable[None]],
        is_moderator: Callable[[str, str], bool],
        store: Store,
        state_key: str,
    ) -> None:
        self.client = client
        self.config = config
        self._is_moderator = is_moderator
        self.undecryptable = Undecryptable(
            client, config, spawn, notify, handle, store=store, state_key=state_key
        )
        self.verifier = Verifier(client, self.may_verify)

    async def after_sync(self, response: nio.SyncResponse) -> None:
        """Keys, verification steps and late room keys, before the timeline is looked at."""
        if not self.client.encrypting:
            return
        await self.client.upkeep()
        await self.verifier.handle(response.to_device_events)
        await self.client.upkeep()
        await self.undecryptable.retry()

    def unverified(self, event: Any) -> str | None:
        """Under ``device_trust = "verified"``: the unverified device an event came from."""
        if self.config.device_trust != "verified" or not getattr(event, "decrypted", False):
            return None
        device = self.client.device_of(event.sender, event.sender_key)
        if device is not None and device.verified:
            return None
        return str(device.id) if device is not None else "(unknown device)"

    def may_verify(self, user_id: str) -> bool:
        """A user may verify a device with the bot if they moderate a room it shares with them."""
        return any(
            user_id in room.users and self._is_moderator(room_id, user_id)
            for room_id, room in self.client.rooms.items()
        )


class EncryptionNotices:
    """What the bot says about encryption, at most so often.

    Args:
        client: The bot's client.
        config: The adapter settings.
        pacer: The bot's send pacer.
        own: Records an event id as the bot's own.
    """

    def __init__(
        self,
        client: BotClient,
        config: MatrixConfig,
        pacer: Pacer,
        own: Callable[[str], None],
    ) -> None:
        self.client = client
        self.config = config
        self._pacer = pacer
        self._own = own
        self._unsupported: dict[str, float] = {}
        self._unverified: dict[tuple[str, str], float] = {}

    async def refuse_unverified(self, room_id: str, message: Incoming, device: str) -> None:
        """Tell the sender, in plain text, that their unverified device is not answered."""
        log.warning(
            "refused an unverified device",
            extra={"platform": "matrix", "room": room_id, "sender": message.sender,
                   "device_id": device},
        )  # fmt: skip
        now = time.monotonic()
        key = (room_id, device)
        last = self._unverified.get(key)
        if last is not None and now - last < self.config.undecryptable_notice_interval:
            return
        self._unverified[key] = now
        body: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": _UNVERIFIED.format(device=device),
            "m.mentions": {"user_ids": [message.sender]},
            "m.relates_to": {"m.in_reply_to": {"event_id": message.event_id}},
        }
        await self._pacer.acquire()
        response = await self.client.room_send_plain(room_id, body)
        if isinstance(response, nio.RoomSendResponse):
            self._own(response.event_id)
        else:
            log.warning("could not post the verification notice in %s: %s", room_id, response)

    async def unsupported(self, room_id: str) -> None:
        """Without encryption support: say, at most every ten minutes per room, how to get it."""
        now = time.monotonic()
        last = self._unsupported.get(room_id)
        if last is not None and now - last < _UNSUPPORTED_INTERVAL:
            return
        self._unsupported[room_id] = now
        # Plain text on purpose: without olm, nio sends it unencrypted, which every client shows.
        body: dict[str, Any] = {"msgtype": "m.notice", "body": _UNSUPPORTED, "m.mentions": {}}
        await self._pacer.acquire()
        try:
            await send_checked(self.client, room_id, body)
        except OllabotError as err:
            log.warning("could not post the encryption notice in %s: %s", room_id, err.detail)
