"""After a restart, mark on Discord the replies a crash cut: their last message gets the footer.

The engine found the replies left streaming
(:meth:`bot.conversation.engine.Engine.mend_cut_replies`) and gives the text each last message
should show; this module edits that message. Its ref carries its channel
(``"<channel_id>/<message_id>"``, see :func:`adapters.discord.surface.channel_ref`). A message shown
through an interaction's webhook is skipped: its token lives 15 minutes, so after a restart it
usually cannot be used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord

from adapters.discord.places import PLATFORM
from adapters.discord.render import MAX_CONTENT, render_footer
from adapters.discord.surface import NO_MENTIONS, parse_ref, translate
from bot.conversation.engine import Engine
from bot.errors import ChatError, RateLimited
from bot.reply.streamer import Pacer, ReplyStatus
from bot.store.port import CutReply

logger = logging.getLogger(__name__)


async def mend_cut_replies(
    client: discord.Client,
    engine: Engine,
    pacer_for: Callable[[int], Pacer],
    *,
    show_footer: bool,
) -> int:
    """Edit the last message of each Discord reply cut by a crash; how many were edited.

    Args:
        client: The connected client.
        engine: The started engine (it knows the cut replies).
        pacer_for: The pacer of a channel id (the edit waits its turn like a reply's).
        show_footer: The ``show_footer`` setting, for the footer's rendering.
    """

    async def mend(cut: CutReply, text: str) -> None:
        try:
            channel_id, message_id = parse_ref(cut.refs[-1])
        except ValueError as err:
            raise ChatError("Unreadable message id.", {"ref": cut.refs[-1]}) from err
        if channel_id is None:
            logger.info(
                "cut reply shown through an interaction webhook; not marked",
                extra={"session": str(cut.key), "message_id": message_id},
            )
            return
        await pacer_for(channel_id).acquire()
        message = client.get_partial_messageable(channel_id).get_partial_message(message_id)
        try:
            await message.edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.RateLimited as err:
            raise RateLimited(err.retry_after) from err
        except discord.HTTPException as err:
            raise translate(err) from err

    def render(status: ReplyStatus) -> str:
        return render_footer(status, show_details=show_footer)

    return await engine.mend_cut_replies(
        PLATFORM, mend, max_chars=MAX_CONTENT, render_status=render
    )
