"""Reply surfaces: where a streamed reply is shown on Discord.

:class:`ChannelSurface` posts and edits ordinary channel messages (mentions, replies, threads,
DMs). :class:`InteractionSurface` answers a slash command through its interaction token, and
falls back to channel messages when the token has expired (Discord's tokens live 15 minutes, and
long replies must keep working). Both send with no allowed mentions, so model output that
contains ``@everyone`` or a user mention pings nobody. They only send and edit: the engine's
``ReplyStreamer`` decides what text to show and when, through the shared per-channel pacer.

The id a surface returns for a channel message is ``"<channel_id>/<message_id>"`` (see
:func:`channel_ref`): the engine stores these refs with the reply, and after a crash the
restarted bot finds the channel of a cut reply's message from its ref alone. A message shown
through an interaction's webhook has a bare ``"<message_id>"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord

from adapters.discord.render import MAX_CONTENT, render_footer
from bot.errors import ChatError, RateLimited
from bot.reply.streamer import Pacer, ReplyStatus

logger = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
TOKEN_LIFETIME = 15 * 60.0
TOKEN_MARGIN = 60.0
"""Stop using an interaction token this long before Discord expires it."""

OnSent = Callable[[int], Awaitable[None]]
"""Called with the id of each message a surface creates (to link it to its reply chain)."""

_TOKEN_ERRORS = {10015, 50027, 10062}  # unknown webhook, invalid webhook token, unknown interaction


class Channel(Protocol):
    """What a surface needs of a channel: discord's TextChannel, Thread and DMChannel all fit."""

    async def send(self, content: str, **kwargs: Any) -> discord.Message: ...

    def get_partial_message(self, message_id: int, /) -> discord.PartialMessage: ...

    def typing(self) -> Any: ...


def channel_ref(channel_id: int, message_id: int) -> str:
    """The id a surface gives a channel message: ``"<channel_id>/<message_id>"``."""
    return f"{channel_id}/{message_id}"


def parse_ref(ref: str) -> tuple[int | None, int]:
    """(channel id, message id) of a surface's message id; no channel for a webhook message.

    Raises:
        ValueError: ``ref`` is not an id a surface made.
    """
    channel, sep, message = ref.rpartition("/")
    return (int(channel) if sep else None), int(message)


def translate(err: discord.HTTPException) -> ChatError | RateLimited:
    """Our error for a failed Discord request (raise it ``from`` the original)."""
    if err.status == 429:
        headers = err.response.headers
        retry = headers.get("X-RateLimit-Reset-After") or headers.get("Retry-After") or "1"
        return RateLimited(float(retry), detail=str(err))
    return ChatError(
        "Discord refused to show the reply.",
        {"status": err.status, "code": err.code, "text": err.text},
    )


class ChannelSurface:
    """A reply made of ordinary messages in one channel, thread or DM.

    Args:
        channel: Where the reply goes.
        pacer: The channel's pacer (shared by every reply in that channel).
        reference: The message to reply to with the first message (no ping).
        show_footer: Put model and speed under the finished reply.
        on_sent: Told the id of every message the reply creates, as soon as it exists.
    """

    def __init__(
        self,
        channel: Channel,
        pacer: Pacer,
        *,
        reference: discord.Message | None = None,
        show_footer: bool = True,
        on_sent: OnSent | None = None,
    ) -> None:
        self._channel = channel
        self._on_sent = on_sent
        self._pacer = pacer
        self._reference = reference
        self._show_footer = show_footer
        self.sent: list[int] = []

    @property
    def max_chars(self) -> int:
        return MAX_CONTENT

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    async def send(self, text: str) -> str:
        kwargs: dict[str, Any] = {"allowed_mentions": NO_MENTIONS}
        if self._reference is not None and not self.sent:
            kwargs["reference"] = self._reference.to_reference(fail_if_not_exists=False)
            kwargs["mention_author"] = False
        try:
            message = await self._channel.send(text, **kwargs)
        except discord.RateLimited as err:
            raise RateLimited(err.retry_after) from err
        except discord.HTTPException as err:
            raise translate(err) from err
        self.sent.append(message.id)
        if self._on_sent is not None:
            await self._on_sent(message.id)
        return channel_ref(message.channel.id, message.id)

    async def edit(self, message_id: str, text: str) -> None:
        partial = self._channel.get_partial_message(parse_ref(message_id)[1])
        try:
            await partial.edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.RateLimited as err:
            raise RateLimited(err.retry_after) from err
        except discord.HTTPException as err:
            raise translate(err) from err

    def render_status(self, status: ReplyStatus) -> str:
        return render_footer(status, show_details=self._show_footer)

    async def typing(self) -> None:
        try:
            await self._channel.typing()
        except discord.HTTPException:
            # Typing is a courtesy; a refused indicator must not fail the reply.
            logger.debug("typing indicator refused", exc_info=True)


class InteractionSurface:
    """A reply to a slash command, shown through the interaction's webhook.

    The interaction must already be deferred (the first ``send`` fills the deferred response,
    later ones are followups). Once the token is about to expire, or Discord says it has, the
    reply continues as channel messages in ``fallback`` (a private reply cannot, and says so).
    """

    def __init__(
        self,
        interaction: discord.Interaction[Any],
        pacer: Pacer,
        *,
        fallback: Channel | None,
        ephemeral: bool = False,
        show_footer: bool = True,
        token_lifetime: float = TOKEN_LIFETIME,
        on_sent: OnSent | None = None,
    ) -> None:
        self._interaction = interaction
        self._on_sent = on_sent
        self._pacer = pacer
        self._fallback = fallback
        self._ephemeral = ephemeral
        self._show_footer = show_footer
        self._deadline = time.monotonic() + token_lifetime - TOKEN_MARGIN
        self._expired = False
        self._original: int | None = None
        self._via_channel: set[int] = set()
        self.sent: list[int] = []

    @property
    def max_chars(self) -> int:
        return MAX_CONTENT

    @property
    def pacer(self) -> Pacer:
        return self._pacer

    def expire(self) -> None:
        """Treat the token as expired from now on (Discord said so, or tests pretend)."""
        self._expired = True

    def _token_usable(self) -> bool:
        return not self._expired and time.monotonic() < self._deadline

    async def send(self, text: str) -> str:
        if self._token_usable():
            try:
                message_id = await self._send_via_token(text)
            except discord.HTTPException as err:
                if not self._is_token_error(err):
                    raise translate(err) from err
                self.expire()
            else:
                return await self._created(message_id, str(message_id))
        channel = self._channel_for_fallback()
        try:
            message = await channel.send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as err:
            raise translate(err) from err
        self._via_channel.add(message.id)
        return await self._created(message.id, channel_ref(message.channel.id, message.id))

    async def _created(self, message_id: int, ref: str) -> str:
        self.sent.append(message_id)
        if self._on_sent is not None:
            await self._on_sent(message_id)
        return ref

    async def _send_via_token(self, text: str) -> int:
        if self._original is None:
            original = await self._interaction.edit_original_response(
                content=text, allowed_mentions=NO_MENTIONS
            )
            self._original = original.id
            return original.id
        followup = await self._interaction.followup.send(
            text, ephemeral=self._ephemeral, allowed_mentions=NO_MENTIONS, wait=True
        )
        return followup.id

    async def edit(self, message_id: str, text: str) -> None:
        mid = parse_ref(message_id)[1]
        if mid not in self._via_channel and self._token_usable():
            try:
                if mid == self._original:
                    await self._interaction.edit_original_response(
                        content=text, allowed_mentions=NO_MENTIONS
                    )
                else:
                    await self._interaction.followup.edit_message(
                        mid, content=text, allowed_mentions=NO_MENTIONS
                    )
            except discord.HTTPException as err:
                if not self._is_token_error(err):
                    raise translate(err) from err
                self.expire()
            else:
                return
        # The token is gone, but the bot authored the message: edit it as a channel message.
        channel = self._channel_for_fallback()
        try:
            await channel.get_partial_message(mid).edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as err:
            raise translate(err) from err

    def _channel_for_fallback(self) -> Channel:
        if self._fallback is None or self._ephemeral:
            raise ChatError(
                "This private reply took longer than Discord allows (15 minutes).",
                {"interaction": self._interaction.id},
            )
        return self._fallback

    @staticmethod
    def _is_token_error(err: discord.HTTPException) -> bool:
        return err.status == 401 or err.code in _TOKEN_ERRORS

    def render_status(self, status: ReplyStatus) -> str:
        return render_footer(status, show_details=self._show_footer)

    async def typing(self) -> None:
        # A deferred interaction already shows "thinking…"; nothing more to do.
        return None
