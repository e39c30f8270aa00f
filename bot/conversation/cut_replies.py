"""What the last platform message of a reply cut by a crash should show after the restart.

A reply the bot was streaming when its process died keeps, on the platform, whatever text it had
and no footer. The store kept the text saved so far and the ids of the messages that show it
(:class:`bot.store.port.CutReply`). To mark the reply as cut, the adapter edits its last message so
that it shows its part of that text followed by the surface's "interrupted" footer.

The parts are found again with the streamer's own cuts (:func:`bot.reply.splitting.next_cut`, the
incremental cuts made while the reply grew), so the messages before the last keep exactly the
text they show and only the last one is edited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.errors import OllabotError
from bot.reply.layout import PLACEHOLDER
from bot.reply.splitting import Fence, Part, next_cut
from bot.reply.surface import ReplyStatus
from bot.store.port import CutReply
from bot.types import Outcome

__all__ = ["INTERRUPTED_BY_RESTART", "Mend", "last_message_text", "mend_cut_replies", "shown_parts"]

logger = logging.getLogger("bot.conversation.engine")

Mend = Callable[[CutReply, str], Awaitable[None]]
"""Edits the last platform message of a cut reply (``refs[-1]``) to show the given text."""

INTERRUPTED_BY_RESTART = "The bot restarted while writing this reply."
"""The error a cut reply's footer carries."""


def shown_parts(content: str, max_chars: int) -> list[Part]:
    """The parts a streaming reply of ``content`` is shown in: frozen parts, then the tail.

    Args:
        content: The reply's text so far.
        max_chars: The platform's longest message.

    Returns:
        One part per platform message, as :class:`bot.reply.streamer.ReplyStreamer` shows them
        while the reply is still growing (no footer).
    """
    parts: list[Part] = []
    start = 0
    fence: Fence | None = None
    while (cut := next_cut(content, start, max_chars, fence=fence, more_coming=True)) is not None:
        parts.append(cut.part)
        start, fence = cut.end, cut.fence
    tail = next_cut(content, start, max_chars, fence=fence, more_coming=False)
    if tail is not None and tail.part.body.strip():
        parts.append(tail.part)
    return parts


def last_message_text(content: str, messages: int, max_chars: int, footer: str) -> str | None:
    """The text for the last of the ``messages`` platform messages of a cut reply.

    The footer goes after that message's part, on its own line. When the two do not fit in
    ``max_chars``, the footer is shortened (with "…"), or left out: the text never is.

    Args:
        content: The text saved before the crash.
        messages: How many platform messages show the reply.
        max_chars: The platform's longest message.
        footer: The surface's rendering of the interrupted status ("" for none).

    Returns:
        The text, or ``None`` when ``content`` does not fill ``messages`` messages (the
        messages showed more than the saved answer, such as a thinking block): editing the
        last one would repeat or drop text the user saw.
    """
    if messages <= 0:
        return None
    parts = shown_parts(content, max_chars)
    if len(parts) < messages:
        return None
    part = parts[messages - 1]
    text = part.text if part.body.strip() else PLACEHOLDER
    room = max_chars - len(text) - 1  # one for the newline before the footer
    if len(footer) > room:
        # A footer cut to a sliver would say nothing: below a few characters, none at all.
        footer = footer[: room - 1] + PLACEHOLDER if room > 8 else ""
    return f"{text}\n{footer}" if footer else text


async def mend_cut_replies(
    platform: str,
    cut_replies: list[CutReply],
    mend: Mend,
    *,
    max_chars: int,
    render_status: Callable[[ReplyStatus], str],
) -> int:
    """Mark on the platform each of ``cut_replies`` (see ``Engine.mend_cut_replies``).

    Returns:
        How many replies were mended.
    """
    footer = render_status(ReplyStatus(Outcome.INTERRUPTED, error=INTERRUPTED_BY_RESTART))
    mended = 0
    for cut in cut_replies:
        extra = {"session": str(cut.key), "reply": cut.message_id}
        if not cut.refs:
            continue  # nothing was shown: nothing to mark
        text = last_message_text(cut.content, len(cut.refs), max_chars, footer)
        if text is None:
            logger.info(
                "cut reply not mended: its saved text does not fill its messages", extra=extra
            )
            continue
        try:
            await mend(cut, text)
        except OllabotError as err:
            logger.warning(
                "could not mark a reply cut by a crash on the platform",
                extra={**extra, "error": type(err).__name__, "detail": err.detail},
            )
            continue
        mended += 1
    if cut_replies:
        logger.info(
            "marked cut replies on the platform", extra={"platform": platform, "count": mended}
        )
    return mended
