"""Room membership: invites by config, leaving empty rooms, encrypted rooms said out loud."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import pytest

from tests.fakes.synapse import SynapseError, SynapseServer
from tests.matrix.conftest import Human, StartBot, eventually

pytestmark = pytest.mark.synapse


async def membership(synapse: SynapseServer, human: Human, room_id: str, user_id: str) -> str:
    path = f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{urllib.parse.quote(user_id)}"
    try:
        state = await asyncio.to_thread(
            synapse.request, "GET", path, token=human.client.access_token
        )
    except SynapseError:
        return "unknown"
    return str(state.get("membership"))


async def test_invite_from_a_server_not_allowed_is_declined(
    synapse: SynapseServer, human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot(allowed_servers=frozenset({"elsewhere.example"}))
    room_id = await human.create_room(invite=(bot.user_id,))

    async def declined() -> bool:
        return await membership(synapse, human, room_id, bot.user_id) == "leave"

    await eventually(declined)


async def test_invite_from_an_allowed_inviter_is_accepted(
    synapse: SynapseServer, human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot(
        allowed_servers=frozenset({"elsewhere.example"}),
        allowed_inviters=frozenset({human.user_id}),
    )
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)


async def test_with_only_allowed_inviters_others_of_the_own_server_are_declined(
    synapse: SynapseServer, new_human: Any, start_bot: StartBot
) -> None:
    """``allowed_inviters`` alone is the whole list: the own-server default does not apply."""
    friend: Human = new_human()
    stranger: Human = new_human()
    bot = await start_bot(allowed_inviters=frozenset({friend.user_id}))
    declined_room = await stranger.create_room(invite=(bot.user_id,))
    accepted_room = await friend.create_room(invite=(bot.user_id,))
    await friend.wait_joined(accepted_room, bot.user_id)

    async def declined() -> bool:
        return await membership(synapse, stranger, declined_room, bot.user_id) == "leave"

    await eventually(declined)


async def test_bot_leaves_when_it_is_the_last_member(
    synapse: SynapseServer, human: Human, start_bot: StartBot
) -> None:
    bot = await start_bot()
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)
    await human.client.room_leave(room_id)

    async def bot_left() -> bool:
        rooms = await asyncio.to_thread(
            synapse.request,
            "GET",
            "/_matrix/client/v3/joined_rooms",
            token=bot.token,
        )
        return room_id not in rooms["joined_rooms"]

    await eventually(bot_left)


async def test_without_encryption_support_an_encrypted_room_is_told_how_to_enable_it(
    human: Human, start_bot: StartBot
) -> None:
    # What an install without matrix-nio's e2e extra does (encryption off is the same path).
    bot = await start_bot(encryption=False)
    room_id = await human.create_room(invite=(bot.user_id,), encrypted=True)

    async def notice() -> str | None:
        for message in await human.bot_messages(room_id, bot.user_id):
            body = str(message["content"].get("body", ""))
            if "encrypted" in body:
                return body
        return None

    text = await eventually(notice)
    assert "cannot read encrypted messages" in text
    assert "matrix-nio[e2e]" in text
