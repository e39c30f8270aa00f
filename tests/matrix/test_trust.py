"""Device trust rules applied to the bot's real nio crypto store, without a homeserver."""

from __future__ import annotations

from pathlib import Path

import nio
import pytest
from nio.crypto import OlmDevice

from adapters.matrix.config import MatrixConfig
from adapters.matrix.crypto import ENCRYPTION_ENABLED, BotClient, KeyChange

pytestmark = pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="matrix-nio[e2e] is not installed")

BOT = "@bot:example.org"
ALICE = "@alice:example.org"
ROOM = "!room:example.org"


def client(tmp_path: Path, trust: str) -> BotClient:
    config = MatrixConfig(
        homeserver="http://127.0.0.1:9", user_id=BOT, crypto_store=tmp_path, device_trust=trust
    )
    bot = BotClient(config, tmp_path)
    bot.restore_login(BOT, "BOTDEVICE", "token")  # loads (or creates) the store; no request
    room = nio.MatrixRoom(ROOM, BOT, encrypted=True)
    room.add_member(ALICE, None, None)
    bot.rooms[ROOM] = room
    return bot


def alice_device(bot: BotClient) -> OlmDevice:
    known = bot.device_store[ALICE].get("PHONE")
    if known is not None:
        return known
    device = OlmDevice(ALICE, "PHONE", {"ed25519": "ed", "curve25519": "curve"})
    bot.olm.device_store.add(device)
    bot.olm.store.save_device_keys({ALICE: {"PHONE": device}})
    return device


async def test_a_device_refused_under_verified_is_trusted_again_under_tofu(tmp_path: Path) -> None:
    strict = client(tmp_path, "verified")
    strict._decide(alice_device(strict))
    assert alice_device(strict).blacklisted
    await strict.close()

    relaxed = client(tmp_path, "tofu")
    device = alice_device(relaxed)
    assert device.blacklisted  # the store remembers
    relaxed._decide(device)
    assert device.ignored
    assert not device.blacklisted
    await relaxed.close()


@pytest.mark.parametrize(
    ("trust", "verified", "refused"),
    [("tofu", True, True), ("tofu", False, False), ("all", True, False), ("verified", False, True)],
)
async def test_new_keys_of_a_device_refuse_the_room_only_where_the_rule_says(
    tmp_path: Path, trust: str, verified: bool, refused: bool
) -> None:
    bot = client(tmp_path, trust)
    device = alice_device(bot)
    if verified:
        bot.verify_device(device)
    bot._key_changed(ALICE, "PHONE")
    refusal = bot.refusal_for(ROOM)
    await bot.close()
    assert (refusal is not None) == refused
    if refusal is not None:
        assert isinstance(refusal, KeyChange)
        assert (refusal.user_id, refusal.device_id) == (ALICE, "PHONE")
