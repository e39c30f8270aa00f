"""A reply cut by a crash is marked in its room once the restarted bot is back.

A crash cannot happen inside the test process, so the test makes what a SIGKILL leaves: the
bot's own events showing part of a reply, and that reply still ``streaming`` in the bot's store
with the events as its refs (what the engine saves while streaming). The bot then restarts on the
same database, as after the kill.
"""

from __future__ import annotations

import pytest

from adapters.matrix.render import content
from adapters.matrix.surface import render_status, send_checked
from bot.conversation.cut_replies import INTERRUPTED_BY_RESTART, shown_parts
from bot.reply.streamer import ReplyStatus
from bot.store.port import MessageStatus, NewMessage
from bot.turn import SessionKey
from bot.types import Outcome, Role
from tests.matrix.conftest import Human, StartBot, eventually

pytestmark = pytest.mark.synapse

# The footer as the surface renders it (the text the restarted bot must add).
FOOTER = render_status(ReplyStatus(Outcome.INTERRUPTED, error=INTERRUPTED_BY_RESTART))


async def test_the_last_event_of_a_cut_reply_is_edited_to_say_it_was_interrupted(
    human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot(max_chars=500)
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)

    async def bot_knows_room() -> bool:
        # An encrypting client sends only into rooms it has synced (it must know the room is
        # not encrypted).
        return room_id in bot.bot.client.rooms

    await eventually(bot_knows_room)
    # A reply long enough for two messages, cut before its end.
    partial = " ".join(f"word{i}" for i in range(100))
    parts = shown_parts(partial, 500)
    assert len(parts) == 2
    refs = [await send_checked(bot.bot.client, room_id, content(part.text)) for part in parts]
    store = bot.engine.store
    session = await store.session_id(SessionKey("matrix", room_id))
    await store.append(session, NewMessage(Role.USER, "count", author_id=human.user_id))
    reply = await store.append(
        session, NewMessage(Role.ASSISTANT, "", status=MessageStatus.STREAMING)
    )
    await store.update_message(reply, content=partial, status=MessageStatus.STREAMING, refs=refs)

    await bot.restart()

    async def mended() -> str | None:
        shown = await human.visible_text(room_id, refs[1])
        return shown if shown != parts[1].text else None

    assert await eventually(mended) == f"{parts[1].text}\n{FOOTER}"
    # The first message already showed its whole part: it is left as it was.
    assert await human.visible_text(room_id, refs[0]) == parts[0].text
    [(_, _, status)] = [
        (m.role, m.content, m.status)
        for m in await bot.engine.store.recent_messages(session, 10)
        if m.role is Role.ASSISTANT
    ]
    assert status is MessageStatus.INTERRUPTED
