"""The world of the load run (``bench/load.py``): fake Discord, real Synapse, the bot process.

Everything listens on 127.0.0.1. The fakes run in the bench process; the bot runs as its own
process (``python -m ollabot_app run``) so that its memory can be measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.load_report import Tracked
from tests.fakes.fake_discord import FakeChannel, FakeDiscord, FakeUser
from tests.fakes.synapse import SynapseServer

ROOT = Path(__file__).resolve().parents[1]
DISCORD_TOKEN = "bench-discord-token"


# --- Discord -------------------------------------------------------------------------------


@dataclass
class DiscordSide:
    """The fake Discord with one guild of ``channels`` channels and its members."""

    fake: FakeDiscord
    channels: list[FakeChannel]
    users: dict[str, FakeUser] = field(default_factory=dict)
    by_message: dict[int, Tracked] = field(default_factory=dict)

    @classmethod
    def build(
        cls, fake: FakeDiscord, channels: int, user_names: list[str], *, shards: int = 1
    ) -> DiscordSide:
        """One guild per shard (one guild when unsharded), the channels dealt round-robin."""
        if shards == 1:
            guilds = [fake.add_guild("load")]
        else:
            guilds = [fake.add_guild(f"load-{i}", shard=(i, shards)) for i in range(shards)]
        made = [fake.add_channel(guilds[i % len(guilds)], f"load-{i}") for i in range(channels)]
        side = cls(fake, made)
        for name in user_names:
            user = fake.add_user(name)
            for guild in guilds:
                fake.add_member(guild, user)
            side.users[name] = user
        return side

    def answer_to(self, item: Tracked) -> int | None:
        """The bot's message answering ``item`` once its whole answer shows, else ``None``."""
        if not item.event_id:
            return None
        asked = int(item.event_id)
        for message in reversed(list(self.fake.messages.values())):
            if message.reference_id == asked and message.author.id == self.fake.bot_user.id:
                return message.id if f"r{item.tag}end" in message.content else None
        return None

    async def send(self, item: Tracked, text: str, *, after: Tracked | None = None) -> None:
        """The user mentions the bot in the channel with ``text`` (a new conversation), or
        replies to the bot's answer to ``after`` (continuing that conversation) when it shows.
        """
        bot = self.fake.bot_user
        channel = self.fake.channels[int(item.place)]
        user = self.users[item.user]
        answer = self.answer_to(after) if after is not None else None
        if answer is not None:
            item.follow_up = True
            message = await self.fake.post_message(user, channel, text, reference=answer)
        else:
            mention = f"<@{bot.id}> {text}"
            message = await self.fake.post_message(user, channel, mention, mentions=[bot])
        item.event_id = str(message.id)
        self.by_message[message.id] = item

    def notices(self) -> int:
        """Bot messages that are not a reply ("the bot is busy...", "you are number n...")."""
        bot = self.fake.bot_user.id
        return sum(
            1 for m in self.fake.messages.values() if m.author.id == bot and m.reference_id is None
        )

    def scan(self, origin: float) -> None:
        """Look at every bot message replying to a tracked message, every version of it."""
        for message in list(self.fake.messages.values()):
            if message.author.id != self.fake.bot_user.id or message.reference_id is None:
                continue
            item = self.by_message.get(message.reference_id)
            if item is None:
                continue
            for version in message.history:
                item.see(version.content, version.at - origin)


# --- Matrix --------------------------------------------------------------------------------


@dataclass
class MatrixUser:
    user_id: str
    token: str


class MatrixSide:
    """Synapse with ``rooms`` rooms, the bot's account, the simulated users and an observer.

    The observer (the rooms' creator) follows every room through ``/sync`` and records each
    bot event with Synapse's ``origin_server_ts``: the time the event became visible to everyone.
    """

    def __init__(self, synapse: SynapseServer) -> None:
        self.synapse = synapse
        self.rooms: list[str] = []
        self.users: dict[str, MatrixUser] = {}
        self.bot = MatrixUser("", "")
        self.observer = MatrixUser("", "")
        self.by_event: dict[str, Tracked] = {}
        self.user_event_ts: dict[str, float] = {}
        self._reply_of: dict[str, str] = {}  # bot reply event -> user event
        self._pending: dict[str, list[tuple[str, float]]] = {}  # edits seen before their target
        self._orphans: dict[
            str, list[tuple[str, float]]
        ] = {}  # replies seen before the PUT returned
        self.user_429s = 0
        self.notices = 0
        self.limited_syncs = 0
        self._txn = itertools.count()
        self._http: aiohttp.ClientSession | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self.wall_origin = 0.0

    def setup(self, rooms: int, user_names: list[str], bot_name: str) -> None:
        """Register everyone (rate limits lifted), create the rooms, invite the bot, join."""
        synapse = self.synapse
        bot_id, bot_token = synapse.register(bot_name)
        self.bot = MatrixUser(bot_id, bot_token)
        observer_id, observer_token = synapse.register(f"{bot_name}-observer")
        self.observer = MatrixUser(observer_id, observer_token)
        for user in (self.bot, self.observer):
            synapse.lift_ratelimit(user.user_id)
        for name in user_names:
            user_id, token = synapse.register(name)
            synapse.lift_ratelimit(user_id)
            self.users[name] = MatrixUser(user_id, token)
        for i in range(rooms):
            created = synapse.request(
                "POST",
                "/_matrix/client/v3/createRoom",
                {"name": f"load-{i}", "preset": "public_chat", "invite": [self.bot.user_id]},
                token=self.observer.token,
            )
            self.rooms.append(created["room_id"])

    def join_users(self, placement: dict[str, str]) -> None:
        """Each simulated user joins the room it talks in."""
        for name, room in placement.items():
            quoted = urllib.parse.quote(room)
            self.synapse.request(
                "POST", f"/_matrix/client/v3/join/{quoted}", {}, token=self.users[name].token
            )

    def bot_joined_all(self) -> bool:
        for room in self.rooms:
            quoted = urllib.parse.quote(room)
            members = self.synapse.request(
                "GET",
                f"/_matrix/client/v3/rooms/{quoted}/joined_members",
                token=self.observer.token,
            )
            if self.bot.user_id not in members.get("joined", {}):
                return False
        return True

    async def start(self, wall_origin: float) -> None:
        self.wall_origin = wall_origin
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._http is not None:
            await self._http.close()

    async def send(self, item: Tracked, text: str, *, after: Tracked | None = None) -> None:
        """The user mentions the bot in the room with ``text`` (a new thread), or writes in the
        thread of ``after`` (continuing that conversation) once its answer shows.
        """
        assert self._http is not None
        user = self.users[item.user]
        room = urllib.parse.quote(item.place)
        url = (
            f"{self.synapse.url}/_matrix/client/v3/rooms/{room}/send/m.room.message/"
            f"load{os.getpid()}-{next(self._txn)}"
        )
        body = {
            "msgtype": "m.text",
            "body": f"ollabot: {text}",
            "m.mentions": {"user_ids": [self.bot.user_id]},
        }
        if after is not None and after.outcome == "answered" and after.root:
            item.follow_up, item.root = True, after.root
            body["body"] = text
            body["m.mentions"] = {}
            body["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": after.root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": after.event_id},
            }
        headers = {"Authorization": f"Bearer {user.token}"}
        for _ in range(5):
            async with self._http.put(url, json=body, headers=headers) as response:
                data = await response.json()
                if response.status == 429:
                    self.user_429s += 1
                    await asyncio.sleep(data.get("retry_after_ms", 1000) / 1000)
                    continue
                if response.status >= 300:
                    raise RuntimeError(f"send failed: {response.status} {data}")
                item.event_id = data["event_id"]
                item.root = item.root or item.event_id
                self.by_event[item.event_id] = item
                for seen, at in self._orphans.pop(item.event_id, []):
                    item.see(seen, at)
                return
        raise RuntimeError("send kept being rate limited")

    async def _sync_loop(self) -> None:
        assert self._http is not None
        event_filter = json.dumps(
            {
                "presence": {"types": []},
                "account_data": {"types": []},
                "room": {
                    "timeline": {"limit": 1000, "types": ["m.room.message"]},
                    "state": {"types": []},
                    "ephemeral": {"types": []},
                    "account_data": {"types": []},
                },
            }
        )
        since: str | None = None
        headers = {"Authorization": f"Bearer {self.observer.token}"}
        while True:
            params = {"timeout": "1000", "filter": event_filter}
            if since:
                params["since"] = since
            try:
                async with self._http.get(
                    f"{self.synapse.url}/_matrix/client/v3/sync", params=params, headers=headers
                ) as response:
                    data = await response.json()
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)
                continue
            since = data.get("next_batch", since)
            for room in data.get("rooms", {}).get("join", {}).values():
                timeline = room.get("timeline", {})
                if timeline.get("limited") and since is not None:
                    self.limited_syncs += 1
                for event in timeline.get("events", []):
                    self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        at = event.get("origin_server_ts", 0) / 1000 - self.wall_origin
        event_id = event.get("event_id", "")
        content = event.get("content", {})
        if event.get("sender") != self.bot.user_id:
            self.user_event_ts[event_id] = at
            return
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":
            target = relation.get("event_id", "")
            body = (content.get("m.new_content") or {}).get("body", "")
            if target in self._reply_of:
                self._see(self._reply_of[target], body, at)
            else:
                self._pending.setdefault(target, []).append((body, at))
            return
        if content.get("msgtype") != "m.text":
            # Notices ("the bot is busy...", "you are number n in the queue") are not the answer.
            self.notices += 1
            return
        asked = (relation.get("m.in_reply_to") or {}).get("event_id", "")
        self._reply_of[event_id] = asked
        self._see(asked, content.get("body", ""), at)
        for body, when in self._pending.pop(event_id, []):
            self._see(asked, body, when)

    def _see(self, asked: str, body: str, at: float) -> None:
        item = self.by_event.get(asked)
        if item is not None:
            item.see(body, at)
        else:
            self._orphans.setdefault(asked, []).append((body, at))

    def settle_send_times(self) -> None:
        """Use Synapse's own timestamp of each user message, like the bot's events."""
        for event_id, item in self.by_event.items():
            at = self.user_event_ts.get(event_id)
            if at is not None:
                item.sent_at = at


# --- the bot process -------------------------------------------------------------------------


def bot_config(
    path: Path,
    *,
    discord: FakeDiscord,
    matrix: MatrixSide,
    database: Path,
    limits: dict[str, Any],
    matrix_rate: float,
) -> None:
    """Write the bot's TOML config (secrets go in the environment)."""
    lines = [
        "[limits]",
        *(f"{key} = {value}" for key, value in limits.items()),
        "[storage]",
        f'path = "{database}"',
        "[logging]",
        'level = "INFO"',
        "json_format = true",
        "[discord]",
        f'api_base_url = "{discord.api_base}"',
        f'gateway_url = "{discord.gateway_url}"',
        "guild_ready_timeout = 0.5",
        "[matrix]",
        f'homeserver = "{matrix.synapse.url}"',
        f'user_id = "{matrix.bot.user_id}"',
        # The bot's rate limit is lifted on Synapse (override_ratelimit), so it may send often.
        f"messages_per_second = {matrix_rate}",
        f"message_burst = {max(1, int(matrix_rate))}",
        "sync_timeout_ms = 5000",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class BotProcess:
    """``python -m ollabot_app run`` as a child process, its log in a file, its RSS sampled."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.config = config
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.samples: list[tuple[float, int]] = []  # (monotonic, rss bytes)
        self._sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "MATRIX_"))}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ollabot_app", "--config", str(self.config), "run"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._sampler = asyncio.create_task(self._sample())

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time the bot process used so far."""
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        assert self.process is not None
        return int(psutil.Process(self.process.pid).memory_info().rss)

    async def _sample(self) -> None:
        while self.alive:
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self.rss()))
            await asyncio.sleep(0.5)

    def peak(self, since: float = 0.0) -> int:
        return max((rss for at, rss in self.samples if at >= since), default=0)

    async def steady_rss(self, seconds: float = 3.0) -> int:
        """The median RSS over ``seconds`` (after the bot has gone quiet)."""
        values = []
        for _ in range(max(1, int(seconds / 0.25))):
            values.append(self.rss())
            await asyncio.sleep(0.25)
        values.sort()
        return values[len(values) // 2]

    async def stop(self) -> int | None:
        """SIGTERM, then wait for a clean exit (SIGKILL after 30 s); the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            for _ in range(300):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                process.kill()
        code = await asyncio.to_thread(process.wait)
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        return code
