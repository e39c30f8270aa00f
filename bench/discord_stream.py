"""Replies streaming at once into Discord channels that allow 5 edits per 5 s each.

Run: ``.venv/bin/python bench/discord_stream.py`` (``--shared 3`` for three replies in the shared
channel, ``--trace`` to print every operation in the shared channel)

Everything is real except the two servers: the engine, the Discord adapter and discord.py run
against the wire-level fakes (``tests/fakes/fake_discord.py``, ``tests/fakes/fake_ollama.py``) on
loopback. The fake Discord enforces 5 creates+edits per 5 s per channel (answering 429 with
``retry_after`` beyond that, and sending ``X-RateLimit-*`` headers, as Discord does). Four
channels get one reply each and a fifth gets ``--shared`` (4) at once; every reply is 600 tokens
at 40 tokens/s.

Reports:
  - 429s the fake sent (target 0: the per-channel pacer and the headers keep the bot under the
    limit);
  - operations (sends + edits) per reply;
  - visible lag: for each token, the time from the fake Ollama writing it to the first message
    version on the fake Discord that shows it; p50/p95/max for the one-reply channels (target
    p95 <= 1.5 s) and for the shared channel (its replies share one budget there), with the
    shared channel's p95 per reply;
  - first visible text in the shared channel: for each reply, from its first token to the
    first message that shows it (target p95 <= 0.3 s: a reply's first message goes before the
    edits already waiting for the channel's budget);
  - per reply in the shared channel: messages, sends and edits, and how many operations showed
    at most one new token (a first message showing only the first word, a final edit adding
    only the footer).
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


def reply_of(content: str) -> int | None:
    """The reply a bot message belongs to (its words are ``r<reply>t<token>``)."""
    for word in content.split():
        if word.startswith("r") and "t" in word:
            return int(word[1 : word.index("t")])
    return None


def trace_shared(fake: FakeDiscord, channel_id: int, started: float) -> list[dict[str, Any]]:
    """Every create and edit in the channel, in time order, with what it showed first."""
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    messages = fake.bot_messages_in(channel_id)
    versions = [
        (edit.at, message, index, edit.content)
        for message in messages
        for index, edit in enumerate(message.history)
    ]
    parts: dict[int, int] = {}
    for at, message, index, content in sorted(versions, key=lambda v: v[0]):
        reply = reply_of(message.content)
        if index == 0:
            parts[reply or -1] = parts.get(reply or -1, 0) + 1
        new = [w for w in content.split() if w in _sent_at and w not in seen]
        seen.update(new)
        oldest = min((_sent_at[w] for w in new), default=at)
        events.append(
            {
                "at": at - started,
                "reply": reply,
                "kind": "send" if index == 0 else "edit",
                "message": parts.get(reply or -1, 0),
                "new": len(new),
                "stale": at - oldest,
                "final": "\n-# " in content,
            }
        )
    return events


async def run(tokens: int, rate: float, burst: int, shared_replies: int) -> dict[str, Any]:
    _sent_at.clear()
    async with FakeDiscord(rate_limit=LIMIT) as fake, FakeOllama() as ollama:
        guild = fake.add_guild("bench")
        singles = [fake.add_channel(guild, f"solo-{i}") for i in range(4)]
        shared = fake.add_channel(guild, "shared")
        user = fake.add_user("asker")
        fake.add_member(guild, user)
        with tempfile.TemporaryDirectory() as tmp:
            targets = [*singles] + [shared] * shared_replies
            config = BotConfig(
                limits=LimitsConfig(
                    user_messages_per_minute=1000, max_concurrent_generations=len(targets)
                )
            )
            engine = Engine(OllamaChatModel(ollama.url), SqliteStore(Path(tmp) / "b.db"), config)
            discord_config = DiscordConfig(
                api_base_url=fake.api_base,
                gateway_url=fake.gateway_url,
                guild_ready_timeout=0.05,
                edit_burst=burst,
            )
            async with engine, running_bot(engine, discord_config, "bench-token"):
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
        per_reply_lag: dict[int, list[float]] = {}
        first_text: list[float] = []
        ops: list[int] = []
        for channel in [*singles, shared]:
            group = "shared channel" if channel is shared else "one-reply channels"
            seen = visible_times(fake, channel.id)
            for word, at in seen.items():
                if word in _sent_at:
                    lag = at - _sent_at[word]
                    lags[group].append(lag)
                    if channel is shared:
                        per_reply_lag.setdefault(int(word[1 : word.index("t")]), []).append(lag)
            if channel is shared:
                # Each reply's first words: from the model writing them to the first message
                # that shows them (issue 10: a new reply is not paced behind the others' edits).
                for j in range(len(targets)):  # Ollama's replies go out in request order
                    word = f"r{j}t0"
                    if word in seen and word in _sent_at:
                        first_text.append(seen[word] - _sent_at[word])
            per_channel = sum(1 + m.edits for m in fake.bot_messages_in(channel.id))
            replies = shared_replies if channel is shared else 1
            ops += [round(per_channel / replies)] * replies
        trace = trace_shared(fake, shared.id, started)
        return {
            "elapsed": elapsed,
            "rate_limited": fake.rate_limited_count,
            "ops": ops,
            "lags": lags,
            "per_reply_lag": per_reply_lag,
            "first_text": first_text,
            "trace": trace,
            "shared_replies": shared_replies,
        }


def report(result: dict[str, Any], tokens: int, rate: float, burst: int) -> str:
    shared = result["shared_replies"]
    lines = [
        f"{4 + shared} replies x {tokens} tokens at {rate:g} tokens/s; limit {LIMIT[0]} per "
        f"{LIMIT[1]:g} s per channel (4 channels x 1 reply, 1 channel x {shared} replies); "
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
    per_reply = result["per_reply_lag"]
    if per_reply:
        shown = ", ".join(f"{percentile(per_reply[j], 0.95):.2f}" for j in sorted(per_reply))
        lines.append(f"visible lag p95 per reply, shared channel: {shown} s")
    trace = result["trace"]
    for reply in sorted({e["reply"] for e in trace if e["reply"] is not None}):
        mine = [e for e in trace if e["reply"] == reply]
        sends = sum(e["kind"] == "send" for e in mine)
        idle = sum(e["new"] <= 1 for e in mine)
        lines.append(
            f"  reply {reply}: {sends} messages, {len(mine) - sends} edits, "
            f"{idle} operations showing at most one new token"
        )
    return "\n".join(lines)


def format_trace(trace: list[dict[str, Any]]) -> str:
    lines = ["shared channel, every operation: time, reply, message, kind, new tokens, stalest"]
    for e in trace:
        final = " final" if e["final"] else ""
        lines.append(
            f"  {e['at']:6.2f} s  r{e['reply']}  m{e['message']}  {e['kind']:4}{final:6}  "
            f"+{e['new']:3}  {e['stale']:.2f} s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--burst", type=int, default=1, help="the pacer's burst (default 1)")
    parser.add_argument(
        "--shared", type=int, default=4, help="replies at once in the shared channel (default 4)"
    )
    parser.add_argument(
        "--trace", action="store_true", help="print every operation in the shared channel"
    )
    args = parser.parse_args()
    # The bot logs each 429 as a warning; the report counts them, so keep the output clean.
    logging.getLogger("adapters").setLevel(logging.ERROR)
    result = asyncio.run(run(args.tokens, args.rate, args.burst, args.shared))
    print(report(result, args.tokens, args.rate, args.burst))
    if args.trace:
        print(format_trace(result["trace"]))


if __name__ == "__main__":
    main()
