"""The Matrix adapter's settings: the ``[matrix]`` table of the bot config, validated once.

Secrets (the access token or password) are not part of it: the caller passes them to
:func:`adapters.matrix.run_matrix` from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MatrixConfig"]


class MatrixConfig(BaseModel):
    """How the bot connects to a homeserver and behaves in rooms.

    Attributes:
        homeserver: Base URL of the homeserver, e.g. ``https://matrix.example.org``.
        user_id: The bot's full Matrix id, e.g. ``@ollabot:example.org``.
        device_id: The device to log in as; ``None`` reuses the one stored from the last run.
        device_name: Display name of a device created by a password login.
        command_prefix: Messages starting with it are commands (``!ollabot model set x``).
        moderator_power_level: Members at or above it in a room moderate the room and its
            threads; at or above it in every room of a space (that the bot is in), the space.
        bot_admins: Users (full ids) who moderate every scope everywhere, spaces included.
        reply_in_thread: Answer in a thread rooted at the addressing message (one thread = one
            conversation); ``False`` answers with plain replies and the room is the conversation.
        allowed_inviters: Users whose invites are accepted (full ids).
        allowed_servers: Servers whose users' invites, or whose rooms, are accepted. When both
            lists are empty, invites from the bot's own server are accepted.
        ignored_users: Other bots whose messages are never answered.
        messages_per_second: The room's send budget (Synapse ``rc_message`` default 0.2/s).
        message_burst: Burst of that budget: one below Synapse's default ``burst_count`` of 10,
            because Synapse leaks its bucket from the first action of a burst while ours refills
            from each grant; the spare action keeps the two from disagreeing by one event.
        max_chars: Longest message body before a reply continues in a new message (the event
            size limit is 65,536 bytes; this keeps well below it with HTML).
        sync_timeout_ms: Long-poll timeout of ``/sync``.
        max_rate_limit_retries: How many 429s matrix-nio may retry by itself per request.
            0: a 429 comes straight back and the streamer decides (it coalesces newer text).
        max_timeout_retries: How many connection timeouts matrix-nio retries per request.
        max_attachment_bytes: Larger files (``m.image``, ``m.file``) are left out, with a note.
        encryption: Read and answer end-to-end encrypted rooms (needs ``matrix-nio[e2e]``).
        crypto_store: Directory of the encryption keys (olm account, sessions, room keys, device
            list), one SQLite file per device. Losing it loses the ability to read encrypted
            rooms: back it up with the database. ``ollabot run`` puts it beside the database.
        device_trust: Whose devices get the room keys: ``tofu`` trusts a device when first seen
            and warns when a known device's keys change; ``all`` shares with every device;
            ``verified`` only with devices verified by emoji (SAS), accepted from moderators.
        undecryptable_notice_after: Seconds to wait for a missing room key before telling the
            sender their message could not be read.
        undecryptable_notice_interval: At most one such notice per sender and room this often.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    homeserver: str
    user_id: str
    device_id: str | None = None
    device_name: str = "ollabot"
    command_prefix: str = "!ollabot"
    moderator_power_level: int = 50
    bot_admins: frozenset[str] = frozenset()
    reply_in_thread: bool = True
    allowed_inviters: frozenset[str] = frozenset()
    allowed_servers: frozenset[str] = frozenset()
    ignored_users: frozenset[str] = frozenset()
    messages_per_second: float = Field(default=0.2, gt=0)
    message_burst: int = Field(default=9, ge=1)
    max_chars: int = Field(default=16_000, ge=500, le=30_000)
    sync_timeout_ms: int = Field(default=30_000, ge=0)
    max_rate_limit_retries: int = Field(default=0, ge=0, le=5)
    max_timeout_retries: int = Field(default=3, ge=0, le=20)
    max_attachment_bytes: int = Field(default=512 * 1024, ge=0)
    encryption: bool = True
    crypto_store: Path | None = None
    device_trust: Literal["tofu", "all", "verified"] = "tofu"
    undecryptable_notice_after: float = Field(default=5.0, ge=0, le=600)
    undecryptable_notice_interval: float = Field(default=600.0, ge=0)

    @field_validator("homeserver")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("user_id")
    @classmethod
    def _mxid(cls, value: str) -> str:
        if not value.startswith("@") or ":" not in value:
            raise ValueError("must be a full Matrix id like @bot:example.org")
        return value

    @field_validator("command_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @property
    def server_name(self) -> str:
        """The bot's own server (the part after the first colon of its id)."""
        return self.user_id.split(":", 1)[1]
