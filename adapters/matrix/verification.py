"""Emoji (SAS) verification of a user's device, accepted from moderators only.

A person starts the verification from their client; the bot accepts it when they are a moderator
of a room it shares with them, exchanges keys, and confirms. The bot cannot look at emoji: it
logs them, and relies on the moderator comparing what their client shows with the bot's log when
they care to. When the person confirms too, nio marks the device verified, and under
``device_trust = "verified"`` the bot starts sharing room keys with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import nio

__all__ = ["Verifier"]

log = logging.getLogger(__name__)


class Verifier:
    """Answers key verification requests arriving as to-device events.

    Args:
        client: The encrypting client.
        may_verify: Whether a user may verify a device with the bot (a moderator somewhere).
    """

    def __init__(self, client: nio.AsyncClient, may_verify: Callable[[str], bool]) -> None:
        self.client = client
        self._may_verify = may_verify
        self._accepted: set[str] = set()

    async def handle(self, events: Iterable[Any]) -> None:
        """Take the verification steps these to-device events call for."""
        for event in events:
            if isinstance(event, nio.KeyVerificationStart):
                await self._start(event)
            elif isinstance(event, nio.KeyVerificationKey):
                await self._key(event)
            elif isinstance(event, nio.KeyVerificationMac):
                self._mac(event)
            elif isinstance(event, nio.KeyVerificationCancel):
                self._accepted.discard(event.transaction_id)
                log.info("verification cancelled by %s: %s", event.sender, event.reason)

    async def _start(self, event: nio.KeyVerificationStart) -> None:
        tx = event.transaction_id
        if tx not in self.client.key_verifications:
            log.warning("verification from an unknown device of %s", event.sender)
            return
        if not self._may_verify(event.sender):
            log.warning("verification refused: %s is not a moderator", event.sender)
            await self.client.cancel_key_verification(tx, reject=False)
            return
        self._accepted.add(tx)
        await self.client.accept_key_verification(tx)
        log.info(
            "verification accepted",
            extra={"platform": "matrix", "user": event.sender, "device_id": event.from_device},
        )

    async def _key(self, event: nio.KeyVerificationKey) -> None:
        tx = event.transaction_id
        sas = self.client.key_verifications.get(tx)
        if tx not in self._accepted or sas is None or sas.canceled:
            return
        # nio queued the bot's own key on receipt of theirs: it must go out before the MAC.
        await self.client.send_to_device_messages()
        emoji = " ".join(f"{e} ({name})" for e, name in sas.get_emoji())
        log.info("verification emoji with %s: %s", event.sender, emoji)
        await self.client.confirm_short_auth_string(tx)

    def _mac(self, event: nio.KeyVerificationMac) -> None:
        sas = self.client.key_verifications.get(event.transaction_id)
        self._accepted.discard(event.transaction_id)
        if sas is not None and sas.verified:
            device = sas.other_olm_device
            log.info(
                "device verified",
                extra={"platform": "matrix", "user": device.user_id, "device_id": device.id},
            )
