"""A model pull's progress in Matrix: one notice edited into a live progress bar."""

from __future__ import annotations

import logging
import time

from adapters.matrix.surface import RoomSender
from bot.conversation.results import PullView, render_progress_bar
from bot.errors import OllabotError, RateLimited
from bot.reply.streamer import Pacer

log = logging.getLogger("adapters.matrix.replies")

PROGRESS_INTERVAL = 2.0
"""Seconds between progress edits at the most: the lines are skippable, the room's budget is not."""


async def show_pull_progress(
    sender: RoomSender, pacer: Pacer, event_id: str, result: PullView
) -> None:
    """Edit the pull's notice ``event_id`` into a live progress bar, as the room allows."""
    assert result.progress is not None
    last_shown = ""
    latest = ""
    last_edit = time.monotonic()
    async for progress in result.progress:
        latest = f"**{result.title}**\n{render_progress_bar(progress)}"
        if time.monotonic() - last_edit >= PROGRESS_INTERVAL:
            await pacer.acquire()
            last_shown = await _try_edit(sender, pacer, event_id, latest) or last_shown
            last_edit = time.monotonic()
    if latest and latest != last_shown:
        await pacer.acquire()
        await _try_edit(sender, pacer, event_id, latest)


async def _try_edit(sender: RoomSender, pacer: Pacer, event_id: str, text: str) -> str | None:
    try:
        await sender.edit(event_id, text, msgtype="m.notice")
    except RateLimited as err:
        pacer.penalize(err.retry_after)
        return None
    except OllabotError as err:
        log.warning("progress edit failed in %s: %s", sender.room_id, err.detail)
        return None
    return text
