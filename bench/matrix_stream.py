"""Matrix streaming benchmark: one 1,000-token reply at 50 tokens/s against a real Synapse.

Run: ``.venv/bin/python bench/matrix_stream.py`` (add ``--only encrypted,lifted`` for a subset)

Three runs in one process: with Synapse's default rate limits for the bot (``rc_message`` 0.2/s,
burst 10); with the bot's limit lifted through the admin API's ``override_ratelimit``; and lifted
again in an end-to-end encrypted room, where every edit is encrypted by the bot and decrypted by
the observer. Every bot has its crypto store (as ``ollabot run`` gives it). Reports the 429s the
bot received, the edits it sent, the bot's CPU per edit (the main thread's CPU time: bot, engine,
fake Ollama; the observer runs in a thread of its own), and the visible lag: for every token,
the time from the fake Ollama writing it to the newest edit that Synapse serves containing it
(polled every 50 ms; decrypted in the encrypted run; p50, p95, max). Targets: at most one 429 per
run; p95 lag <= 1 s lifted, <= ~5.5 s with the defaults; encrypted: CPU per edit <= 1.3x and p95
lag within 0.2 s of the lifted plain run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import nio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.fakes.fake_ollama as fake_module  # noqa: E402
from adapters.matrix import MatrixBot, MatrixConfig  # noqa: E402
from bot.config import BotConfig, LimitsConfig  # noqa: E402
from bot.conversation.engine import Engine  # noqa: E402
from bot.model.ollama import OllamaChatModel  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402
from tests.fakes.fake_ollama import FakeOllama, Reply  # noqa: E402
from tests.fakes.synapse import SynapseServer  # noqa: E402

TOKENS = 1000
RATE = 50.0
POLL = 0.05
RUNS = ("default", "lifted", "encrypted")
ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}

# When each content token left the fake Ollama (perf_counter), keyed by its index.
_sent_at: dict[int, float] = {}
_original_encode = fake_module._encode


def _recording_encode(obj: Any) -> bytes:
    content = obj.get("message", {}).get("content", "") if isinstance(obj, dict) else ""
    if content.startswith("w") and content[1:].strip().isdigit():
        _sent_at.setdefault(int(content[1:].strip()), time.perf_counter())
    return _original_encode(obj)


fake_module._encode = _recording_encode  # the fake writes each line right after encoding it


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _login(synapse: SynapseServer, name: str, password: str) -> dict[str, Any]:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": name},
        "password": password,
    }
    return synapse.request("POST", "/_matrix/client/v3/login", body)


def _client(synapse: SynapseServer, login: dict[str, Any], store: Path | None) -> nio.AsyncClient:
    config = nio.AsyncClientConfig(encryption_enabled=store is not None, store_sync_tokens=False)
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    client = nio.AsyncClient(
        synapse.url,
        login["user_id"],
        device_id=login["device_id"],
        store_path=str(store) if store is not None else "",
        config=config,
    )
    client.restore_login(login["user_id"], login["device_id"], login["access_token"])
    return client


async def _step(client: nio.AsyncClient) -> None:
    """A sync and the key upkeep an encrypting client does between syncs."""
    await client.sync(timeout=0, full_state=True if client.next_batch is None else None)
    await client.send_to_device_messages()
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()


class Observer(threading.Thread):
    """A person's device watching the reply, in a thread (and event loop) of its own.

    Polls ``GET /rooms/{room}/event/{reply}`` every 50 ms and reads the newest ``m.replace``,
    decrypting it in an encrypted room (a sync fetches room keys it does not have yet).
    """

    def __init__(self, synapse: SynapseServer, login: dict[str, Any], store: Path | None) -> None:
        super().__init__(name="observer", daemon=True)
        self.synapse = synapse
        self.login = login
        self.store = store
        self.room_id = ""
        self.asked_id = ""
        self.bot_id = ""
        self.visible_at: dict[int, float] = {}
        self.decrypt_failures = 0
        self.ready = threading.Event()
        self.go = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        client = _client(self.synapse, self.login, self.store)
        try:
            if self.store is not None:
                await _step(client)  # publish this device's keys before the room exists
            self.ready.set()
            await asyncio.to_thread(self.go.wait)
            await self._watch(client)
        finally:
            await client.close()

    async def _get(self, client: nio.AsyncClient, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {client.access_token}"}
        async with client.client_session.get(self.synapse.url + path, headers=headers) as resp:
            data: dict[str, Any] = await resp.json()
            return data

    async def _watch(self, client: nio.AsyncClient) -> None:
        if client.client_session is None:
            client.client_session = aiohttp.ClientSession()
        reply_id: str | None = None
        room = self.room_id
        started = time.perf_counter()
        while len(self.visible_at) < TOKENS and time.perf_counter() - started < 120:
            await asyncio.sleep(POLL)
            if self.done.is_set() and reply_id is None:
                return
            if reply_id is None:
                msgs = await self._get(
                    client, f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"
                )
                for e in msgs.get("chunk", []):
                    rel = e.get("content", {}).get("m.relates_to", {})
                    if e["sender"] == self.bot_id and rel.get("event_id") == self.asked_id:
                        reply_id = e["event_id"]
                if reply_id is None:
                    continue
            event = await self._get(client, f"/_matrix/client/v3/rooms/{room}/event/{reply_id}")
            now = time.perf_counter()
            edit = event.get("unsigned", {}).get("m.relations", {}).get("m.replace")
            shown = edit if edit else event
            if shown.get("type") == "m.room.encrypted":
                body = await self._decrypt(client, shown)
                if body is None:
                    continue
            else:
                content = shown["content"]
                body = content.get("m.new_content", content)["body"]
            for word in body.split():
                if word.startswith("w") and word[1:].isdigit():
                    self.visible_at.setdefault(int(word[1:]), now)

    async def _decrypt(self, client: nio.AsyncClient, source: dict[str, Any]) -> str | None:
        event = nio.MegolmEvent.from_dict({**source, "room_id": self.room_id})
        try:
            decrypted = client.decrypt_event(event)
        except nio.EncryptionError:
            self.decrypt_failures += 1
            await _step(client)  # the room key comes by to-device message
            return None
        content = decrypted.source["content"]
        return str(content.get("m.new_content", content)["body"])


async def one_run(synapse: SynapseServer, fake: FakeOllama, tmp: Path, run: str) -> dict[str, Any]:
    _sent_at.clear()
    lifted = run != "default"
    encrypted = run == "encrypted"
    tag = f"{run}-{uuid.uuid4().hex[:6]}"
    bot_id, bot_token = synapse.register(f"bench-bot-{tag}")
    human_name = f"bench-human-{tag}"
    human_id, _ = synapse.register(human_name, password=f"pw-{tag}")
    synapse.lift_ratelimit(human_id)
    if lifted:
        synapse.lift_ratelimit(bot_id)
    store = (lambda name: tmp / tag / name) if encrypted else (lambda name: None)
    human = _client(synapse, _login(synapse, human_name, f"pw-{tag}"), store("human"))
    observer = Observer(synapse, _login(synapse, human_name, f"pw-{tag}"), store("observer"))
    observer.start()
    await asyncio.to_thread(observer.ready.wait)
    config = MatrixConfig(
        homeserver=synapse.url,
        user_id=bot_id,
        sync_timeout_ms=5000,
        crypto_store=tmp / tag / "bot-crypto",
        # Lifted: the operator tells the bot the limit is gone, so it may edit often.
        messages_per_second=5.0 if lifted else 0.2,
    )
    engine = Engine(
        OllamaChatModel(fake.url),
        SqliteStore(tmp / tag / "bot.db"),
        BotConfig(limits=LimitsConfig(user_messages_per_minute=1000)),
    )
    await engine.start()
    bot = MatrixBot(engine, config, access_token=bot_token)
    await bot.start()
    try:
        if encrypted:
            await _step(human)
        created = await human.room_create(
            name="bench", invite=[bot_id], initial_state=[ENCRYPTION] if encrypted else []
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        while True:
            await _step(human) if encrypted else await human.sync(timeout=0)
            room = human.rooms.get(room_id)
            if room is not None and bot_id in room.users and room.encrypted == encrypted:
                break
            await asyncio.sleep(0.05)
        fake.script(Reply(tokens=[f"w{i} " for i in range(TOKENS)], token_delay=1 / RATE))
        observer.room_id, observer.bot_id = room_id, bot_id
        content = {"msgtype": "m.text", "body": "go", "m.mentions": {"user_ids": [bot_id]}}
        cpu_before = time.thread_time()
        asked = await human.room_send(
            room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        assert isinstance(asked, nio.RoomSendResponse), asked
        observer.asked_id = asked.event_id
        observer.go.set()
        # The observer ends when it has seen every token (or after 120 s).
        await asyncio.to_thread(observer.join, 150)
        await bot.idle()
        cpu = time.thread_time() - cpu_before
    finally:
        observer.done.set()
        observer.go.set()
        await bot.close()
        await engine.close()
        await human.close()
    visible_at = observer.visible_at
    lags = [visible_at[i] - _sent_at[i] for i in visible_at if i in _sent_at]
    stats = bot.replier.stats
    return {
        "run": {"default": "limits default", "lifted": "limit lifted"}.get(
            run, "encrypted, lifted"
        ),
        "tokens_visible": len(visible_at),
        "rate_limited_429": stats.rate_limited,
        "edits_sent": stats.edits,
        "messages_sent": stats.messages,
        "cpu_ms_per_edit": round(1000 * cpu / max(1, stats.edits + stats.messages), 2),
        "lag_p50_s": round(statistics.median(lags), 2) if lags else None,
        "lag_p95_s": round(percentile(lags, 0.95), 2) if lags else None,
        "lag_max_s": round(max(lags), 2) if lags else None,
        "observer_key_waits": observer.decrypt_failures,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.add_argument("--only", default=",".join(RUNS), help="runs, comma-separated")
    args = parser.parse_args()
    # nio warns about every event it cannot decrypt yet (the observer syncs for the key).
    logging.getLogger("nio").setLevel(logging.ERROR)
    runs = [r for r in args.only.split(",") if r in RUNS]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        synapse = SynapseServer(tmp / "synapse")
        synapse.start()
        try:
            async with FakeOllama() as fake:
                results = [await one_run(synapse, fake, tmp, run) for run in runs]
        finally:
            synapse.stop()
    by_run = {r["run"]: r for r in results}
    plain, encrypted = by_run.get("limit lifted"), by_run.get("encrypted, lifted")
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            print("  ".join(f"{k}={v}" for k, v in result.items()))
    if plain and encrypted and plain["cpu_ms_per_edit"] and plain["lag_p95_s"] is not None:
        ratio = encrypted["cpu_ms_per_edit"] / plain["cpu_ms_per_edit"]
        delta = (encrypted["lag_p95_s"] or 0) - plain["lag_p95_s"]
        summary = {
            "encrypted_vs_plain_cpu_per_edit": round(ratio, 2),
            "encrypted_minus_plain_lag_p95_s": round(delta, 2),
            "targets": "cpu ratio <= 1.3, lag p95 delta <= 0.2 s",
        }
        print(
            json.dumps(summary) if args.json else "  ".join(f"{k}={v}" for k, v in summary.items())
        )


if __name__ == "__main__":
    asyncio.run(main())
