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

from bot.reply.layout import PLACEHOLDER
from bot.reply.splitting import Fence, Part, next_cut

__all__ = ["INTERRUPTED_BY_RESTART", "last_message_text", "shown_parts"]

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
