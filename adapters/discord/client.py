"""The Discord client: lifecycle, event wiring, command sync, and 429s reported to the pacers."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands

from adapters.discord.commands import Commands, command_hash
from adapters.discord.config import DiscordConfig
from adapters.discord.mending import mend_cut_replies
from adapters.discord.messages import MessageHandler
from adapters.discord.runtime import Runtime
from bot.conversation.engine import Engine
from bot.errors import ConfigError
from bot.reply.pacing import PacerPool, TokenBucketPacer
from bot.reply.streamer import Pacer

logger = logging.getLogger(__name__)

COMMAND_HASH_KEY = "discord:commands:hash"
_CHANNEL_URL = re.compile(r"/channels/(\d+)/")
_WEBHOOK_URL = re.compile(r"/webhooks/\d+/([^/?]+)")


def default_pacers(config: DiscordConfig) -> Callable[[int], Pacer]:
    """One token bucket per channel, shared by every reply there (see ``edits_per_second``)."""
    pool = PacerPool(
        lambda: TokenBucketPacer(
            rate=config.edits_per_second,
            burst=config.edit_burst,
            first_borrow=config.first_message_borrow,
        )
    )
    return lambda channel_id: pool.get(str(channel_id))


class DiscordBot(discord.Client):
    """discord.py's client wired to the engine.

    Args:
        engine: The started engine.
        config: The ``[discord]`` configuration.
        pacer_for: The pacer of a channel id (default: :func:`default_pacers` of ``config``).
    """

    def __init__(
        self,
        engine: Engine,
        config: DiscordConfig,
        *,
        pacer_for: Callable[[int], Pacer] | None = None,
    ) -> None:
        # discord.py reads these class attributes when it builds each request and connection;
        # setting them lets the bot sit behind a proxy (and the tests use a fake Discord).
        discord.http.Route.BASE = config.api_base_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)
        intents = discord.Intents.default()
        intents.message_content = True
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_request_end)
        shards: dict[str, Any] = {}
        if isinstance(self, discord.AutoShardedClient):
            ids = config.shard_ids
            shards = {"shard_count": config.shard_count, "shard_ids": list(ids) if ids else None}
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=config.guild_ready_timeout,
            http_trace=trace,
            **shards,
        )
        self.runtime = Runtime(engine, config, pacer_for or default_pacers(config))
        self.tree: app_commands.CommandTree[DiscordBot] = app_commands.CommandTree(self)
        self.commands = Commands(self.tree, self.runtime)
        self.messages = MessageHandler(self, self.runtime)
        self.ready = asyncio.Event()
        self.synced = False
        self.mending: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: set[asyncio.Task[Any]] = set()

    async def setup_hook(self) -> None:
        await self.sync_commands()

    async def sync_commands(self) -> bool:
        """Sync slash commands if their definitions changed since the last sync; whether it did."""
        config = self.runtime.config
        store = self.runtime.engine.store
        digest = command_hash(self.tree, config.guild_ids)
        if await store.get_state(COMMAND_HASH_KEY) == digest:
            logger.info("slash commands unchanged; not syncing")
            return False
        if config.guild_ids:
            for guild_id in config.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        await store.set_state(COMMAND_HASH_KEY, digest)
        self.synced = True
        logger.info("slash commands synced", extra={"guilds": list(config.guild_ids)})
        return True

    async def on_ready(self) -> None:
        if isinstance(self, discord.AutoShardedClient):
            logger.info(
                "discord shards ready",
                extra={"shard_ids": sorted(self.shards), "shard_count": self.shard_count},
            )
        self.ready.set()
        if self.mending is None:
            # Once per process, in the background: the bot answers while old replies are fixed.
            self.mending = asyncio.ensure_future(self._mend_cut_replies())
            self._tasks.add(self.mending)
            self.mending.add_done_callback(self._done)

    async def _mend_cut_replies(self) -> None:
        """Mark the replies a crash cut (before this start) as interrupted on Discord."""
        rt = self.runtime
        await mend_cut_replies(self, rt.engine, rt.pacer_for, show_footer=rt.config.show_footer)

    async def on_message(self, message: discord.Message) -> None:
        self._spawn(self.messages.handle(message))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Tracked so that close() can end in-flight replies instead of leaking them.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("message handler failed", exc_info=task.exception())

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # Once closing, discord.py has no loop (close() sets Client.loop to MISSING): an event
        # then would build its handler's coroutine and fail to schedule it, and that coroutine
        # would be reported "never awaited" wherever it is collected. A closing bot hears
        # nothing more.
        if self.is_closed():
            return
        super().dispatch(event, *args, **kwargs)

    def _schedule_event(
        self,
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        # discord.py runs each event handler as a task it does not keep. One scheduled while
        # the client closes may never start; when its loop ends, the coroutine is reported
        # "never awaited" wherever it is collected. Kept here, close() can end them.
        task = super()._schedule_event(coro, event_name, *args, **kwargs)
        self._events.add(task)
        task.add_done_callback(self._events.discard)
        return task

    async def close(self) -> None:
        """End replies still being written (the engine marks them interrupted), then disconnect."""
        tasks = [*self._tasks, *self.runtime.in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()
        # Disconnected: no event comes in any more. The handlers still scheduled are ended, so
        # none outlives the client (cancelling a task that never started closes its coroutine).
        current = asyncio.current_task()
        events = [t for t in self._events if t is not current and not t.done()]
        for task in events:
            task.cancel()
        await asyncio.gather(*events, return_exceptions=True)

    async def _on_request_end(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        """Feed the channel's pacer Discord's rate-limit headers and 429s.

        discord.py itself waits out a 429 and retries; the pacer must also know, so that the
        other replies in the channel slow down instead of running into the same wall.
        """
        channel_id = self._channel_of(params.url.path)
        if channel_id is None:
            return
        headers = params.response.headers
        pacer = self.runtime.pacer_for(channel_id)
        if params.response.status == 429:
            retry = float(headers.get("X-RateLimit-Reset-After") or headers.get("Retry-After") or 1)
            logger.warning("discord answered 429", extra={"channel": channel_id, "retry": retry})
            pacer.penalize(retry)
            return
        if isinstance(pacer, TokenBucketPacer) and "X-RateLimit-Remaining" in headers:
            try:
                pacer.update_from_headers(
                    int(headers.get("X-RateLimit-Limit", "0")),
                    int(headers["X-RateLimit-Remaining"]),
                    float(headers.get("X-RateLimit-Reset-After", "0")),
                )
            except ValueError:
                logger.debug("unreadable rate-limit headers", extra={"channel": channel_id})

    def _channel_of(self, path: str) -> int | None:
        """The channel a REST call writes to: from the URL, or the interaction token's channel."""
        if "/messages" not in path and not _WEBHOOK_URL.search(path):
            return None
        if match := _CHANNEL_URL.search(path):
            return int(match.group(1))
        if match := _WEBHOOK_URL.search(path):
            return self.runtime.token_channels.get(match.group(1))
        return None


class ShardedDiscordBot(DiscordBot, discord.AutoShardedClient):
    """The same bot on discord.py's ``AutoShardedClient``: the ``shard_ids`` of ``shard_count``.

    Discord sends each guild's events to one shard only (``(guild_id >> 22) % shard_count``), so
    processes running different shards see different guilds. Anything two processes could both
    act on (an event delivered twice by a misconfiguration) is decided by the store's event claim.
    """


def make_bot(
    engine: Engine, config: DiscordConfig, *, pacer_for: Callable[[int], Pacer] | None = None
) -> DiscordBot:
    """A :class:`ShardedDiscordBot` when ``shard_count`` is set, else a :class:`DiscordBot`."""
    kind = DiscordBot if config.shard_count is None else ShardedDiscordBot
    return kind(engine, config, pacer_for=pacer_for)


@asynccontextmanager
async def running_bot(
    engine: Engine,
    config: DiscordConfig,
    token: str,
    *,
    pacer_for: Callable[[int], Pacer] | None = None,
    ready_timeout: float = 30.0,
) -> AsyncIterator[DiscordBot]:
    """Start the bot, wait until it is connected and ready, and close it on exit."""
    bot = make_bot(engine, config, pacer_for=pacer_for)
    task = asyncio.ensure_future(bot.start(token))
    try:
        ready = asyncio.ensure_future(bot.ready.wait())
        done, _ = await asyncio.wait(
            {task, ready}, timeout=ready_timeout, return_when="FIRST_COMPLETED"
        )
        if task in done:
            ready.cancel()
            task.result()  # raises why it stopped (bad token, unreachable gateway)
        if ready not in done:
            ready.cancel()
            raise TimeoutError(f"Discord did not become ready within {ready_timeout:g} s")
        yield bot
    finally:
        await bot.close()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_discord(engine: Engine, config: DiscordConfig, token: str) -> None:
    """Run the Discord adapter until cancelled, then close the connection cleanly.

    Args:
        engine: A started engine (the caller owns and closes it).
        config: The ``[discord]`` configuration.
        token: The bot token (from ``DISCORD_TOKEN``); never logged.

    Raises:
        ConfigError: Discord refused the token.
    """
    bot = make_bot(engine, config)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as err:
        raise ConfigError(
            "Discord refused the bot token (DISCORD_TOKEN).", key="DISCORD_TOKEN"
        ) from err
