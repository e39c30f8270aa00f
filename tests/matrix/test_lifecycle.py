"""Starting and stopping: password login keeps its device, run_matrix, a homeserver restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.matrix import MatrixBot, MatrixConfig, run_matrix
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import Human, StartBot, eventually, make_engine, unique

pytestmark = pytest.mark.synapse


async def test_password_login_reuses_its_device_across_restarts(
    synapse: SynapseServer, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    user_id, _ = synapse.register(unique("pwbot"), password="s3cret-pw")
    synapse.lift_ratelimit(user_id)
    config = MatrixConfig(homeserver=synapse.url, user_id=user_id, sync_timeout_ms=1000)
    devices = []
    for _ in range(2):
        engine = make_engine(fake_ollama, tmp_path / "pw.db")
        async with engine, MatrixBot(engine, config, password="s3cret-pw") as bot:
            devices.append(bot.client.device_id)
    assert devices[0]
    assert devices[0] == devices[1]


async def test_run_matrix_answers_until_cancelled_and_closes_cleanly(
    synapse: SynapseServer, human: Human, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    user_id, token = synapse.register(unique("runbot"))
    synapse.lift_ratelimit(user_id)
    config = MatrixConfig(homeserver=synapse.url, user_id=user_id, sync_timeout_ms=1000)
    async with make_engine(fake_ollama, tmp_path / "run.db") as engine:
        task = asyncio.create_task(run_matrix(engine, config, access_token=token, password=None))
        room_id = await human.create_room(invite=(user_id,))
        await human.wait_joined(room_id, user_id)
        asked = await human.send(room_id, "ping", mention=user_id)
        await eventually(lambda: human.replies_to(room_id, user_id, asked))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_reply_completes_when_synapse_restarts_mid_stream(
    synapse: SynapseServer, human: Human, start_bot: StartBot, fake_ollama: FakeOllama
) -> None:
    text = " ".join(f"part{i}" for i in range(150))
    fake_ollama.script(Reply.text(text, token_delay=0.03))
    bot = await start_bot()
    room_id = await human.create_room(invite=(bot.user_id,))
    await human.wait_joined(room_id, bot.user_id)
    asked = await human.send(room_id, "keep going", mention=bot.user_id)
    replies = await eventually(lambda: human.replies_to(room_id, bot.user_id, asked))

    await asyncio.to_thread(synapse.restart)
    await bot.bot.idle()

    shown = await human.visible_text(room_id, replies[0]["event_id"])
    assert shown.startswith(text)
