"""Answering in a room: turns to the engine, commands, stop reactions.

:class:`Replier` gets messages the client already decided to look at (not the bot's own, not an
ignored bot, not from before the bot joined) and does the rest: addressing, the session key
(thread or room), the reply surface, commands and their progress bars.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nio
from cachetools import LRUCache

from adapters.matrix.addressing import Facts, Incoming, addressed, strip_mention
from adapters.matrix.config import MatrixConfig
from adapters.matrix.e2ee import EncryptionNotices
from adapters.matrix.media import fetch_media
from adapters.matrix.progress import show_pull_progress
from adapters.matrix.render import tool_calls_content
from adapters.matrix.surface import MatrixSurface, RoomSender, SendStats
from bot.conversation.commands import CommandContext, Cot, parse_command
from bot.conversation.permissions import may_stop, place_kind
from bot.conversation.results import PullView, ToolCallsView
from bot.errors import InputRejected, OllabotError, RateLimited, StoreError
from bot.reply.pacing import TokenBucketPacer
from bot.reply.streamer import Pacer
from bot.turn import Attachment, Author, ScopeKind, SessionKey, Turn
from bot.validation import neutralise_bidi

if TYPE_CHECKING:
    from adapters.matrix.crypto import BotClient
    from bot.conversation.engine import Engine

__all__ = ["PLATFORM", "STOP_REACTIONS", "Replier"]

log = logging.getLogger(__name__)

PLATFORM = "matrix"
STOP_REACTIONS = frozenset({"⏹", "⏹️", "✋", "🛑", "✋️"})
_LEGACY_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))


class Replier:
    """Turns addressed messages into engine turns and commands into engine commands.

    Args:
        client: The logged-in nio client.
        engine: The conversation engine.
        config: The adapter settings.
        spawn: Runs a coroutine as a tracked background task (the client owns the tasks).
    """

    def __init__(
        self,
        client: BotClient,
        engine: Engine,
        config: MatrixConfig,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.client = client
        self.engine = engine
        self.config = config
        # Thread and direct-room flags are caches: a thread idle past the retention is forgotten.
        for kind in ("thread", "direct"):
            engine.retention.prune_state_under(self._state_key(kind) + ":")
        self._spawn = spawn
        self._pacer: Pacer = TokenBucketPacer(
            rate=config.messages_per_second, burst=config.message_burst
        )
        self._own_events: LRUCache[str, bool] = LRUCache(maxsize=10_000)
        self.notices = EncryptionNotices(client, config, self._pacer, self._own)
        self._bot_threads: LRUCache[str, bool] = LRUCache(maxsize=10_000)
        # event id of a reply being streamed -> (session, author who asked)
        self._streaming: dict[str, tuple[SessionKey, str]] = {}
        self.stats = SendStats()
        self._creators: dict[str, frozenset[str]] = {}
        self._spaces: dict[str, str] = {}  # room id -> the space it belongs to

    # --- helpers ------------------------------------------------------------------------------

    def pacer(self, room_id: str) -> Pacer:
        """The pacer for sends to ``room_id``.

        Synapse's ``rc_message`` is counted per sending user, not per room, so every room
        shares the bot's one bucket: two replies streaming in two rooms split the budget
        instead of each spending all of it.
        """
        return self._pacer

    def _state_key(self, *parts: str) -> str:
        return ":".join([PLATFORM, self.config.user_id, *parts])

    def note_create(self, room_id: str, source: dict[str, Any]) -> None:
        """Remember a room's creators from its ``m.room.create`` event.

        From room version 12 on, creators outrank every power level and are no longer listed in
        ``m.room.power_levels``; matrix-nio does not know this, so the adapter tracks them.
        """
        content = source.get("content", {})
        version = str(content.get("room_version", "1"))
        if version in _LEGACY_ROOM_VERSIONS:
            self._creators.pop(room_id, None)
            return
        extra = content.get("additional_creators", [])
        creators = {str(source.get("sender", ""))}
        creators.update(u for u in extra if isinstance(u, str))
        self._creators[room_id] = frozenset(creators)

    def note_space_parent(self, room_id: str, source: dict[str, Any]) -> None:
        """Remember the space a room belongs to (its ``m.space.parent`` state): the server scope.

        An event with empty content removes the link. With several parents, the canonical one
        wins, else the first one seen.
        """
        space = source.get("state_key")
        content = source.get("content")
        if not isinstance(space, str) or not isinstance(content, dict):
            return
        current = self._spaces.get(room_id)
        if not content.get("via"):
            if current == space:
                self._spaces.pop(room_id, None)
            return
        if current is None or content.get("canonical") is True:
            self._spaces[room_id] = space

    def space_of(self, room_id: str) -> str | None:
        """The space ``room_id`` belongs to, for the settings cascade; ``None`` when none."""
        return self._spaces.get(room_id)

    def _moderates(self, room_id: str, user_id: str) -> frozenset[ScopeKind]:
        """The scopes ``user_id`` moderates in ``room_id``.

        The room and its threads: the configured power level in the room. The space: that power
        level in every room of the space the bot is in, or being a configured bot admin.
        """
        if user_id in self.config.bot_admins:
            return frozenset(ScopeKind)
        if not self.is_moderator(room_id, user_id):
            return frozenset()
        scopes = {ScopeKind.ROOM, ScopeKind.THREAD}
        space = self._spaces.get(room_id)
        if space is not None and all(
            self.is_moderator(other, user_id)
            for other, parent in self._spaces.items()
            if parent == space
        ):
            scopes.add(ScopeKind.SERVER)
        return frozenset(scopes)

    def is_moderator(self, room_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is at or above the configured power level in the room."""
        if user_id in self._creators.get(room_id, frozenset()):
            return True
        room = self.client.rooms.get(room_id)
        if room is None:
            return False
        level: int = room.power_levels.get_user_level(user_id)
        return level >= self.config.moderator_power_level

    def _author(self, room_id: str, user_id: str) -> Author:
        room = self.client.rooms.get(room_id)
        name = (room.user_name(user_id) if room is not None else None) or user_id
        return Author(id=user_id, name=name, moderates=self._moderates(room_id, user_id))

    async def _is_bot_event(self, room_id: str, event_id: str) -> bool:
        if event_id in self._own_events:
            return True
        response = await self.client.room_get_event(room_id, event_id)
        if isinstance(response, nio.RoomGetEventResponse):
            mine = bool(response.event.sender == self.config.user_id)
            if mine:
                self._own_events[event_id] = True
            return mine
        return False

    async def _is_bot_thread(self, room_id: str, root: str) -> bool:
        key = f"{room_id}|{root}"
        if key in self._bot_threads:
            return True
        if await self.engine.store.get_state(self._state_key("thread", room_id, root)):
            self._bot_threads[key] = True
            return True
        return False

    async def _remember_thread(self, room_id: str, root: str) -> None:
        self._bot_threads[f"{room_id}|{root}"] = True
        try:
            await self.engine.store.set_state(self._state_key("thread", room_id, root), "1")
        except StoreError as err:
            # Remembered in memory for this run. The turn still goes to the engine, which tells
            # the user what is wrong with the database.
            log.warning("thread not saved", extra={"platform": PLATFORM, "detail": err.detail})

    async def is_direct(self, room_id: str) -> bool:
        """A direct room: the bot and exactly one human (flagged direct, or unnamed)."""
        room = self.client.rooms.get(room_id)
        if room is None or room.member_count != 2:
            return False
        others = [u for u in room.users if u != self.config.user_id]
        if any(u in self.config.ignored_users for u in others):
            return False
        flagged = await self.engine.store.get_state(self._state_key("direct", room_id))
        return flagged == "1" or not room.is_named

    async def mark_direct(self, room_id: str) -> None:
        await self.engine.store.set_state(self._state_key("direct", room_id), "1")

    def _own(self, event_id: str) -> None:
        self._own_events[event_id] = True

    # --- messages -----------------------------------------------------------------------------

    async def on_message(
        self, room_id: str, message: Incoming, unverified_device: str | None = None
    ) -> None:
        """Look at one message from someone else; answer it if the bot is addressed.

        Args:
            room_id: Where it was sent.
            message: The message.
            unverified_device: The sender's device, when ``device_trust = "verified"`` and it is
                not verified: the bot refuses, saying why, instead of answering.
        """
        text = message.body.strip()
        prefix = self.config.command_prefix
        if text == prefix or text.startswith(prefix + " "):
            if not await self._may_answer(room_id, message, unverified_device):
                return
            self._spawn(self._command(room_id, message, text[len(prefix) :].strip()))
            return
        room = self.client.rooms.get(room_id)
        display = room.user_name(self.config.user_id) if room is not None else None
        facts = Facts(
            bot_user_id=self.config.user_id,
            bot_display_name=display,
            is_direct=await self.is_direct(room_id),
            reply_to_is_bot=(
                message.reply_to is not None and await self._is_bot_event(room_id, message.reply_to)
            ),
            thread_is_bot=(
                message.thread_root is not None
                and await self._is_bot_thread(room_id, message.thread_root)
            ),
        )
        reason = addressed(message, facts)
        if reason is None or not await self._may_answer(room_id, message, unverified_device):
            return
        log.info(
            "addressed",
            extra={"platform": PLATFORM, "room": room_id, "event": message.event_id,
                   "reason": reason.value},
        )  # fmt: skip
        self._spawn(self._turn(room_id, message, display))

    async def _may_answer(
        self, room_id: str, message: Incoming, unverified_device: str | None
    ) -> bool:
        """Whether encryption lets the bot answer here; if not, the sender is told why."""
        if unverified_device is not None:
            await self.notices.refuse_unverified(room_id, message, unverified_device)
            return False
        refusal = self.client.refusal_for(room_id)
        if refusal is not None:
            # Nothing would reach the room encrypted: do not ask the model for an answer.
            await self.pacer(room_id).acquire()
            await self.client.tell_key_change(room_id, refusal)
            return False
        return True

    def _thread_root(self, message: Incoming) -> str | None:
        if message.thread_root is not None:
            return message.thread_root
        if self.config.reply_in_thread:
            return message.event_id
        return None

    async def _turn(
        self,
        room_id: str,
        message: Incoming,
        display: str | None,
        *,
        chain_task: str | None = None,
    ) -> None:
        """Answer ``message`` as a turn (``chain_task``: a ``cot`` command's chain of thought)."""
        root = self._thread_root(message)
        key = SessionKey(PLATFORM, room_id, root if self.config.reply_in_thread else None)
        if root is not None and self.config.reply_in_thread:
            await self._remember_thread(room_id, root)
        sender = RoomSender(self.client, room_id, message.event_id, root)
        author = self._author(room_id, message.sender)
        attachments: tuple[Attachment, ...] = ()
        if message.media is not None and chain_task is None:
            attachment, note = await fetch_media(
                self.client, message.media, self.config.max_attachment_bytes
            )
            if note is not None:
                await self._post(sender, note, msgtype="m.notice")
            attachments = (attachment,) if attachment is not None else ()
        text = strip_mention(message.body, self.config.user_id, display)
        if not text and attachments:
            # A file sent without words still asks for something: say what it is.
            text = "Please look at the attached file."
        turn = Turn(
            key=key,
            author=author,
            text=chain_task if chain_task is not None else text,
            server=self.space_of(room_id),
            attachments=attachments,
            event_id=message.event_id,
            chain=chain_task is not None,
        )
        surface_ids: list[str] = []

        def on_sent(event_id: str) -> None:
            self._own(event_id)
            self._streaming[event_id] = (key, message.sender)
            surface_ids.append(event_id)

        surface = MatrixSurface(
            sender,
            self.pacer(room_id),
            max_chars=self.config.max_chars,
            on_sent=on_sent,
            stats=self.stats,
        )

        async def notify(text: str) -> None:
            await self._post(sender, text, msgtype="m.notice")

        try:
            await self.engine.handle_turn(turn, surface, notify=notify)
        finally:
            for event_id in surface_ids:
                self._streaming.pop(event_id, None)

    async def _post(
        self,
        sender: RoomSender,
        text: str,
        *,
        msgtype: str = "m.text",
        body: dict[str, Any] | None = None,
    ) -> str | None:
        """Post a one-off message (a notice, a command result), waiting for the room's pacer."""
        pacer = self.pacer(sender.room_id)
        for _ in range(3):
            await pacer.acquire()
            try:
                event_id = await sender.send(text, msgtype=msgtype, body=body)
            except RateLimited as err:
                pacer.penalize(err.retry_after)
                continue
            except OllabotError as err:
                log.warning("could not post in %s: %s", sender.room_id, err.detail)
                return None
            self._own(event_id)
            return event_id
        log.warning("gave up posting in %s after repeated rate limits", sender.room_id)
        return None

    # --- commands -----------------------------------------------------------------------------

    async def _command(self, room_id: str, message: Incoming, rest: str) -> None:
        root = message.thread_root
        thread = root if self.config.reply_in_thread else None
        key = SessionKey(PLATFORM, room_id, thread)
        sender = RoomSender(self.client, room_id, message.event_id, root)
        author = self._author(room_id, message.sender)
        ctx = CommandContext(
            key=key, server=self.space_of(room_id), author=author, room_word="room"
        )
        try:
            command = parse_command(rest)
        except InputRejected as err:
            await self._post(sender, neutralise_bidi(err.user_message), msgtype="m.notice")
            return
        if isinstance(command, Cot):
            # A reply like any other: queued, streamed, stoppable with the stop reaction.
            await self._turn(room_id, message, None, chain_task=command.task)
            return
        result = await self.engine.execute(ctx, command)
        if isinstance(result, ToolCallsView) and result.calls:
            # Untrusted and long: folded away, never dumped into the room.
            await self._post(sender, "", body=tool_calls_content(result))
            return
        text = neutralise_bidi(result.as_markdown())  # echoed user text: no bidi overrides
        event_id = await self._post(sender, text, msgtype="m.notice")
        if isinstance(result, PullView) and result.progress is not None and event_id:
            await show_pull_progress(sender, self.pacer(sender.room_id), event_id, result)

    # --- reactions and encryption -------------------------------------------------------------

    async def on_reaction(self, room_id: str, source: dict[str, Any]) -> None:
        """A stop reaction on a reply being streamed stops it (asker or moderator only)."""
        content = source.get("content")
        relates = content.get("m.relates_to") if isinstance(content, dict) else None
        if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
            return
        target, emoji = relates.get("event_id"), relates.get("key")
        # Anyone can send any JSON: a non-text id or key (unhashable) must not reach the lookups.
        if not isinstance(target, str) or not isinstance(emoji, str):
            return
        if emoji not in STOP_REACTIONS or target not in self._streaming:
            return
        key, asker = self._streaming[target]
        reactor = self._author(room_id, str(source.get("sender", "")))
        # The engine's rule: the asker, or a moderator of the thread (or room).
        if not may_stop(reactor, asker, place_kind(key)):
            return
        stopped = await self.engine.sessions.stop(key)  # this reply: the one running there
        log.info("stop reaction", extra={"platform": PLATFORM, "session": str(key),
                                          "stopped": stopped})  # fmt: skip

    async def notice_reply(self, room_id: str, event_id: str, text: str) -> None:
        """Post a notice replying to ``event_id`` (encrypted in an encrypted room)."""
        await self._post(RoomSender(self.client, room_id, event_id, None), text, msgtype="m.notice")
