"""After a restart, mark in Matrix the replies a crash cut: their last event gets the footer.

The engine found the replies left streaming
(:meth:`bot.conversation.engine.Engine.mend_cut_replies`) and gives the text each last message
should show; this module sends an ``m.replace`` edit of that event (the reply's last ref) in the
session's room, paced like every other send of the bot.
"""

from __future__ import annotations

import nio

from adapters.matrix.render import edit_content
from adapters.matrix.replies import PLATFORM
from adapters.matrix.surface import render_status, send_checked
from bot.conversation.engine import Engine
from bot.reply.streamer import Pacer
from bot.store.port import CutReply

__all__ = ["mend_cut_replies"]


async def mend_cut_replies(
    client: nio.AsyncClient, engine: Engine, pacer: Pacer, *, max_chars: int
) -> int:
    """Edit the last event of each Matrix reply cut by a crash; how many were edited.

    Args:
        client: The logged-in client.
        engine: The started engine (it knows the cut replies).
        pacer: The bot's send pacer.
        max_chars: The longest message body (``[matrix] max_chars``).
    """

    async def mend(cut: CutReply, text: str) -> None:
        await pacer.acquire()
        await send_checked(client, cut.key.room, edit_content(cut.refs[-1], text))

    return await engine.mend_cut_replies(
        PLATFORM, mend, max_chars=max_chars, render_status=render_status
    )
