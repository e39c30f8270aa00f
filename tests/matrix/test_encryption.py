"""End-to-end encrypted rooms against a real Synapse, with real encrypting clients on both sides.

The people are matrix-nio clients with vodozemac and their own stores; the bot keeps its crypto
store beside its database. Nothing here reads plaintext off the server: every answer is what the
person's device decrypted.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto.sas import SasState

from adapters.matrix.crypto import ENCRYPTION_ENABLED
from adapters.matrix.undecryptable import NOTICE
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import RunningBot, StartBot
from tests.matrix.e2e import ENCRYPTION_STATE, CryptoHuman

pytestmark = [
    pytest.mark.synapse,
    pytest.mark.skipif(not ENCRYPTION_ENABLED, reason="matrix-nio[e2e] is not installed"),
]

NewPerson = Callable[[], CryptoHuman]
# Synapse's limit is lifted for test bots; tell the bot's pacer too, so edits are not what the
# tests wait for (pacing is proven in test_rate_limits.py).
LIFTED: dict[str, Any] = {"messages_per_second": 20.0, "message_burst": 20}


@pytest.fixture
async def people(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[list[CryptoHuman]]:
    made: list[CryptoHuman] = []
    yield made
    for person in made:
        await person.close()


@pytest.fixture
def person(synapse: SynapseServer, tmp_path: Path, people: list[CryptoHuman]) -> NewPerson:
    def make() -> CryptoHuman:
        human = CryptoHuman.register(synapse, tmp_path / "people")
        people.append(human)
        return human

    return make


async def encrypted_dm(human: CryptoHuman, bot: RunningBot) -> str:
    room_id = await human.create_dm(bot.user_id)
    await human.wait_member(room_id, bot.user_id)
    return room_id


async def answered(
    human: CryptoHuman, bot: RunningBot, room_id: str, asked: str, count: int = 1
) -> list[dict[str, Any]]:
    """The bot's answers to ``asked`` this device decrypted, once the reply is finished."""
    await human.until(lambda: len(human.answers(room_id, bot.user_id, asked)) >= count)
    await bot.bot.idle()
    await human.step()
    return human.answers(room_id, bot.user_id, asked)


def assert_all_encrypted(
    human: CryptoHuman, room_id: str, bot: RunningBot, *, since: str | None = None
) -> list[Any]:
    """Every bot event this device saw (after ``since``) was encrypted on the wire and it could
    decrypt it; the messages sent in plain text, if any."""
    events = human.seen[room_id]
    if since is not None:
        events = events[[e.event_id for e in events].index(since) :]
    from_bot = [e for e in events if getattr(e, "sender", None) == bot.user_id]
    assert [e for e in from_bot if isinstance(e, nio.MegolmEvent)] == []
    messages = [e for e in from_bot if e.source.get("type") == "m.room.message"]
    assert messages
    return [e for e in messages if not getattr(e, "decrypted", False)]


async def test_encrypted_dm_is_answered_and_every_edit_decrypts_to_the_answer(
    person: NewPerson, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    tokens = ["word0", *(f" word{i}" for i in range(1, 30))]
    fake_ollama.script(Reply(tokens=tokens, token_delay=0.02))

    asked = await human.send(room_id, "tell me something")
    [reply] = await answered(human, bot, room_id, asked)

    edits = human.edits(room_id, bot.user_id, reply["event_id"])
    assert edits, "a streamed reply is edited in place"
    assert human.shown(room_id, bot.user_id, reply) == "".join(tokens)
    assert assert_all_encrypted(human, room_id, bot) == []
    assert fake_ollama.requests[-1]["messages"][-1]["content"] == "tell me something"


async def test_after_a_restart_the_bot_reads_the_room_and_answers_nothing_twice(
    person: NewPerson, start_bot: StartBot
) -> None:
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    first = await human.send(room_id, "before")
    await answered(human, bot, room_id, first)

    await bot.restart()
    second = await human.send(room_id, "after")
    [reply] = await answered(human, bot, room_id, second)

    assert human.shown(room_id, bot.user_id, reply) == "echo: after"
    assert len(human.answers(room_id, bot.user_id, first)) == 1
    assert assert_all_encrypted(human, room_id, bot) == []


async def test_a_lost_crypto_store_is_reported_with_what_to_do(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(**LIFTED)
    await bot.bot.close()
    store = bot.config.crypto_store
    assert store is not None
    await asyncio.to_thread(shutil.rmtree, store)

    await bot.restart()

    [record] = [
        r for r in caplog.records if "refused this device's encryption keys" in r.getMessage()
    ]
    assert record.levelname == "ERROR"
    assert "log the bot in on a new device" in record.getMessage()


async def test_a_second_device_is_answered_and_can_read_the_answer(
    person: NewPerson, start_bot: StartBot, tmp_path: Path, people: list[CryptoHuman]
) -> None:
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    first = await human.send(room_id, "from my laptop")
    await answered(human, bot, room_id, first)

    phone = human.second_device(tmp_path / "people")
    people.append(phone)
    await phone.wait_member(room_id, bot.user_id)
    asked = await phone.send(room_id, "from my phone")
    [reply] = await answered(phone, bot, room_id, asked)

    assert phone.shown(room_id, bot.user_id, reply) == "echo: from my phone"
    # History from before this device existed stays unreadable to it, as in every client.
    assert assert_all_encrypted(phone, room_id, bot, since=asked) == []


async def test_encrypted_stop_reaction_stops_a_streaming_reply(
    person: NewPerson, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(2000)], token_delay=0.01))
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    asked = await human.send(room_id, "talk forever")
    [reply] = await human.until(lambda: human.answers(room_id, bot.user_id, asked))

    await human.react(room_id, reply["event_id"], "⏹️")
    await fake_ollama.wait_for_client_close(within=20)
    await bot.bot.idle()
    await human.step()

    shown = human.shown(room_id, bot.user_id, reply)
    assert "Stopped" in shown
    assert "t1999" not in shown


async def test_encrypted_file_is_downloaded_decrypted_and_read_by_the_model(
    person: NewPerson, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    notes = "ingredients: flour, water, salt\n"

    asked = await human.send_file(room_id, "recipe.txt", notes.encode(), "text/plain")
    [reply] = await answered(human, bot, room_id, asked)

    prompt = fake_ollama.requests[-1]["messages"][-1]["content"]
    assert prompt.startswith("Please look at the attached file.")
    assert "Attached file `recipe.txt`" in prompt
    assert notes.strip() in prompt
    assert human.shown(room_id, bot.user_id, reply).startswith("echo: Please look")


async def test_undecryptable_message_gets_one_notice_and_a_late_key_one_answer(
    person: NewPerson, start_bot: StartBot
) -> None:
    human = person()
    bot = await start_bot(undecryptable_notice_after=0.2, **LIFTED)
    room_id = await encrypted_dm(human, bot)
    await human.until(lambda: human.client.device_store[bot.user_id])
    bot_device = next(iter(human.client.device_store[bot.user_id].values()))

    # The key of the next session is withheld from the bot's device (as if it got lost).
    human.client.blacklist_device(bot_device)
    await human.client.share_group_session(room_id, ignore_unverified_devices=True)
    session = human.client.olm.outbound_group_sessions[room_id]
    room_key = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room_id,
        "session_id": session.id,
        "session_key": session.session_key,
    }
    withheld = [await human.send(room_id, "first secret"), await human.send(room_id, "second")]

    notices = await human.until(
        lambda: [m for m in human.messages(room_id, bot.user_id) if m["content"]["body"] == NOTICE]
    )
    await bot.bot.idle()
    assert [n["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] for n in notices] == [
        withheld[0]
    ]

    # The bot restarts meanwhile; then the key arrives: each message is answered, once.
    await bot.restart()
    human.client.unblacklist_device(bot_device)
    await _send_room_key(human, bot_device, room_key)
    await answered(human, bot, room_id, withheld[0], count=2)  # the notice, then the answer
    await answered(human, bot, room_id, withheld[1])
    after = await human.send(room_id, "and now?")
    await answered(human, bot, room_id, after)

    def answers(event_id: str) -> list[dict[str, Any]]:
        found = human.answers(room_id, bot.user_id, event_id)
        return [a for a in found if a["content"]["body"] != NOTICE]

    assert [len(answers(e)) for e in withheld] == [1, 1]
    bodies = [m["content"]["body"] for m in human.messages(room_id, bot.user_id)]
    assert bodies.count(NOTICE) == 1


async def _send_room_key(human: CryptoHuman, device: Any, room_key: dict[str, Any]) -> None:
    """Deliver a room key to one device over Olm, as the sender's client does when sharing."""
    client = human.client
    missing = client.get_missing_sessions(room_key["room_id"])
    if missing:
        await client.keys_claim(missing)
    session = client.olm.session_store.get(device.curve25519)
    assert session is not None
    # nio shares keys only with a whole room; the late delivery to one device uses its Olm
    # encryption directly (the same call its share_group_session makes).
    payload = client.olm._olm_encrypt(session, device, "m.room_key", room_key)
    message = nio.ToDeviceMessage("m.room.encrypted", device.user_id, device.id, payload)
    response = await client.to_device(message)
    assert isinstance(response, nio.ToDeviceResponse), response


async def test_encrypted_room_with_three_members_keeps_power_levels(
    person: NewPerson, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    bot = await start_bot(**LIFTED)
    mod, member = person(), person()
    response = await mod.client.room_create(
        name="encrypted team",
        invite=[bot.user_id, member.user_id],
        initial_state=[ENCRYPTION_STATE],
    )
    assert isinstance(response, nio.RoomCreateResponse), response
    room_id = response.room_id
    await member.until(lambda: room_id in member.client.invited_rooms)
    await member.join(room_id)
    await mod.wait_member(room_id, bot.user_id)
    await mod.wait_member(room_id, member.user_id)

    refused = await member.send(room_id, "!ollabot model set qwen3")
    [answer] = await answered(member, bot, room_id, refused)
    assert answer["content"]["body"].startswith("⚠️")

    changed = await mod.send(room_id, "!ollabot model set qwen3")
    [answer] = await answered(mod, bot, room_id, changed)
    assert not answer["content"]["body"].startswith("⚠️")

    asked = await member.send(room_id, "which model?", mention=bot.user_id)
    [reply] = await answered(member, bot, room_id, asked)
    assert reply["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert fake_ollama.requests[-1]["model"].startswith("qwen3")
    await mod.step()
    assert assert_all_encrypted(mod, room_id, bot) == []
    assert assert_all_encrypted(member, room_id, bot) == []


async def test_tofu_warns_when_a_known_device_presents_new_keys_and_keeps_the_first(
    person: NewPerson,
    start_bot: StartBot,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    human = person()
    bot = await start_bot(**LIFTED)
    room_id = await encrypted_dm(human, bot)
    first = await human.send(room_id, "hello")
    await answered(human, bot, room_id, first)

    await impersonate(human, tmp_path / "impostor")

    def warned() -> bool:
        return any(
            r.name == "adapters.matrix.crypto" and "new identity keys" in r.getMessage()
            for r in caplog.records
        )

    await human.until(warned)
    # The bot kept the keys it first trusted: the real device is still read and answered.
    asked = await human.send(room_id, "still me")
    [reply] = await answered(human, bot, room_id, asked)
    assert human.shown(room_id, bot.user_id, reply) == "echo: still me"


async def impersonate(human: CryptoHuman, store: Path) -> None:
    """Someone with the access token uploads other identity keys for the same device."""
    await asyncio.to_thread(store.mkdir)
    impostor = nio.AsyncClient(
        human.synapse.url,
        human.user_id,
        device_id=human.device_id,
        store_path=str(store),
        config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
    )
    impostor.restore_login(human.user_id, human.device_id, human.client.access_token)
    try:
        await impostor.keys_upload()  # the device keys are replaced; its one-time keys clash
    finally:
        await impostor.close()


async def test_a_verified_device_with_new_keys_stops_the_bot_sending_and_it_says_why(
    person: NewPerson, start_bot: StartBot, tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    human = person()
    bot = await start_bot(device_trust="verified", **LIFTED)
    room_id = await encrypted_dm(human, bot)
    await verify_with_emoji(human, bot)
    first = await human.send(room_id, "hello")
    await answered(human, bot, room_id, first)

    await impersonate(human, tmp_path / "impostor")
    await human.until(lambda: bot.bot.client.changed_keys)
    asked_model = len(fake_ollama.requests)
    asked = await human.send(room_id, "still me?")

    def told() -> list[Any]:
        return [
            e
            for e in human.seen.get(room_id, [])
            if getattr(e, "sender", None) == bot.user_id
            and "presented new encryption keys" in getattr(e, "body", "")
        ]

    [notice] = await human.until(told)
    await bot.bot.idle()
    await human.step()
    assert human.device_id in notice.body
    assert not getattr(notice, "decrypted", False)  # plain: the room is not trusted any more
    assert human.answers(room_id, bot.user_id, asked) == []
    assert len(fake_ollama.requests) == asked_model  # refused before asking the model


async def test_verified_trust_refuses_an_unverified_device_until_emoji_verification(
    person: NewPerson, start_bot: StartBot
) -> None:
    human = person()
    bot = await start_bot(device_trust="verified", **LIFTED)
    room_id = await encrypted_dm(human, bot)

    refused = await human.send(room_id, "hello?")
    refusal = await human.until(
        lambda: [
            e
            for e in human.seen.get(room_id, [])
            if getattr(e, "sender", None) == bot.user_id
            and "not verified" in getattr(e, "body", "")
        ]
    )
    assert human.device_id in refusal[0].body
    await bot.bot.idle()
    assert human.answers(room_id, bot.user_id, refused) == []

    await verify_with_emoji(human, bot)

    asked = await human.send(room_id, "now?")
    [reply] = await answered(human, bot, room_id, asked)
    assert human.shown(room_id, bot.user_id, reply) == "echo: now?"
    # Only the refusal went out in plain text: the unverified device had no key to read it.
    assert [e.event_id for e in assert_all_encrypted(human, room_id, bot)] == [refusal[0].event_id]


async def test_emoji_verification_is_refused_to_a_member_who_is_not_a_moderator(
    person: NewPerson, start_bot: StartBot
) -> None:
    bot = await start_bot(device_trust="verified", **LIFTED)
    mod, member = person(), person()
    response = await mod.client.room_create(
        name="encrypted team",
        invite=[bot.user_id, member.user_id],
        initial_state=[ENCRYPTION_STATE],
    )
    assert isinstance(response, nio.RoomCreateResponse), response
    room_id = response.room_id
    await member.until(lambda: room_id in member.client.invited_rooms)
    await member.join(room_id)
    await member.wait_member(room_id, bot.user_id)
    bot_side = bot.bot.client
    await member.until(lambda: member.device_id in bot_side.device_store[member.user_id])
    bot_device = member.client.device_store[bot.user_id][bot_side.device_id]

    response = await member.client.start_key_verification(bot_device)
    assert isinstance(response, nio.ToDeviceResponse), response
    [sas] = list(member.client.key_verifications.values())

    await member.until(lambda: sas.canceled)
    device = bot_side.device_store[member.user_id][member.device_id]
    assert not device.verified


async def verify_with_emoji(human: CryptoHuman, bot: RunningBot) -> None:
    """The person starts SAS with the bot's device and confirms the emoji, as in Element."""
    client = human.client
    bot_device = client.device_store[bot.user_id][bot.bot.client.device_id]
    response = await client.start_key_verification(bot_device)
    assert isinstance(response, nio.ToDeviceResponse), response
    [sas] = list(client.key_verifications.values())
    # The bot accepted, and sent its key after ours.
    await human.until(lambda: sas.state in (SasState.key_received, SasState.mac_received))
    await client.confirm_short_auth_string(sas.transaction_id)
    await human.until(lambda: sas.verified)
    bot_side = bot.bot.client

    def bot_verified() -> bool:
        device = bot_side.device_store[human.user_id].get(human.device_id)
        return bool(device is not None and device.verified)

    await human.until(bot_verified)
