"""The Matrix bot's lifecycle: log in, sync, dispatch events, leave cleanly.

:class:`MatrixBot` owns one matrix-nio ``AsyncClient`` and one sync loop. Each ``/sync`` answer
is read in order: invites (accepted or declined by config), then each joined room's timeline.
Events from before the bot joined a room are never answered, and the sync token is stored in the
engine's store after every batch, so a restart neither replays old messages nor misses new ones
(the engine's ``claim_event`` is the second guard against answering twice).

In encrypted rooms nio decrypts the timeline during the sync; between syncs the bot uploads,
queries and claims keys (:mod:`adapters.matrix.crypto`), answers emoji verification
and retries messages whose key came late (:mod:`adapters.matrix.e2ee`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
import nio

from adapters.matrix.addressing import parse_message
from adapters.matrix.config import MatrixConfig
from adapters.matrix.crypto import BotClient, store_dir
from adapters.matrix.e2ee import SyncEncryption
from adapters.matrix.mending import mend_cut_replies
from adapters.matrix.replies import PLATFORM, Replier
from bot.errors import ConfigError, LeaseHeld, StoreError

if TYPE_CHECKING:
    from bot.conversation.engine import Engine

__all__ = ["MatrixBot", "run_matrix"]

log = logging.getLogger(__name__)

_SYNC_FILTER: dict[str, Any] = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": False}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
_MAX_BACKOFF = 30.0


class MatrixBot:
    """The Matrix side of the bot. Use as an async context manager, or ``start``/``close``.

    Args:
        engine: The (started) conversation engine.
        config: The adapter settings.
        access_token: Log in with this token (preferred); or
        password: log in with this password (the device id is reused across runs).
    """

    def __init__(
        self,
        engine: Engine,
        config: MatrixConfig,
        *,
        access_token: str | None = None,
        password: str | None = None,
    ) -> None:
        if not access_token and not password:
            raise ConfigError("Matrix needs MATRIX_ACCESS_TOKEN or MATRIX_PASSWORD.", key="matrix")
        self.engine = engine
        self.config = config
        self._access_token = access_token
        self._password = password
        self.client = BotClient(config, store_dir(config))
        self.replier = Replier(self.client, engine, config, self._spawn)
        self.e2ee = SyncEncryption(
            self.client,
            config,
            self._spawn,
            notify=self.replier.notice_reply,
            handle=self._on_decrypted,
            is_moderator=self.replier.is_moderator,
            store=engine.store,
            state_key=self._key("undecryptable"),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._first_sync = asyncio.Event()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{PLATFORM}:{self.config.user_id}:{name}"

    async def login(self) -> None:
        """Log in by token or password, keeping one device id across runs.

        Raises:
            ConfigError: The homeserver refused the credentials.
        """
        stored_device = await self.engine.store.get_state(self._key("device_id"))
        device_id = self.config.device_id or stored_device
        if self._access_token:
            # whoami first: the token's own device id keys the crypto store that restore_login
            # loads.
            self.client.user_id = self.config.user_id
            self.client.access_token = self._access_token
            who = await self.client.whoami()
            if not isinstance(who, nio.WhoamiResponse):
                raise ConfigError(f"The Matrix access token was refused: {who}", key="matrix")
            if who.user_id != self.config.user_id:
                raise ConfigError(
                    f"The access token belongs to {who.user_id}, not {self.config.user_id}.",
                    key="matrix.user_id",
                )
            device_id = who.device_id or device_id
            self.client.restore_login(self.config.user_id, device_id or "", self._access_token)
        else:
            if device_id:
                self.client.device_id = device_id
            assert self._password is not None
            response = await self.client.login(self._password, self.config.device_name)
            if not isinstance(response, nio.LoginResponse):
                raise ConfigError(f"Matrix login failed: {response}", key="matrix")
            device_id = response.device_id
        if device_id and device_id != stored_device:
            await self.engine.store.set_state(self._key("device_id"), device_id)
        log.info(
            "logged in",
            extra={"platform": PLATFORM, "device_id": device_id,
                   "encryption": self.client.encrypting},
        )  # fmt: skip
        # A new device publishes its identity and one-time keys before anyone needs them.
        await self.client.upkeep()

    @property
    def sync_lease(self) -> str:
        """The lease that lets one process per database sync this account."""
        return f"matrix-sync:{self.config.user_id}"

    async def _take_sync_lease(self) -> None:
        """Be the one process syncing this account against this database, or say who is.

        Raises:
            ConfigError: Another running process syncs the account.
        """
        try:
            await self.engine.store.acquire_lease(self.sync_lease)
        except LeaseHeld as held:
            raise ConfigError(
                f"Not starting Matrix: another ollabot process already syncs "
                f"{self.config.user_id} against this database (instance '{held.instance}', "
                f"pid {held.pid} on {held.host}, since {held.since:%Y-%m-%d %H:%M:%S} UTC). "
                "Matrix has one syncing process per account: two would each receive every "
                "message and share one sync token and device. Stop that process, or remove "
                "[matrix] from this one's config (run Discord shards without it).",
                key="matrix",
            ) from held

    async def start(self) -> None:
        """Take the account's sync lease, log in, run the first sync, then keep syncing."""
        await self._take_sync_lease()
        try:
            await self.login()
            if self.client.encrypting:
                await self.e2ee.undecryptable.load()
            await self._sync_once(first=True)
        except BaseException:
            await self.client.close()
            await self._release_sync_lease()
            raise
        self._first_sync.set()
        self._sync_task = asyncio.create_task(self._sync_forever(), name="matrix-sync")
        # In the background: the bot answers while the replies a crash cut are marked.
        self._spawn(self._mend_cut_replies())

    async def _mend_cut_replies(self) -> None:
        """Mark the replies a crash cut (before this start) as interrupted in their rooms."""
        await mend_cut_replies(
            self.client,
            self.engine,
            self.replier.pacer(""),
            max_chars=self.config.max_chars,
        )

    async def close(self) -> None:
        """Stop syncing, cancel replies in progress, close the HTTP session."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._sync_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()
        await self._release_sync_lease()

    async def _release_sync_lease(self) -> None:
        try:
            await self.engine.store.release_lease(self.sync_lease)
        except StoreError as err:
            # The lease dies with this process anyway; the next start takes it over.
            log.warning("could not release the Matrix sync lease: %s", err.detail)

    async def __aenter__(self) -> MatrixBot:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait(self) -> None:
        """Run until the sync loop ends (it only ends on a fatal error or cancellation)."""
        if self._sync_task is not None:
            await self._sync_task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("matrix handler failed", exc_info=task.exception())

    async def idle(self) -> None:
        """Wait until every handler spawned so far has finished (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- sync ---------------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._sync_once(first=False)
                backoff = 1.0
            except (aiohttp.ClientError, TimeoutError, OSError, StoreError) as err:
                # StoreError: a read of the bot's database failed (a disk error); keep syncing.
                log.warning("sync failed, retrying in %.0f s: %r", backoff, err)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _sync_once(self, *, first: bool) -> None:
        token = self.client.next_batch or await self.engine.store.get_state(self._key("sync"))
        fresh = token is None  # never synced: nothing in any timeline is new to us
        response = await self.client.sync(
            timeout=0 if first else self.config.sync_timeout_ms,
            sync_filter=_SYNC_FILTER,
            since=token,
            full_state=first or None,
        )
        if isinstance(response, nio.SyncError):
            if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                raise ConfigError(f"The homeserver logged the bot out: {response}", key="matrix")
            log.warning("sync refused: %s", response)
            await asyncio.sleep(1.0)
            return
        await self.e2ee.after_sync(response)
        await self._handle_sync(response, replay=not fresh)
        try:
            await self.engine.store.set_state(self._key("sync"), response.next_batch)
        except StoreError as err:
            # nio keeps the token in memory, so this run receives nothing twice; after a restart
            # the engine's claim_event keeps a replayed event from being answered twice.
            log.warning("sync token not saved", extra={"platform": PLATFORM, "detail": err.detail})

    async def _handle_sync(self, response: nio.SyncResponse, *, replay: bool) -> None:
        for room_id, info in response.rooms.invite.items():
            await self._on_invite(room_id, info)
        for room_id, info in response.rooms.join.items():
            for event in [*info.state, *info.timeline.events]:
                source = getattr(event, "source", {}) or {}
                if source.get("type") == "m.room.create":
                    self.replier.note_create(room_id, source)
                elif source.get("type") == "m.space.parent":
                    self.replier.note_space_parent(room_id, source)
            room = self.client.rooms.get(room_id)
            if (
                room is not None
                and room.encrypted
                and not self.client.encrypting
                and _own_join(info, self.config.user_id) >= 0
            ):
                await self.replier.notices.unsupported(room_id)
            if replay:
                await self._on_timeline(room_id, info)

    async def _on_timeline(self, room_id: str, info: Any) -> None:
        events = list(info.timeline.events)
        # Events before the bot's own join are history it was never asked about.
        start = _own_join(info, self.config.user_id) + 1
        someone_left = False
        for event in events[start:]:
            source: dict[str, Any] = getattr(event, "source", {}) or {}
            sender = source.get("sender")
            kind = source.get("type")
            if kind == "m.room.member" and source.get("content", {}).get("membership") in (
                "leave",
                "ban",
            ):
                someone_left = True
            if sender == self.config.user_id or sender in self.config.ignored_users:
                continue
            try:
                await self._on_event(room_id, event)
            except Exception:
                # One event the bot cannot handle (a homeserver sending a shape nobody expected)
                # must not end the sync loop and silence the bot for every room: log it with
                # its id and go on with the next event.
                log.exception(
                    "event could not be handled",
                    extra={"platform": PLATFORM, "room": room_id, "event": source.get("event_id")},
                )
        if someone_left:
            await self._leave_if_alone(room_id)

    async def _on_event(self, room_id: str, event: Any) -> None:
        source: dict[str, Any] = getattr(event, "source", {}) or {}
        kind = source.get("type")
        if isinstance(event, nio.MegolmEvent):
            if self.client.encrypting:
                await self.e2ee.undecryptable.add(room_id, event)
            else:
                await self.replier.notices.unsupported(room_id)
        elif kind == "m.reaction":
            await self.replier.on_reaction(room_id, source)
        elif kind == "m.room.message":
            message = parse_message(source)
            if message is not None:
                await self.replier.on_message(room_id, message, self.e2ee.unverified(event))

    async def _on_decrypted(self, room_id: str, event: Any) -> None:
        """A message whose room key came late: handled once, like any other."""
        source: dict[str, Any] = getattr(event, "source", {}) or {}
        sender = source.get("sender")
        if sender == self.config.user_id or sender in self.config.ignored_users:
            return
        await self._on_event(room_id, event)

    # --- membership ---------------------------------------------------------------------------

    def _invite_allowed(self, room_id: str, inviter: str | None) -> bool:
        allowed_servers = self.config.allowed_servers
        if not allowed_servers and not self.config.allowed_inviters:
            # Nothing configured: the bot's own server. A list of inviters alone is exhaustive.
            allowed_servers = frozenset({self.config.server_name})
        if inviter is not None:
            if inviter in self.config.allowed_inviters:
                return True
            if inviter.split(":", 1)[-1] in allowed_servers:
                return True
        return room_id.split(":", 1)[-1] in allowed_servers

    async def _on_invite(self, room_id: str, info: Any) -> None:
        inviter: str | None = None
        direct = False
        for event in info.invite_state:
            source = getattr(event, "source", {}) or {}
            if source.get("type") == "m.room.member" and (
                source.get("state_key") == self.config.user_id
            ):
                inviter = source.get("sender")
                direct = bool(source.get("content", {}).get("is_direct", False))
        if not self._invite_allowed(room_id, inviter):
            log.info("declining invite", extra={"platform": PLATFORM, "room": room_id,
                                                "inviter": inviter})  # fmt: skip
            await self._paced()
            await self.client.room_leave(room_id)
            return
        await self._paced()
        response = await self.client.join(room_id)
        if not isinstance(response, nio.JoinResponse):
            log.warning("could not join %s: %s", room_id, response)
            return
        if direct:
            await self.replier.mark_direct(room_id)
        log.info("joined", extra={"platform": PLATFORM, "room": room_id, "inviter": inviter})

    async def _paced(self) -> None:
        # Synapse counts membership events against the same per-user rc_message budget as
        # messages: take them from the bot's bucket too, so its count matches the server's.
        await self.replier.pacer("").acquire()

    async def _leave_if_alone(self, room_id: str) -> None:
        room = self.client.rooms.get(room_id)
        if room is None:
            return
        others = [u for u in room.users if u != self.config.user_id]  # joined and invited members
        if others:
            return
        log.info("last member left; leaving", extra={"platform": PLATFORM, "room": room_id})
        await self._paced()
        await self.client.room_leave(room_id)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.client.room_forget(room_id)


def _own_join(info: Any, user_id: str) -> int:
    """Index of the bot's own join in the timeline (-1 when it joined before this batch)."""
    found = -1
    for index, event in enumerate(info.timeline.events):
        source = getattr(event, "source", {}) or {}
        if (
            source.get("type") == "m.room.member"
            and source.get("state_key") == user_id
            and source.get("content", {}).get("membership") == "join"
            and source.get("unsigned", {}).get("prev_content", {}).get("membership") != "join"
        ):
            found = index
    return found


async def run_matrix(
    engine: Engine,
    config: MatrixConfig,
    *,
    access_token: str | None,
    password: str | None,
) -> None:
    """Run the Matrix bot until cancelled; close cleanly either way.

    Args:
        engine: The started engine (the caller closes it).
        config: The ``[matrix]`` settings.
        access_token: The bot's access token, or ``None`` to log in with ``password``.
        password: The bot's password (used only when there is no token).

    Raises:
        ConfigError: Credentials refused, or the homeserver logged the bot out.
    """
    async with MatrixBot(engine, config, access_token=access_token, password=password) as bot:
        await bot.wait()
