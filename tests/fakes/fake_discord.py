"""A wire-level fake of Discord's gateway (websocket) and REST API, for the real discord.py client.

One aiohttp server on 127.0.0.1 serves both. Point discord.py at it with
``discord.http.Route.BASE = fake.api_base`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``
(the adapter does this from its ``api_base_url`` / ``gateway_url`` settings).

It models what a user would see: every message the bot creates and every edit, with the
``allowed_mentions`` it was sent with; interactions and their responses; threads; typing;
command syncs; and the failure modes that matter: a per-channel create/edit rate limit answered
with 429 + ``retry_after`` + ``Via`` (as Discord does), an expired interaction token, and a
gateway that closes mid-reply and expects a RESUME.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
MAX_CONTENT = 2000

# Permission bits used by the tests.
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_MANAGE_CHANNELS = 1 << 4
PERM_MANAGE_GUILD = 1 << 5
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_THREADS = 1 << 34
PERM_DEFAULT = PERM_VIEW_CHANNEL | PERM_SEND_MESSAGES | (1 << 16) | (1 << 38) | (1 << 31)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).isoformat()


@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 1

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": True,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    id: int
    name: str
    type: int  # 0 text, 1 DM, 4 category, 11 public thread
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    recipient: FakeUser | None = None
    # Discord's permission overwrites: {"id", "type" (0 role, 1 member), "allow", "deny"}.
    overwrites: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": str(self.id), "type": self.type, "name": self.name}
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
            data["position"] = 0
            if self.type != 11:  # a thread has none: it follows its parent's
                data["permission_overwrites"] = list(self.overwrites)
            data["nsfw"] = False
            data["parent_id"] = str(self.parent_id) if self.parent_id else None
        if self.type == 0:
            data.update(topic=None, rate_limit_per_user=0, last_message_id=None)
        if self.type == 11:
            data.update(
                owner_id=str(self.owner_id),
                message_count=0,
                member_count=1,
                rate_limit_per_user=0,
                last_message_id=None,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _iso(),
                    "locked": False,
                },
            )
        if self.type == 1 and self.recipient is not None:
            data["recipients"] = [self.recipient.payload()]
            data.pop("name")
        return data


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)  # user id -> role ids

    def member_payload(self, user: FakeUser, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.members.get(user.id, [])],
            "joined_at": _iso(0),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
        }
        if with_user:
            data["user"] = user.payload()
        return data

    def permissions_of(self, user_id: int, channel: FakeChannel | None = None) -> int:
        """The member's permissions, computed as Discord does.

        Without ``channel``: the guild-level permissions from their roles. With it: those
        permissions in that channel, its overwrites applied (@everyone, then the member's roles
        together, then the member); a thread uses its parent channel's overwrites.
        """
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        roles = self.members.get(user_id, [])
        perms = self.roles[self.id].permissions
        for role_id in roles:
            perms |= self.roles[role_id].permissions
        if perms & PERM_ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel is None:
            return perms
        if channel.type == 11 and channel.parent_id in self.channels:
            channel = self.channels[channel.parent_id]
        by_id = {int(o["id"]): o for o in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone is not None:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for role_id in roles:
            if (o := by_id.get(role_id)) is not None and o["type"] == 0:
                allow |= int(o["allow"])
                deny |= int(o["deny"])
        perms = (perms & ~deny) | allow
        member = by_id.get(user_id)
        if member is not None and member["type"] == 1:
            perms = (perms & ~int(member["deny"])) | int(member["allow"])
        return perms


ALL_PERMISSIONS = (1 << 53) - 1


@dataclass
class Edit:
    """One version of a message, as the bot sent it."""

    at: float
    content: str
    allowed_mentions: dict[str, Any] | None


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    author: FakeUser
    content: str
    allowed_mentions: dict[str, Any] | None = None
    ephemeral: bool = False
    loading: bool = False
    reference_id: int | None = None
    interaction_token: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[FakeUser] = field(default_factory=list)
    history: list[Edit] = field(default_factory=list)
    deleted: bool = False

    @property
    def edits(self) -> int:
        """How many times the content changed after creation."""
        return max(0, len(self.history) - 1)


@dataclass
class FakeInteraction:
    id: int
    token: str
    channel_id: int
    user: FakeUser
    kind: int
    created_at: float = field(default_factory=time.monotonic)
    callback_type: int | None = None
    callback_data: dict[str, Any] | None = None
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    expired: bool = False
    responded: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ephemeral(self) -> bool:
        data = self.callback_data or {}
        return bool(int(data.get("flags", 0) or 0) & 64)


class ChannelLimiter:
    """Discord-style fixed window: ``limit`` creates+edits per ``window`` seconds per channel.

    A window opens with the first operation and gives the whole budget back when it ends, which
    is what ``X-RateLimit-Reset-After`` describes.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[int, tuple[float, int]] = {}  # channel -> (window start, used)

    def check(self, channel_id: int) -> tuple[bool, int, float]:
        """Take one operation; returns (allowed, remaining, seconds until the window resets)."""
        now = time.monotonic()
        start, used = self._windows.get(channel_id, (now, 0))
        if now >= start + self.window:
            start, used = now, 0
        reset_after = start + self.window - now
        if used >= self.limit:
            self._windows[channel_id] = (start, used)
            return False, 0, reset_after
        used += 1
        self._windows[channel_id] = (start, used)
        return True, self.limit - used, reset_after


def _guild_of_event(event: str, data: dict[str, Any]) -> int | None:
    if event in ("GUILD_CREATE", "GUILD_UPDATE"):
        return int(data["id"])
    guild_id = data.get("guild_id")
    return int(guild_id) if guild_id else None


@dataclass
class GatewaySession:
    """One gateway session: its shard, its sequence numbers, and (while connected) its socket.

    A session outlives its connection: events for it queue while it is disconnected and are
    replayed when the client RESUMEs it.
    """

    id: str
    shard: tuple[int, int]  # (shard id, shard count)
    ws: web.WebSocketResponse | None = None
    seq: int = 0
    queued: list[dict[str, Any]] = field(default_factory=list)

    def covers(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        return shard_id == (0 if guild_id is None else (guild_id >> 22) % count)

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws is None:
            self.queued.append(frame)
            return
        self.seq += 1
        await self.ws.send_str(json.dumps({"op": 0, "s": self.seq, **frame}))

    async def flush(self) -> None:
        queued, self.queued = self.queued, []
        for frame in queued:
            await self.send(frame)


class FakeDiscord:
    """Discord's gateway and REST API on one loopback port. Use as an async context manager.

    The gateway shards as Discord does: a client IDENTIFYs with ``shard: [id, count]`` and gets
    only the guilds (and their events) of that shard, ``(guild_id >> 22) % count``; direct
    messages go to shard 0. ``GET /gateway/bot`` recommends ``recommended_shards``.
    """

    def __init__(
        self, *, rate_limit: tuple[int, float] | None = None, rate_limit_headers: bool = True
    ) -> None:
        self._ids = itertools.count(1)
        self.app_id = self.new_id()
        self.bot_user = FakeUser(self.app_id, "ollabot", bot=True)
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        # When true, interaction follow-ups (POST /webhooks/{app}/{token}) are refused with 403,
        # as Discord refuses them where the bot lacks a permission.
        self.refuse_followups = False
        self.attachment_data: dict[int, tuple[str, str, bytes]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        self.typing: dict[int, int] = {}
        self.limiter = ChannelLimiter(*rate_limit) if rate_limit else None
        self.rate_limit_headers = rate_limit_headers
        self.threads_forbidden = False
        self.valid_token: str | None = None  # None: any bot token is accepted
        self.rate_limited_count = 0
        self.identifies = 0
        self.resumes = 0
        self.identified_shards: list[tuple[int, int]] = []  # (shard id, count) per IDENTIFY
        self.recommended_shards = 1  # what GET /gateway/bot answers
        self.sessions: list[GatewaySession] = []
        self._session_ids = itertools.count(1)
        # Events dispatched before any session could take them (the world is built before the
        # bot connects): each goes to the first session that covers it.
        self._pending: list[tuple[int | None, dict[str, Any]]] = []
        self._connected = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ----- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_get("/attachments/{id}/{filename}", self._attachment)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for session in self.sessions:
            if session.ws is not None:
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # ----- world building --------------------------------------------------------------------

    def new_id(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def add_user(self, name: str, *, bot: bool = False) -> FakeUser:
        user = FakeUser(self.new_id(), name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "guild",
        *,
        owner: FakeUser | None = None,
        shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """A guild; with ``shard=(id, count)``, one whose events go to that shard."""
        gid = self.new_id()
        if shard is not None:
            shard_id, count = shard
            ms = gid >> 22
            ms -= (ms - shard_id) % count  # an id a few ms older, on the wanted shard
            gid = (ms << 22) | (gid & 0x3FFFFF)
        owner_id = owner.id if owner else self.new_id()
        guild = FakeGuild(gid, name, owner_id)
        guild.roles[gid] = FakeRole(gid, "@everyone", PERM_DEFAULT, position=0)
        guild.members[self.bot_user.id] = []
        self.guilds[gid] = guild
        return guild

    def add_role(self, guild: FakeGuild, name: str, permissions: int = 0) -> FakeRole:
        role = FakeRole(self.new_id(), name, permissions)
        guild.roles[role.id] = role
        return role

    def add_member(self, guild: FakeGuild, user: FakeUser, roles: list[FakeRole] = ()) -> None:  # type: ignore[assignment]
        guild.members[user.id] = [r.id for r in roles]

    def add_overwrite(
        self,
        channel: FakeChannel,
        target: FakeRole | FakeUser,
        *,
        allow: int = 0,
        deny: int = 0,
    ) -> None:
        """A permission overwrite on ``channel`` for a role or a member (before connecting)."""
        kind = 1 if isinstance(target, FakeUser) else 0
        channel.overwrites = [o for o in channel.overwrites if int(o["id"]) != target.id]
        channel.overwrites.append(
            {"id": str(target.id), "type": kind, "allow": str(allow), "deny": str(deny)}
        )

    def add_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        parent: FakeChannel | None = None,
        category: bool = False,
    ) -> FakeChannel:
        ch = FakeChannel(
            self.new_id(),
            name,
            4 if category else 0,
            guild_id=guild.id,
            parent_id=parent.id if parent else None,
        )
        guild.channels[ch.id] = ch
        self.channels[ch.id] = ch
        return ch

    def add_dm(self, user: FakeUser) -> FakeChannel:
        ch = FakeChannel(self.new_id(), "", 1, recipient=user)
        self.channels[ch.id] = ch
        return ch

    async def add_thread(self, parent: FakeChannel, name: str, owner: FakeUser) -> FakeChannel:
        """A thread someone else opened (dispatches THREAD_CREATE)."""
        thread = self._new_thread(parent, name, owner.id)
        await self.dispatch("THREAD_CREATE", {**thread.payload(), "newly_created": True})
        return thread

    def _new_thread(self, parent: FakeChannel, name: str, owner_id: int) -> FakeChannel:
        assert parent.guild_id is not None
        thread = FakeChannel(
            self.new_id(), name[:100], 11, guild_id=parent.guild_id, parent_id=parent.id
        )
        thread.owner_id = owner_id
        self.guilds[parent.guild_id].channels[thread.id] = thread
        self.channels[thread.id] = thread
        return thread

    # ----- what the user sees ----------------------------------------------------------------

    def messages_in(self, channel_id: int, *, include_ephemeral: bool = True) -> list[FakeMessage]:
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id
            and not m.deleted
            and (include_ephemeral or not m.ephemeral)
        ]

    def bot_messages_in(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages_in(channel_id) if m.author.id == self.bot_user.id]

    def visible_text(self, message_id: int) -> str:
        return self.messages[message_id].content

    def threads_of(self, channel_id: int) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type == 11 and c.parent_id == channel_id]

    async def wait_for(self, predicate: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every change); returns it."""

        async def _wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        return await asyncio.wait_for(_wait(), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def expire_interaction(self, interaction: FakeInteraction) -> None:
        """Make the token stale, as Discord does after 15 minutes."""
        interaction.expired = True

    # ----- gateway ---------------------------------------------------------------------------

    async def wait_connected(self, within: float = 5.0) -> None:
        """Wait until some gateway session is connected."""
        await asyncio.wait_for(self._connected.wait(), within)

    def connected_shards(self) -> list[tuple[int, int]]:
        """The (shard id, count) of every connected session, in the order they identified."""
        return [s.shard for s in self.sessions if s.ws is not None]

    async def wait_shard(self, shard_id: int, count: int, within: float = 5.0) -> None:
        """Wait until a session for shard ``shard_id`` of ``count`` is connected."""
        await self.wait_for(lambda: (shard_id, count) in self.connected_shards(), within)

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection with a resumable code; the clients must RESUME."""
        self._connected.clear()
        for session in self.sessions:
            ws, session.ws = session.ws, None
            if ws is not None:
                await ws.close(code=code)

    def shard_of(self, guild_id: int | None, count: int) -> int:
        """The shard Discord sends a guild's events to; direct messages go to shard 0."""
        return 0 if guild_id is None else (guild_id >> 22) % count

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH to every session whose shard covers its guild, as Discord does.

        A session that is disconnected gets it after it RESUMEs; a new session (IDENTIFY) never
        gets what was sent before it. Before any session covers the guild, it waits for the first.
        """
        guild_id = _guild_of_event(event, data)
        targets = [s for s in self.sessions if s.covers(guild_id)]
        if not targets:
            self._pending.append((guild_id, {"t": event, "d": data}))
            return
        for session in targets:
            await session.send({"t": event, "d": data})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        session: GatewaySession | None = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                self.identifies += 1
                shard_id, count = frame["d"].get("shard") or (0, 1)
                self.identified_shards.append((shard_id, count))
                session = GatewaySession(
                    f"fake-session-{next(self._session_ids)}", (shard_id, count)
                )
                self.sessions.append(session)
                await self._send_ready(session, ws)
            elif op == 6:
                d = frame["d"]
                found = [s for s in self.sessions if s.id == d.get("session_id")]
                if not found:
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
                    continue
                session = found[0]
                self.resumes += 1
                session.ws = ws
                await session.send({"t": "RESUMED", "d": {}})
                await session.flush()
                self._connected.set()
                await self._notify()
        if session is not None and session.ws is ws:
            session.ws = None
            if not any(s.ws is not None for s in self.sessions):
                self._connected.clear()
            await self._notify()
        return ws

    async def _send_ready(self, session: GatewaySession, ws: web.WebSocketResponse) -> None:
        guilds = [g for g in self.guilds.values() if session.covers(g.id)]
        ready = {
            "v": 10,
            "user": self.bot_user.payload(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.app_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "shard": list(session.shard),
        }
        session.ws = ws
        await session.send({"t": "READY", "d": ready})
        for guild in guilds:
            await session.send({"t": "GUILD_CREATE", "d": self._guild_payload(guild)})
        waiting, self._pending = self._pending, []
        for guild_id, frame in waiting:
            if session.covers(guild_id):
                await session.send(frame)
            else:
                self._pending.append((guild_id, frame))
        self._connected.set()
        await self._notify()

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        chans = [c for c in guild.channels.values() if c.type != 11]
        threads = [c for c in guild.channels.values() if c.type == 11]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": len(guild.members),
            "members": [guild.member_payload(self.users[u]) for u in guild.members],
            "channels": [c.payload() for c in chans],
            "threads": [t.payload() for t in threads],
            "voice_states": [],
            "presences": [],
            "large": False,
            "unavailable": False,
            "joined_at": _iso(0),
            "premium_tier": 0,
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
        }

    # ----- user actions ----------------------------------------------------------------------

    def _guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return self.guilds.get(channel.guild_id) if channel.guild_id else None

    def message_payload(self, msg: FakeMessage) -> dict[str, Any]:
        channel = self.channels[msg.channel_id]
        data: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": msg.author.payload(),
            "content": msg.content,
            "timestamp": _iso(((msg.id >> 22) + DISCORD_EPOCH_MS) / 1000),
            "edited_timestamp": _iso() if msg.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [u.payload() for u in msg.mentions],
            "mention_roles": [],
            "attachments": msg.attachments,
            "embeds": [],
            "pinned": False,
            "type": 19 if msg.reference_id else 0,
            "flags": (64 if msg.ephemeral else 0) | (128 if msg.loading else 0),
            "components": [],
        }
        if msg.interaction_token is not None:
            data["application_id"] = str(self.app_id)
            data["webhook_id"] = str(self.app_id)
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
        if msg.reference_id is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(msg.reference_id),
                "channel_id": str(msg.channel_id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            }
            ref = self.messages.get(msg.reference_id)
            data["referenced_message"] = self.message_payload(ref) if ref else None
        return data

    async def post_message(
        self,
        user: FakeUser,
        channel: FakeChannel,
        content: str,
        *,
        mentions: list[FakeUser] = (),  # type: ignore[assignment]
        reference: FakeMessage | int | None = None,
        attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    ) -> FakeMessage:
        """A user writes a message (MESSAGE_CREATE). Attachments are (filename, type, bytes)."""
        ref_id = reference.id if isinstance(reference, FakeMessage) else reference
        msg = FakeMessage(
            self.new_id(),
            channel.id,
            user,
            content,
            reference_id=ref_id,
            mentions=list(mentions),
        )
        for filename, content_type, data in attachments:
            att_id = self.new_id()
            self.attachment_data[att_id] = (filename, content_type, data)
            url = f"http://127.0.0.1:{self.port}/attachments/{att_id}/{filename}"
            msg.attachments.append(
                {
                    "id": str(att_id),
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": content_type,
                }
            )
        msg.history.append(Edit(time.monotonic(), content, None))
        self.messages[msg.id] = msg
        payload = self.message_payload(msg)
        guild = self._guild_of(channel)
        if guild is not None:
            payload["member"] = guild.member_payload(user, with_user=False)
            payload["mentions"] = [
                {**u.payload(), "member": guild.member_payload(u, with_user=False)}
                for u in msg.mentions
            ]
        await self.dispatch("MESSAGE_CREATE", payload)
        return msg

    async def send_slash(
        self,
        user: FakeUser,
        channel: FakeChannel,
        command: str,
        *,
        subcommand: str | None = None,
        options: dict[str, Any] | None = None,
        focused: str | None = None,
    ) -> FakeInteraction:
        """A user runs a slash command (INTERACTION_CREATE). With ``focused``: autocomplete."""
        opts = [
            {"name": k, "type": _option_type(v), "value": v}
            | ({"focused": True} if k == focused else {})
            for k, v in (options or {}).items()
        ]
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        data: dict[str, Any] = {
            "id": str(self.new_id()),
            "name": command,
            "type": 1,
            "options": opts,
        }
        kind = 4 if focused else 2
        inter = FakeInteraction(self.new_id(), f"tok-{self.new_id()}", channel.id, user, kind)
        self.interactions[inter.token] = inter
        guild = self._guild_of(channel)
        payload: dict[str, Any] = {
            "id": str(inter.id),
            "application_id": str(self.app_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "token": inter.token,
            "version": 1,
            "app_permissions": str((1 << 53) - 1),
            "locale": "en-US",
            "attachment_size_limit": 25 * 1024 * 1024,
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0 if guild else 1,
        }
        if guild is not None:
            data["guild_id"] = str(guild.id)
            payload["guild_id"] = str(guild.id)
            payload["guild_locale"] = "en-US"
            payload["member"] = {
                **guild.member_payload(user),
                # Discord sends the member's permissions in this channel, overwrites included.
                "permissions": str(guild.permissions_of(user.id, channel)),
            }
        else:
            payload["user"] = user.payload()
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    async def autocomplete(
        self,
        user: FakeUser,
        channel: FakeChannel,
        command: str,
        *,
        subcommand: str | None,
        option: str,
        value: str,
        within: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type into an autocompleted option; returns the choices the bot offered."""
        inter = await self.send_slash(
            user, channel, command, subcommand=subcommand, options={option: value}, focused=option
        )
        await asyncio.wait_for(inter.responded.wait(), within)
        assert inter.callback_type == 8, inter.callback_type
        return list((inter.callback_data or {}).get("choices", []))

    # ----- REST ------------------------------------------------------------------------------

    async def _attachment(self, request: web.Request) -> web.Response:
        filename, content_type, data = self.attachment_data[int(request.match_info["id"])]
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["tail"].split("/") if p]
        body: dict[str, Any] = {}
        if request.can_read_body and request.content_type == "application/json":
            body = await request.json()
        elif request.can_read_body and request.content_type == "multipart/form-data":
            body = await _multipart(request)
        is_webhook = parts[:1] in (["webhooks"], ["interactions"])
        auth = request.headers.get("Authorization", "")
        if not is_webhook and self.valid_token is not None and auth != f"Bot {self.valid_token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        try:
            return await self._route(request.method, parts, body, request)
        finally:
            await self._notify()

    async def _route(
        self, method: str, p: list[str], body: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        m = method
        if p == ["users", "@me"] and m == "GET":
            return _json(self.bot_user.payload())
        if p == ["oauth2", "applications", "@me"]:
            return _json(self._application())
        if p == ["gateway", "bot"] and m == "GET":
            limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
            return _json(
                {
                    "url": self.gateway_url,
                    "shards": self.recommended_shards,
                    "session_start_limit": limit,
                }
            )
        if p[:1] == ["applications"]:
            return self._commands(m, p, body)
        if p[:1] == ["interactions"] and p[-1] == "callback":
            return await self._callback(p[2], body)
        if p[:1] == ["webhooks"]:
            return await self._webhook(m, p[2], p[3:], body)
        if p[:1] == ["channels"]:
            return await self._channel(m, int(p[1]), p[2:], body)
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.app_id),
            "name": "ollabot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.bot_user.payload(),
            "verify_key": "0" * 64,
            "flags": 0,
        }

    def _commands(self, m: str, p: list[str], body: Any) -> web.Response:
        guild_id = int(p[3]) if len(p) > 3 and p[2] == "guilds" else None
        if m == "PUT":
            cmds = [
                {
                    **c,
                    "id": str(self.new_id()),
                    "application_id": str(self.app_id),
                    "version": "1",
                    "default_member_permissions": c.get("default_member_permissions"),
                    **({"guild_id": str(guild_id)} if guild_id else {}),
                }
                for c in body
            ]
            self.command_syncs.append((guild_id, cmds))
            return _json(cmds)
        synced = [c for g, c in self.command_syncs if g == guild_id]
        return _json(synced[-1] if synced else [])

    def _limited(self, channel_id: int) -> tuple[web.Response | None, dict[str, str]]:
        if self.limiter is None:
            return None, {}
        ok, remaining, reset_after = self.limiter.check(channel_id)
        headers = {
            "X-RateLimit-Limit": str(self.limiter.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "channel-messages",
        }
        if ok:
            # Without headers the client cannot see the budget coming and runs into 429s.
            return None, headers if self.rate_limit_headers else {}
        self.rate_limited_count += 1
        headers.update({"Via": "1.1 google", "Retry-After": str(int(reset_after) + 1)})
        headers["X-RateLimit-Scope"] = "user"
        body = {
            "message": "You are being rate limited.",
            "retry_after": round(reset_after, 3),
            "global": False,
        }
        return _json(body, status=429, headers=headers), headers

    def _create(
        self,
        channel_id: int,
        body: dict[str, Any],
        *,
        token: str | None = None,
        loading: bool = False,
    ) -> FakeMessage | web.Response:
        content = body.get("content") or ""
        if len(content) > MAX_CONTENT:
            return _json(
                {"message": "Invalid Form Body", "code": 50035, "errors": {"content": {}}}, 400
            )
        ref = body.get("message_reference") or {}
        msg = FakeMessage(
            self.new_id(),
            channel_id,
            self.bot_user,
            content,
            allowed_mentions=body.get("allowed_mentions"),
            ephemeral=bool(int(body.get("flags", 0) or 0) & 64),
            loading=loading,
            reference_id=int(ref["message_id"]) if ref.get("message_id") else None,
            interaction_token=token,
        )
        for filename, data in body.get("_uploads") or ():
            att_id = self.new_id()
            self.attachment_data[att_id] = (filename, "text/plain", data)
            msg.attachments.append({"id": str(att_id), "filename": filename, "size": len(data)})
        msg.history.append(Edit(time.monotonic(), content, msg.allowed_mentions))
        self.messages[msg.id] = msg
        return msg

    def _edit(self, msg: FakeMessage, body: dict[str, Any]) -> web.Response | None:
        if "content" in body:
            content = body["content"] or ""
            if len(content) > MAX_CONTENT:
                return _json({"message": "Invalid Form Body", "code": 50035}, 400)
            msg.content = content
            msg.loading = False
        if "allowed_mentions" in body:
            msg.allowed_mentions = body["allowed_mentions"]
        msg.history.append(Edit(time.monotonic(), msg.content, body.get("allowed_mentions")))
        return None

    async def _channel(
        self, m: str, channel_id: int, rest: list[str], body: dict[str, Any]
    ) -> web.Response:
        channel = self.channels.get(channel_id)
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, 404)
        if not rest and m == "GET":
            return _json(channel.payload())
        if rest == ["typing"]:
            self.typing[channel_id] = self.typing.get(channel_id, 0) + 1
            return web.Response(status=204)
        if rest[-1:] == ["threads"] and self.threads_forbidden:
            return _json({"message": "Missing Permissions", "code": 50013}, 403)
        if rest == ["threads"] and m == "POST":
            thread = self._new_thread(channel, body["name"], self.bot_user.id)
            await self.dispatch("THREAD_CREATE", {**thread.payload(), "newly_created": True})
            return _json(thread.payload(), status=201)
        if rest == ["messages"] and m == "POST":
            limited, headers = self._limited(channel_id)
            if limited is not None:
                return limited
            created = self._create(channel_id, body)
            if isinstance(created, web.Response):
                return created
            payload = self.message_payload(created)
            await self.dispatch("MESSAGE_CREATE", payload)
            return _json(payload, headers=headers)
        if len(rest) == 2 and rest[0] == "messages":
            msg = self.messages.get(int(rest[1]))
            if msg is None or msg.channel_id != channel_id:
                return _json({"message": "Unknown Message", "code": 10008}, 404)
            if m == "GET":
                return _json(self.message_payload(msg))
            if m == "PATCH":
                if msg.author.id != self.bot_user.id:
                    return _json({"message": "Cannot edit a message authored by another user"}, 403)
                limited, headers = self._limited(channel_id)
                if limited is not None:
                    return limited
                error = self._edit(msg, body)
                return error or _json(self.message_payload(msg), headers=headers)
            if m == "DELETE":
                msg.deleted = True
                return web.Response(status=204)
        if len(rest) == 3 and rest[0] == "messages" and rest[2] == "threads":
            thread = self._new_thread(channel, body["name"], self.bot_user.id)
            await self.dispatch("THREAD_CREATE", {**thread.payload(), "newly_created": True})
            return _json(thread.payload(), status=201)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    async def _callback(self, token: str, body: dict[str, Any]) -> web.Response:
        inter = self.interactions.get(token)
        if inter is None or inter.expired:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if inter.callback_type is not None:
            return _json(
                {"message": "Interaction has already been acknowledged.", "code": 40060}, 400
            )
        kind = int(body["type"])
        data = body.get("data") or {}
        if body.get("_uploads"):
            data = {**data, "_uploads": body["_uploads"]}
        inter.callback_type = kind
        inter.callback_data = data
        result: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.kind,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": inter.ephemeral,
            }
        }
        if kind in (4, 5):
            created = self._create(inter.channel_id, data, token=token, loading=kind == 5)
            if isinstance(created, web.Response):
                return created
            created.ephemeral = inter.ephemeral
            inter.original_id = created.id
            result["interaction"]["response_message_id"] = str(created.id)
            result["resource"] = {"type": kind, "message": self.message_payload(created)}
        inter.responded.set()
        return _json(result)

    async def _webhook(
        self, m: str, token: str, rest: list[str], body: dict[str, Any]
    ) -> web.Response:
        inter = self.interactions.get(token)
        if inter is None or inter.expired:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        if not rest and m == "POST":
            if self.refuse_followups:
                return _json({"message": "Missing Permissions", "code": 50013}, 403)
            limited, headers = self._limited(inter.channel_id)
            if limited is not None:
                return limited
            created = self._create(inter.channel_id, body, token=token)
            if isinstance(created, web.Response):
                return created
            inter.followup_ids.append(created.id)
            return _json(self.message_payload(created), headers=headers)
        if len(rest) == 2 and rest[0] == "messages":
            msg_id = inter.original_id if rest[1] == "@original" else int(rest[1])
            msg = self.messages.get(msg_id) if msg_id is not None else None
            if msg is None:
                return _json({"message": "Unknown Message", "code": 10008}, 404)
            if m == "GET":
                return _json(self.message_payload(msg))
            if m == "DELETE":
                msg.deleted = True
                return web.Response(status=204)
            limited, headers = self._limited(inter.channel_id)
            if limited is not None:
                return limited
            error = self._edit(msg, body)
            return error or _json(self.message_payload(msg), headers=headers)
        return _json({"message": "404: Not Found", "code": 0}, 404)


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py only parses a body whose Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord) -> Any:
    """Point discord.py's module-level URLs at ``fake`` (for tests that run a bare client)."""
    import discord
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


async def _multipart(request: web.Request) -> dict[str, Any]:
    """A multipart upload (message with files) as its ``payload_json`` plus ``_uploads``:
    ``(filename, bytes)`` for each file part."""
    body: dict[str, Any] = {}
    uploads: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader)
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.filename:
            uploads.append((part.filename, bytes(await part.read())))
    body["_uploads"] = uploads
    return body
