"""How replies and command results look on Discord: footers, clipped bodies, progress bars."""

from __future__ import annotations

from bot.conversation.results import CommandResult
from bot.reply.streamer import ReplyStatus
from bot.types import Outcome
from bot.validation import neutralise_bidi

MAX_CONTENT = 2000
"""Discord's limit on a message's ``content``."""

_EARLY_END = {
    Outcome.LENGTH: "✂️ cut at the length limit",
    Outcome.STOPPED: "⏹️ stopped",
    Outcome.INTERRUPTED: "⚠️ interrupted",
    Outcome.ERROR: "⚠️ error",
}


def render_footer(status: ReplyStatus, *, show_details: bool) -> str:
    """The line under a finished reply ("" when there is nothing worth saying).

    Failures are written in full size, so that nobody mistakes a cut reply for a whole one;
    model and speed go in Discord's small grey subtext, and only when ``show_details`` (the
    ``show_footer`` setting).
    """
    if status.outcome in (Outcome.ERROR, Outcome.INTERRUPTED) and status.error:
        return f"{_EARLY_END[status.outcome]}: {status.error}"
    parts: list[str] = []
    if status.outcome in _EARLY_END:
        parts.append(_EARLY_END[status.outcome])
    if show_details and status.outcome is not Outcome.ERROR:
        if status.model:
            parts.append(status.model)
        if status.tokens_per_second:
            parts.append(f"{status.tokens_per_second:.1f} tokens/s")
    if not parts:
        return ""
    # "-#" is Discord's subtext markdown: a small grey line.
    return "-# " + " · ".join(parts)


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def render_result(result: CommandResult) -> str:
    """A command result as one Discord message (echoed user text loses its bidi overrides)."""
    return clip(neutralise_bidi(result.as_markdown()))
