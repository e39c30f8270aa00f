"""Matrix streaming benchmark: one 1,000-token reply at 50 tokens/s against a real Synapse.

Run: ``.venv/bin/python bench/matrix_stream.py``

Twice: with Synapse's default rate limits for the bot (``rc_message`` 0.2/s, burst 10), and with
the bot's limit lifted through the admin API's ``override_ratelimit``. Reports the 429s the bot
received, the edits it sent, and the visible lag: for every token, the time from the fake Ollama
writing it to the newest edit that Synapse serves containing it (polled every 50 ms; p50, p95,
max). Targets: at most one 429 per run; p95 lag <= 1 s lifted, <= ~5.5 s with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

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


async def _api(
    http: aiohttp.ClientSession, synapse: SynapseServer, method: str, path: str, token: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, synapse.url + path, json=body, headers=headers) as resp:
        data: dict[str, Any] = await resp.json()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data}")
        return data


async def one_run(
    synapse: SynapseServer, fake: FakeOllama, tmp: Path, lifted: bool
) -> dict[str, Any]:
    _sent_at.clear()
    tag = "lifted" if lifted else "default"
    bot_id, bot_token = synapse.register(f"bench-bot-{tag}-{time.monotonic_ns()}")
    human_id, human_token = synapse.register(f"bench-human-{tag}-{time.monotonic_ns()}")
    synapse.lift_ratelimit(human_id)
    if lifted:
        synapse.lift_ratelimit(bot_id)
    config = MatrixConfig(
        homeserver=synapse.url,
        user_id=bot_id,
        sync_timeout_ms=5000,
        # Lifted: the operator tells the bot the limit is gone, so it may edit often.
        messages_per_second=5.0 if lifted else 0.2,
    )
    engine = Engine(
        OllamaChatModel(fake.url),
        SqliteStore(tmp / f"{tag}.db"),
        BotConfig(limits=LimitsConfig(user_messages_per_minute=1000)),
    )
    await engine.start()
    bot = MatrixBot(engine, config, access_token=bot_token)
    await bot.start()
    visible_at: dict[int, float] = {}
    try:
        async with aiohttp.ClientSession() as http:
            room = await _api(http, synapse, "POST", "/_matrix/client/v3/createRoom", human_token,
                              {"name": "bench", "invite": [bot_id]})  # fmt: skip
            room_id = room["room_id"]
            while True:
                members = await _api(
                    http, synapse, "GET", f"/_matrix/client/v3/rooms/{room_id}/joined_members",
                    human_token,
                )  # fmt: skip
                if bot_id in members["joined"]:
                    break
                await asyncio.sleep(0.05)
            fake.script(Reply(tokens=[f"w{i} " for i in range(TOKENS)], token_delay=1 / RATE))
            asked = await _api(
                http, synapse, "PUT",
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/bench{time.monotonic_ns()}",
                human_token,
                {"msgtype": "m.text", "body": "go", "m.mentions": {"user_ids": [bot_id]}},
            )  # fmt: skip
            asked_id = asked["event_id"]
            reply_id: str | None = None
            started = time.perf_counter()
            while len(visible_at) < TOKENS and time.perf_counter() - started < 120:
                await asyncio.sleep(POLL)
                if reply_id is None:
                    msgs = await _api(
                        http, synapse, "GET",
                        f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=20",
                        human_token,
                    )  # fmt: skip
                    for e in msgs["chunk"]:
                        rel = e.get("content", {}).get("m.relates_to", {})
                        if e["sender"] == bot_id and rel.get("event_id") == asked_id:
                            reply_id = e["event_id"]
                    if reply_id is None:
                        continue
                event = await _api(
                    http, synapse, "GET", f"/_matrix/client/v3/rooms/{room_id}/event/{reply_id}",
                    human_token,
                )  # fmt: skip
                now = time.perf_counter()
                edit = event.get("unsigned", {}).get("m.relations", {}).get("m.replace")
                body = (
                    edit["content"]["m.new_content"]["body"] if edit else event["content"]["body"]
                )
                for word in body.split():
                    if word.startswith("w") and word[1:].isdigit():
                        visible_at.setdefault(int(word[1:]), now)
            await bot.idle()
    finally:
        await bot.close()
        await engine.close()
    lags = [visible_at[i] - _sent_at[i] for i in visible_at if i in _sent_at]
    stats = bot.replier.stats
    return {
        "run": f"limits {tag}",
        "tokens_visible": len(visible_at),
        "rate_limited_429": stats.rate_limited,
        "edits_sent": stats.edits,
        "messages_sent": stats.messages,
        "lag_p50_s": round(statistics.median(lags), 2) if lags else None,
        "lag_p95_s": round(percentile(lags, 0.95), 2) if lags else None,
        "lag_max_s": round(max(lags), 2) if lags else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        synapse = SynapseServer(tmp / "synapse")
        synapse.start()
        try:
            async with FakeOllama() as fake:
                results = [
                    await one_run(synapse, fake, tmp, lifted=False),
                    await one_run(synapse, fake, tmp, lifted=True),
                ]
        finally:
            synapse.stop()
    for result in results:
        if args.json:
            print(json.dumps(result))
        else:
            print("  ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    asyncio.run(main())
