"""Messages addressed to the bot: mentions, replies to its messages, its threads, DMs."""

from __future__ import annotations

import logging
import mimetypes
import re
from typing import Any

import discord

from adapters.discord.places import (
    author_of,
    chain_key,
    person_of,
    place_of,
    room_key,
    server_of,
)
from adapters.discord.runtime import Runtime
from adapters.discord.surface import NO_MENTIONS, ChannelSurface, translate
from bot.errors import ChatError
from bot.reply.pacing import acquire_first
from bot.turn import Attachment, SessionKey, Turn

logger = logging.getLogger(__name__)

_USER_MENTION = re.compile(r"<@!?(\d+)>")


class MessageHandler:
    """Decides whether a message is for the bot and, if so, answers it through the engine."""

    def __init__(self, client: discord.Client, runtime: Runtime) -> None:
        self._client = client
        self._rt = runtime

    async def handle(self, message: discord.Message) -> None:
        me = self._client.user
        if me is None or message.author.id == me.id:
            return
        place = place_of(message.channel, message.guild)
        if self._rt.policy.refusal(place, person_of(message.author)) is not None:
            # Unaddressed or refused messages get no answer: the bot would be noise otherwise.
            return
        addressed = await self._addressed(message, me.id)
        if addressed is None:
            return
        key, root = addressed
        await self._answer(message, key, root, me.id)

    async def _addressed(
        self, message: discord.Message, me: int
    ) -> tuple[SessionKey, str | None] | None:
        """The session a message continues, and its chain root; ``None`` if not for the bot."""
        channel = message.channel
        mentioned = any(u.id == me for u in message.mentions)
        if isinstance(channel, discord.DMChannel):
            return room_key(channel), None
        if isinstance(channel, discord.Thread):
            if channel.owner_id == me or mentioned:
                return room_key(channel), None
            return None
        reference = message.reference.message_id if message.reference else None
        resolved = message.reference.resolved if message.reference else None
        to_bot = isinstance(resolved, discord.Message) and resolved.author.id == me
        # A reply addresses the bot when it answers one of the bot's messages; a reply to
        # someone else's message in a chain needs a mention, as people talk among themselves.
        if reference is not None and (to_bot or mentioned):
            root = await self._rt.chains.root_of(reference)
            if root is None and to_bot:
                root = str(reference)
            if root is not None:
                return chain_key(channel.id, root), root
        if mentioned:
            root = str(message.id)
            return chain_key(channel.id, root), root
        return None

    async def _answer(
        self, message: discord.Message, key: SessionKey, root: str | None, me: int
    ) -> None:
        rt = self._rt
        channel: Any = message.channel
        pacer = rt.pacer_for(channel.id)
        surface = ChannelSurface(
            channel,
            pacer,
            reference=message,
            show_footer=rt.config.show_footer,
            on_sent=rt.chains.linker(root) if root is not None else None,
        )

        async def notify(text: str) -> None:
            await acquire_first(pacer)  # a notice is a first message: before pending edits
            try:
                await channel.send(text, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as err:
                # Translated: the engine logs it and goes on with the reply itself.
                raise translate(err) from err

        attachments, notes = await self._attachments(message)
        for note in notes:
            try:
                await notify(note)
            except ChatError as err:
                logger.warning("could not show an attachment note: %s", err.detail)
        text = _clean_text(message, me)
        if not text and attachments:
            # A file sent without words still asks for something: say what it is.
            text = "Please look at the attached file."
        author = message.author
        permissions = (
            channel.permissions_for(author) if isinstance(author, discord.Member) else None
        )
        turn = Turn(
            key=key,
            author=author_of(
                author, rt.policy, permissions, in_thread=isinstance(channel, discord.Thread)
            ),
            text=text,
            server=server_of(message.guild),
            attachments=tuple(attachments),
            event_id=str(message.id),
        )
        if root is not None:
            # Linked before answering, so a quick reply to the answer finds its chain.
            await rt.chains.link(root, [message.id])
        await rt.engine.handle_turn(turn, surface, notify=notify)

    async def _attachments(self, message: discord.Message) -> tuple[list[Attachment], list[str]]:
        """Attachments within the size cap, and notes about the ones left out."""
        cap = self._rt.config.max_attachment_bytes
        kept: list[Attachment] = []
        notes: list[str] = []
        for att in message.attachments:
            if att.size > cap:
                notes.append(
                    f"`{att.filename}` is {att.size:,} bytes, over the {cap:,}-byte limit; "
                    "it was left out."
                )
                continue
            try:
                data = await att.read()
            except discord.HTTPException as err:
                logger.warning("attachment download failed", extra={"status": err.status})
                notes.append(f"`{att.filename}` could not be downloaded; it was left out.")
                continue
            content_type = (att.content_type or "").split(";")[0].strip()
            if not content_type:
                content_type = mimetypes.guess_type(att.filename)[0] or "application/octet-stream"
            kept.append(Attachment(att.filename, content_type, data))
        return kept, notes


def _clean_text(message: discord.Message, me: int) -> str:
    """The message without the bot's mention; other mentions become readable names."""
    names = {u.id: u.display_name for u in message.mentions}

    def name(match: re.Match[str]) -> str:
        uid = int(match.group(1))
        return "" if uid == me else f"@{names.get(uid, 'someone')}"

    return _USER_MENTION.sub(name, message.content).strip()
