"""Eight replies streaming at once into Discord channels that allow 5 edits per 5 s each.

Run: ``.venv/bin/python bench/discord_stream.py``

Everything is real except the two servers: the engine, the Discord adapter and discord.py run
against the wire-level fakes (``tests/fakes/fake_discord.py``, ``tests/fakes/fake_ollama.py``) on
loopback. The fake Discord enforces 5 creates+edits per 5 s per channel (answering 429 with
``retry_after`` beyond that, and sending ``X-RateLimit-*`` headers, as Discord does). Four
channels get one reply each and a fifth gets four at once; every reply is 600 tokens at 40
tokens/s.

Reports:
  - 429s the fake sent (target 0: the per-channel pacer and the headers keep the bot under the
    limit);
  - operations (sends + edits) per reply;
  - visible lag: for each token, the time from the fake Ollama writing it to the first message
    version on the fake Discord that shows it; p50/p95/max for the one-reply channels (target
    p95 <= 1.5 s) and for the shared channel (four replies share one budget there);
  - first visible text in the shared channel: for each reply, from its first token to the
    first message that shows it (target p95 <= 0.3 s: a reply's first message goes before the
    edits already waiting for the channel's budget).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import tests.fakes.fake_ollama as fake_ollama_module  # noqa: E402
from adapters.discord import DiscordConfig, running_bot  # noqa: E402
from bot.config import BotConfig, LimitsConfig  # noqa: E402
from bot.conversation.engine import Engine  # noqa: E402
from bot.model.ollama import OllamaChatModel  # noqa: E402
from bot.store.sqlite import SqliteStore  # noqa: E402
from tests.fakes.fake_discord import FakeDiscord  # noqa: E402
from tests.fakes.fake_ollama import FakeOllama, Reply  # noqa: E402

RATE = 40.0
TOKENS = 600
LIMIT = (5, 5.0)

# When each content token left the fake Ollama (monotonic, like the fake Discord's edit times).
_sent_at: dict[str, float] = {}
_original_encode = fake_ollama_module._encode


def _recording_encode(obj: Any) -> bytes:
    content = obj.get("message", {}).get("content", "") if isinstance(obj, dict) else ""
    if content.startswith("r") and "t" in content:
        _sent_at.setdefault(content.strip(), time.monotonic())
    return _original_encode(obj)


fake_ollama_module._encode = _recording_encode  # the fake writes each line right after encoding


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def visible_times(fake: FakeDiscord, channel_id: int) -> dict[str, float]:
    """For every token, when it first showed in a bot message of the channel."""
    seen: dict[str, float] = {}
    for message in fake.bot_messages_in(channel_id):
        for edit in message.history:
            for word in edit.content.split():
                if word not in seen or edit.at < seen[word]:
                    seen[word] = edit.at
    return seen


async def run(tokens: int, rate: float, burst: int) -> dict[str, Any]:
    _sent_at.clear()
    async with FakeDiscord(rate_limit=LIMIT) as fake, FakeOllama() as ollama:
        guild = fake.add_guild("bench")
        singles = [fake.add_channel(guild, f"solo-{i}") for i in range(4)]
        shared = fake.add_channel(guild, "shared")
        user = fake.add_user("asker")
        fake.add_member(guild, user)
        with tempfile.TemporaryDirectory() as tmp:
            config = BotConfig(
                limits=LimitsConfig(user_messages_per_minute=1000, max_concurrent_generations=8)
            )
            engine = Engine(OllamaChatModel(ollama.url), SqliteStore(Path(tmp) / "b.db"), config)
            discord_config = DiscordConfig(
                api_base_url=fake.api_base,
                gateway_url=fake.gateway_url,
                guild_ready_timeout=0.05,
                edit_burst=burst,
            )
            async with engine, running_bot(engine, discord_config, "bench-token"):
                targets = [*singles, shared, shared, shared, shared]
                for j, _ in enumerate(targets):
                    words = [f"r{j}t{i} " for i in range(tokens)]
                    ollama.script(Reply(tokens=words, token_delay=1 / rate))
                started = time.monotonic()
                for channel in targets:
                    await fake.post_message(
                        user, channel, f"<@{fake.bot_user.id}> go", mentions=[fake.bot_user]
                    )

                def all_done() -> bool:
                    finished = [
                        m
                        for c in [*singles, shared]
                        for m in fake.bot_messages_in(c.id)
                        if "\n-# " in m.content
                    ]
                    return len(finished) == len(targets)

                await fake.wait_for(all_done, within=tokens / rate * 8 + 30)
                elapsed = time.monotonic() - started
        lags: dict[str, list[float]] = {"one-reply channels": [], "shared channel": []}
        first_text: list[float] = []
        ops: list[int] = []
        for channel in [*singles, shared]:
            group = "shared channel" if channel is shared else "one-reply channels"
            seen = visible_times(fake, channel.id)
            for word, at in seen.items():
                if word in _sent_at:
                    lags[group].append(at - _sent_at[word])
            if channel is shared:
                # Each reply's first words: from the model writing them to the first message
                # that shows them (issue 10: a new reply is not paced behind the others' edits).
                for j in range(len(targets)):  # Ollama's replies go out in request order
                    word = f"r{j}t0"
                    if word in seen and word in _sent_at:
                        first_text.append(seen[word] - _sent_at[word])
            per_channel = sum(1 + m.edits for m in fake.bot_messages_in(channel.id))
            replies = 4 if channel is shared else 1
            ops += [round(per_channel / replies)] * replies
        return {
            "elapsed": elapsed,
            "rate_limited": fake.rate_limited_count,
            "ops": ops,
            "lags": lags,
            "first_text": first_text,
        }


def report(result: dict[str, Any], tokens: int, rate: float, burst: int) -> str:
    lines = [
        f"8 replies x {tokens} tokens at {rate:g} tokens/s; limit {LIMIT[0]} per {LIMIT[1]:g} s "
        "per channel (4 channels x 1 reply, 1 channel x 4 replies); "
        f"pacer 1 op/s, burst {burst}",
        f"wall time: {result['elapsed']:.1f} s",
        f"429s received: {result['rate_limited']}",
        "operations (sends + edits) per reply: "
        f"one-reply channels {result['ops'][:4]}, shared channel ~{result['ops'][4]} each",
    ]
    first = result["first_text"]
    if first:
        shown = ", ".join(f"{v:.2f}" for v in first)
        lines.append(
            f"first visible text, shared channel: p95 {percentile(first, 0.95):.2f} s "
            f"(per reply: {shown} s)"
        )
    for group, values in result["lags"].items():
        if not values:
            lines.append(f"visible lag, {group}: no tokens seen")
            continue
        lines.append(
            f"visible lag, {group}: p50 {statistics.median(values):.2f} s, "
            f"p95 {percentile(values, 0.95):.2f} s, max {max(values):.2f} s "
            f"({len(values)} tokens)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--burst", type=int, default=1, help="the pacer's burst (default 1)")
    args = parser.parse_args()
    # The bot logs each 429 as a warning; the report counts them, so keep the output clean.
    logging.getLogger("adapters").setLevel(logging.ERROR)
    result = asyncio.run(run(args.tokens, args.rate, args.burst))
    print(report(result, args.tokens, args.rate, args.burst))


if __name__ == "__main__":
    main()
