"""End-to-end encryption: the crypto store, device trust, and key upkeep between syncs.

matrix-nio does the cryptography (vodozemac); this module decides what nio leaves to its caller:

- **Where the keys live.** nio's store (olm account, sessions, inbound group sessions, device
  list) is a SQLite file ``<user>_<device>.db`` in ``[matrix] crypto_store``, a directory beside
  the bot's database, so it is keyed to the device id the bot keeps across runs.
- **Key upkeep.** After every ``/sync``: send queued to-device messages, upload one-time keys,
  query changed device lists, claim keys for new Olm sessions. One lock serialises that with every
  encrypted send: key queries and claims must not overlap (nio raises ``LocalProtocolError``).
- **Trust.** ``tofu`` trusts a device the first time it is seen (nio's "ignored" state: keys are
  shared, the device is not marked verified) and warns when a known device presents new keys;
  ``all`` shares with every device; ``verified`` shares only with devices verified by emoji
  (SAS), which the bot accepts from a moderator. Changing a device's trust makes nio start a new
  room session, so a new device of a member gets the keys of the next message.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import nio
from nio.api import Api
from nio.crypto import ENCRYPTION_ENABLED

from adapters.matrix.config import MatrixConfig
from bot.errors import ConfigError

__all__ = [
    "ENCRYPTION_ENABLED",
    "BotClient",
    "KeyChange",
    "describe_store",
    "store_dir",
    "with_default_store",
]

log = logging.getLogger(__name__)


class KeyChange(Exception):  # noqa: N818 (a refusal, not a programming error)
    """A known device presented new identity keys: the bot will not encrypt for its user."""

    def __init__(self, user_id: str, device_id: str) -> None:
        super().__init__(f"{user_id} {device_id}")
        self.user_id = user_id
        self.device_id = device_id


def store_dir(config: MatrixConfig) -> Path | None:
    """The crypto store's directory, or ``None`` when encryption is off or unavailable."""
    if not ENCRYPTION_ENABLED or not config.encryption or config.crypto_store is None:
        return None
    return config.crypto_store


class BotClient(nio.AsyncClient):  # type: ignore[misc]  # nio ships no type information
    """nio's client, with the bot's trust rules applied to every encrypted send.

    Every ``room_send`` into an encrypted room first (under one lock with the sync loop's key
    upkeep): loads the room's members, queries their device keys, applies ``device_trust`` to
    devices not yet decided, and shares the room session. Then it encrypts and sends.

    Args:
        config: The adapter settings.
        store: The crypto store's directory; ``None`` for a client without encryption.
    """

    def __init__(self, config: MatrixConfig, store: Path | None) -> None:
        encrypting = store is not None
        if store is not None:
            try:
                store.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ConfigError(
                    f"Cannot create the Matrix crypto store {store}: {err.strerror}.",
                    key="matrix.crypto_store",
                ) from err
        super().__init__(
            config.homeserver,
            config.user_id,
            store_path=str(store) if store is not None else "",
            config=nio.AsyncClientConfig(
                # 0: a 429 comes straight back; the surface turns it into RateLimited and the
                # room's pacer learns the limit (nio's default retries forever).
                max_limit_exceeded=config.max_rate_limit_retries,
                max_timeouts=config.max_timeout_retries,
                encryption_enabled=encrypting,
                # The bot keeps its own sync token in its database.
                store_sync_tokens=False,
            ),
        )
        self.trust = config.device_trust
        self.key_lock = asyncio.Lock()
        # (user, device) whose identity key changed after it was first seen.
        self.changed_keys: set[tuple[str, str]] = set()
        # (room, user, device) -> when the room was last told of that device's new keys
        self._told: dict[tuple[str, str, str], float] = {}
        self._told_interval = config.undecryptable_notice_interval
        self._upload_refused = False

    @property
    def encrypting(self) -> bool:
        """Whether the crypto store is loaded (the bot can read and write encrypted rooms)."""
        return self.olm is not None

    # --- key upkeep ---------------------------------------------------------------------------

    async def keys_query(self) -> Any:
        """Query device keys, noting devices whose identity key changed since first seen.

        nio keeps the first keys and ignores the new ones; the bot also says so (``tofu``).
        """
        before: dict[tuple[str, str], str] = {}
        for user_id in list(self.users_for_key_query):
            for device in self.device_store.active_user_devices(user_id):
                before[(user_id, device.id)] = device.ed25519
        response = await super().keys_query()
        if isinstance(response, nio.KeysQueryResponse):
            for user_id, devices in response.device_keys.items():
                for device_id, payload in devices.items():
                    old = before.get((user_id, device_id))
                    keys = payload.get("keys", {}) if isinstance(payload, dict) else {}
                    new = keys.get(f"ed25519:{device_id}")
                    if old is not None and new is not None and new != old:
                        self._key_changed(user_id, device_id)
        return response

    def _key_changed(self, user_id: str, device_id: str) -> None:
        self.changed_keys.add((user_id, device_id))
        log.warning(
            "a known device presented new identity keys; keeping the first ones",
            extra={"platform": "matrix", "user": user_id, "device_id": device_id},
        )

    async def upkeep(self) -> None:
        """What nio's ``sync_forever`` does between syncs, one request at a time."""
        if not self.encrypting:
            return
        async with self.key_lock:
            await self.send_to_device_messages()
            if self.should_upload_keys:
                uploaded = await self.keys_upload()
                if not isinstance(uploaded, nio.KeysUploadResponse) and not self._upload_refused:
                    self._upload_refused = True
                    # Typically: the device's keys are on the server but its store is gone.
                    log.error(
                        "the homeserver refused this device's encryption keys (%s); if the "
                        "crypto store of device %s was lost, log the bot in on a new device",
                        uploaded,
                        self.device_id,
                        extra={"platform": "matrix", "store": str(self.store_path)},
                    )
            if self.should_query_keys:
                await self.keys_query()
            if self.should_claim_keys:
                await self.keys_claim(self.get_users_for_key_claiming())
            await self.send_to_device_messages()

    # --- trust --------------------------------------------------------------------------------

    def _decide(self, device: Any) -> None:
        """Apply ``device_trust`` to a device not verified by emoji.

        Only the bot blacklists (under ``verified``), so a device blacklisted under an earlier
        ``verified`` setting is trusted again when the setting is ``tofu`` or ``all``.
        """
        if device.verified:
            return
        if self.trust == "verified":
            if not device.blacklisted:
                # Not shared with; SAS verification (from a moderator) lifts it.
                self.blacklist_device(device)
        elif not device.ignored:
            self.ignore_device(device)
            log.info(
                "sharing room keys with a device not verified by emoji (%s)",
                self.trust,
                extra={"platform": "matrix", "user": device.user_id, "device_id": device.id},
            )

    def device_of(self, user_id: str, sender_key: str | None) -> Any:
        """The device that sent an event (by its curve25519 key), if known."""
        if not self.encrypting or not sender_key:
            return None
        return self.olm.device_store.device_from_sender_key(user_id, sender_key)

    def refusal_for(self, room_id: str) -> KeyChange | None:
        """Why the bot must not encrypt for ``room_id`` now (a verified device's keys changed)."""
        room = self.rooms.get(room_id)
        if room is None or not room.encrypted or not self.encrypting:
            return None
        for user_id, device_id in sorted(self.changed_keys):
            if user_id not in room.users:
                continue
            device = self.device_store[user_id].get(device_id)
            if device is None or device.deleted:
                continue  # removed since: nothing is encrypted for it any more
            if self.trust == "verified" or (self.trust == "tofu" and device.verified):
                return KeyChange(user_id, device_id)
        return None

    async def _prepare(self, room_id: str) -> None:
        room = self.rooms[room_id]
        if not room.members_synced:
            await self.joined_members(room_id)
        if self.should_query_keys:
            await self.keys_query()
        for user_id in list(room.users):
            for device in self.device_store.active_user_devices(user_id):
                self._decide(device)
        missing = self.get_missing_sessions(room_id)
        if missing:
            await self.keys_claim(missing)
        if self.olm.should_share_group_session(room_id):
            await self.share_group_session(
                room_id, ignore_unverified_devices=self.trust != "verified"
            )

    async def room_send(
        self,
        room_id: str,
        message_type: str,
        content: dict[Any, Any],
        tx_id: str | None = None,
        ignore_unverified_devices: bool = False,
    ) -> Any:
        """Send to a room; into an encrypted room, encrypted for the devices the bot trusts.

        Raises:
            KeyChange: A device the bot verified presented new keys (``verified`` rules).
        """
        room = self.rooms.get(room_id)
        if not self.encrypting or room is None or not room.encrypted:
            return await super().room_send(room_id, message_type, content, tx_id)
        refusal = self.refusal_for(room_id)
        if refusal is not None:
            raise refusal
        async with self.key_lock:
            await self._prepare(room_id)
            return await super().room_send(
                room_id,
                message_type,
                content,
                tx_id,
                ignore_unverified_devices=self.trust != "verified",
            )

    async def tell_key_change(self, room_id: str, change: KeyChange) -> None:
        """Say in plain text, now and then per room and device, why the bot stopped sending."""
        told = (room_id, change.user_id, change.device_id)
        now = time.monotonic()
        last = self._told.get(told)
        if last is not None and now - last < self._told_interval:
            return
        self._told[told] = now
        body = (
            f"🔒 {change.user_id}'s device {change.device_id} presented new encryption keys "
            "since I first saw it. That can mean someone is impersonating it, so I will not send "
            "encrypted messages into this room until it is verified again (or removed)."
        )
        response = await self.room_send_plain(
            room_id, {"msgtype": "m.notice", "body": body, "m.mentions": {}}
        )
        if not isinstance(response, nio.RoomSendResponse):
            log.warning("could not post the key change notice in %s: %s", room_id, response)

    async def room_send_plain(self, room_id: str, content: dict[str, Any]) -> Any:
        """Send an ``m.room.message`` unencrypted, even into an encrypted room.

        Only for what a device the bot does not share keys with must still read: why the bot
        will not answer it. It carries no conversation content.
        """
        method, path, data = Api.room_send(
            self.access_token, room_id, "m.room.message", content, uuid4()
        )
        return await self._send(nio.RoomSendResponse, method, path, data, (room_id,))


def with_default_store(config: MatrixConfig, database: Path) -> MatrixConfig:
    """``config`` with ``crypto_store`` beside the bot's database when it does not name one."""
    if config.crypto_store is not None:
        return config
    directory = database.parent / f"{database.stem}-matrix-crypto"
    return config.model_copy(update={"crypto_store": directory})


def describe_store(config: MatrixConfig) -> tuple[bool, str]:
    """For ``ollabot check``: whether encryption works as configured, in one line.

    The device is ``[matrix] device_id``, else the one whose store file is in the directory.
    The store is opened read-only.

    Returns:
        ``(healthy, text)``.
    """
    if not config.encryption:
        return True, "off ([matrix] encryption = false)"
    if not ENCRYPTION_ENABLED:
        return False, (
            "unavailable: matrix-nio is installed without its e2e extra "
            "(pip install 'matrix-nio[e2e]')"
        )
    directory = config.crypto_store
    if directory is None:
        return False, "no crypto store directory ([matrix] crypto_store)"
    prefix = f"{config.user_id}_"
    if config.device_id is not None:
        path = directory / f"{prefix}{config.device_id}.db"
    else:
        found = sorted(directory.glob(f"{prefix}*.db"), key=lambda p: p.stat().st_mtime)
        if not found:
            return True, f"available; no device yet (its crypto store will be in {directory})"
        path = found[-1]
    device = path.name[len(prefix) : -len(".db")]
    if not path.exists():
        return True, f"available; device {device}; crypto store {path} not created yet"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            accounts = db.execute("SELECT count(*) FROM accounts").fetchone()[0]
    except sqlite3.Error as err:
        return False, f"device {device}: crypto store {path} is not readable ({err})"
    if not accounts:
        return False, f"device {device}: crypto store {path} holds no account"
    return True, f"available; device {device}; crypto store {path} is readable"
