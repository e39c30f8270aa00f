"""People with encrypting clients: real matrix-nio with vodozemac, each device with its own store.

A :class:`CryptoHuman` is one device of one user. Like a real client it syncs, uploads and
queries keys, and only then sends: nio decrypts only during a sync, and sends plaintext into a
room it has not yet seen as encrypted, so :meth:`CryptoHuman.send` first syncs until the room is
known to be encrypted. Everything the device decrypted is kept per room, in order.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import nio

from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import eventually

__all__ = ["CryptoHuman", "ENCRYPTION_STATE"]

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


class CryptoHuman:
    """One device of a person, logged in with a password, encrypting.

    Use :meth:`register` for a new person, :meth:`second_device` for another login of the same.
    """

    def __init__(
        self,
        synapse: SynapseServer,
        user_id: str,
        password: str,
        login: dict[str, Any],
        store: Path,
    ) -> None:
        self.synapse = synapse
        self.user_id = user_id
        self.password = password
        self.device_id: str = login["device_id"]
        self.store = store
        store.mkdir(parents=True, exist_ok=True)
        self.client = nio.AsyncClient(
            synapse.url,
            user_id,
            device_id=self.device_id,
            store_path=str(store),
            config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        )
        self.client.restore_login(user_id, self.device_id, login["access_token"])
        # room id -> every timeline event this device saw (decrypted when it could)
        self.seen: dict[str, list[Any]] = {}
        self.to_device: list[Any] = []

    @classmethod
    def register(cls, synapse: SynapseServer, stores: Path) -> CryptoHuman:
        name = f"crypto-{uuid.uuid4().hex[:8]}"
        password = f"pw-{name}"
        user_id, _ = synapse.register(name, password=password)
        synapse.lift_ratelimit(user_id)
        return cls(synapse, user_id, password, _login(synapse, name, password), stores / name)

    def second_device(self, stores: Path) -> CryptoHuman:
        name = self.user_id[1:].split(":")[0]
        login = _login(self.synapse, name, self.password)
        return CryptoHuman(
            self.synapse,
            self.user_id,
            self.password,
            login,
            stores / f"{name}-{login['device_id']}",
        )

    async def close(self) -> None:
        await self.client.close()

    # --- syncing ------------------------------------------------------------------------------

    async def step(self) -> None:
        """One sync, then the key upkeep a client does between syncs."""
        response = await self.client.sync(
            timeout=0, full_state=True if self.client.next_batch is None else None
        )
        assert isinstance(response, nio.SyncResponse), response
        for room_id, info in response.rooms.join.items():
            self.seen.setdefault(room_id, []).extend(info.timeline.events)
        self.to_device.extend(response.to_device_events)
        await self.upkeep()

    async def upkeep(self) -> None:
        await self.client.send_to_device_messages()
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())
        await self.client.send_to_device_messages()

    async def until(self, probe: Any, within: float = 30.0) -> Any:
        """Sync until ``probe()`` is truthy; its value."""

        async def stepped() -> Any:
            await self.step()
            return probe()

        return await eventually(stepped, within=within)

    # --- rooms --------------------------------------------------------------------------------

    async def create_dm(self, bot_id: str) -> str:
        """An encrypted direct message, created the way Element creates one."""
        response = await self.client.room_create(
            is_direct=True,
            invite=[bot_id],
            initial_state=[ENCRYPTION_STATE],
            preset=nio.RoomPreset.trusted_private_chat,
        )
        assert isinstance(response, nio.RoomCreateResponse), response
        return str(response.room_id)

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        assert isinstance(response, nio.JoinResponse), response

    async def wait_member(self, room_id: str, user_id: str) -> None:
        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            return room is not None and room.encrypted and user_id in room.users

        await self.until(joined)

    async def send(
        self,
        room_id: str,
        text: str,
        *,
        mention: str | None = None,
        thread_root: str | None = None,
    ) -> str:
        """Send an encrypted text message (shared with every device, as Element does)."""
        await self.until(lambda: (r := self.client.rooms.get(room_id)) is not None and r.encrypted)
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        content["m.mentions"] = {"user_ids": [mention]} if mention else {}
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread_root},
            }
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def send_file(self, room_id: str, name: str, data: bytes, mimetype: str) -> str:
        """Send a file the way Element does in an encrypted room: the file itself encrypted."""
        upload, keys = await self.client.upload(
            io.BytesIO(data), content_type=mimetype, filename=name, encrypt=True, filesize=len(data)
        )
        assert isinstance(upload, nio.UploadResponse), upload
        assert keys is not None
        content = {
            "msgtype": "m.file",
            "body": name,
            "info": {"mimetype": mimetype, "size": len(data)},
            "file": {**keys, "url": upload.content_uri},
        }
        response = await self.client.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(response, nio.RoomSendResponse), response
        return str(response.event_id)

    async def react(self, room_id: str, event_id: str, key: str) -> None:
        """An encrypted reaction, as Element sends it in an encrypted room.

        nio's ``room_send`` sends reactions in plain text, so this encrypts with the device's room
        session and puts the event itself (the relation stays in clear, as the spec says).
        """
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        kind, content = self.client.encrypt(room_id, "m.reaction", {"m.relates_to": relation})
        txn = uuid.uuid4().hex
        path = f"/_matrix/client/v3/rooms/{room_id}/send/{kind}/{txn}"
        await asyncio.to_thread(
            self.synapse.request, "PUT", path, content, token=self.client.access_token
        )

    # --- what this device read ----------------------------------------------------------------

    def undecrypted(self, room_id: str, sender: str) -> list[Any]:
        return [
            e
            for e in self.seen.get(room_id, [])
            if isinstance(e, nio.MegolmEvent) and e.sender == sender
        ]

    def messages(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        """Decrypted ``m.room.message`` sources from ``sender`` (edits included), in order."""
        return [
            e.source
            for e in self.seen.get(room_id, [])
            if getattr(e, "sender", None) == sender
            and e.source.get("type") == "m.room.message"
            and getattr(e, "decrypted", False)
        ]

    def answers(self, room_id: str, bot_id: str, asked: str) -> list[dict[str, Any]]:
        """The bot's messages (not edits) relating to ``asked`` (thread or reply)."""
        found = []
        for source in self.messages(room_id, bot_id):
            rel = source["content"].get("m.relates_to", {})
            if rel.get("rel_type") == "m.replace":
                continue
            if rel.get("m.in_reply_to", {}).get("event_id") == asked:
                found.append(source)
        return found

    def edits(self, room_id: str, bot_id: str, original: str) -> list[dict[str, Any]]:
        return [
            s
            for s in self.messages(room_id, bot_id)
            if s["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
            and s["content"]["m.relates_to"].get("event_id") == original
        ]

    def shown(self, room_id: str, bot_id: str, original: dict[str, Any]) -> str:
        """What this device shows for a bot message: the newest edit it decrypted, or itself."""
        edits = self.edits(room_id, bot_id, original["event_id"])
        if edits:
            return str(edits[-1]["content"]["m.new_content"]["body"])
        return str(original["content"]["body"])


def _login(synapse: SynapseServer, name: str, password: str) -> dict[str, Any]:
    return synapse.request(
        "POST",
        "/_matrix/client/v3/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": name},
            "password": password,
        },
    )
