"""The conversation engine: what happens between an adapter's event and the model's reply.

An adapter hands :meth:`Engine.handle_turn` a platform-free :class:`bot.turn.Turn` and a
:class:`bot.reply.streamer.ReplySurface`; the engine validates the input, waits its turn, loads the
conversation's settings and history, streams from the model through a
:class:`bot.reply.streamer.ReplyStreamer`, and stores the exchange. Commands go through
:meth:`Engine.execute`. Neither raises :class:`bot.errors.OllabotError` to the adapter: the user
always sees an outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bot.config import BotConfig
from bot.conversation.answering import Answerer, Notify, ReplyResult
from bot.conversation.commands import Command, CommandContext
from bot.conversation.cut_replies import Mend, mend_cut_replies
from bot.conversation.results import CommandResult
from bot.conversation.retention import Retention
from bot.conversation.runner import CommandRunner
from bot.conversation.sessions import SessionManager, StoppedWhileQueued
from bot.conversation.settings import SettingsResolver
from bot.conversation.stopping import ActiveTurn, ActiveTurns, StopReport
from bot.conversation.tooling import LastCalls, ToolCommands, hub_specs
from bot.errors import Busy, OllabotError, StoreError
from bot.model.catalogue import ModelCatalogue
from bot.model.generation import Generator, Timeouts
from bot.model.mcp import McpHub
from bot.model.port import ChatModel
from bot.model.retry import RetryPolicy
from bot.model.toolbox import ToolBox
from bot.model.tools import builtin_tools
from bot.reply.streamer import ReplyStatus, ReplyStreamer, ReplySurface
from bot.store.port import CutReply, Store
from bot.turn import Author, SessionKey, Turn
from bot.types import ModelInfo, Outcome
from bot.validation import validate_input

__all__ = ["RESTARTING", "Engine", "Notify", "ReplyResult"]

logger = logging.getLogger(__name__)

RESTARTING = "The bot is restarting; send your message again in a minute."
"""What a message gets while the bot shuts down (it is not answered)."""


class Engine:
    """Runs conversations and commands for every adapter in the process.

    Args:
        model: The chat model backend (``OllamaChatModel`` in production).
        store: The persistent store; the engine opens and closes it.
        config: The bot configuration; defaults when ``None``.
    """

    def __init__(self, model: ChatModel, store: Store, config: BotConfig | None = None) -> None:
        self.config = config or BotConfig()
        self.model = model
        self.store = store
        ollama = self.config.ollama
        self.generator = Generator(
            model,
            timeouts=Timeouts(
                connect=ollama.connect_timeout,
                first_token=ollama.first_token_timeout,
                between_tokens=ollama.between_tokens_timeout,
                total=ollama.total_timeout,
            ),
            retry=RetryPolicy(
                attempts=ollama.retry_attempts,
                initial=ollama.retry_initial_backoff,
                maximum=ollama.retry_max_backoff,
            ),
        )
        limits = self.config.limits
        self.sessions = SessionManager(
            max_concurrent=limits.max_concurrent_generations,
            user_messages_per_minute=limits.user_messages_per_minute,
            user_commands_per_minute=limits.user_commands_per_minute,
            max_queue_per_session=limits.max_queue_per_session,
            max_waiting=limits.max_waiting_turns,
            notice_delay=limits.queue_notice_delay,
        )
        self.settings = SettingsResolver(store, self.config.defaults)
        mcp = self.config.mcp
        specs = hub_specs(self.config)
        self.mcp = McpHub(specs) if specs else None
        self.toolbox = ToolBox(
            builtin_tools(),
            self.mcp,
            max_result_chars=mcp.max_result_chars,
            max_total_seconds=mcp.total_tool_seconds,
        )
        self._last_calls = LastCalls()
        self.catalogue = ModelCatalogue(model)
        self._inflight: set[asyncio.Task[Any]] = set()
        self.turns = ActiveTurns()
        self._commands = CommandRunner(
            turns=self.turns,
            settings=self.settings,
            store=store,
            sessions=self.sessions,
            model=model,
            catalogue=self.catalogue,
            tools=ToolCommands(
                store,
                self.toolbox,
                builtins_default=self.config.defaults.tools,
                last_calls=self._last_calls,
            ),
        )
        self._answerer = Answerer(
            config=self.config,
            store=store,
            settings=self.settings,
            catalogue=self.catalogue,
            generator=self.generator,
            toolbox=self.toolbox,
            last_calls=self._last_calls,
        )
        self._cut_replies: list[CutReply] = []
        self.retention = Retention(store, days=self.config.storage.retention_days)
        self._closed = False
        self._shutdown_deadline: float | None = None  # set by begin_shutdown()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, mark replies a crash left half-written as interrupted, and start the
        MCP servers (in the background: a slow server does not hold up the start).

        The cut replies are kept until their adapter mends them (:meth:`mend_cut_replies`).
        """
        await self.store.open()
        if self.mcp is not None:
            await self.mcp.start()
        cut = await self.store.mark_interrupted()
        if cut:
            self._cut_replies.extend(cut)
            logger.warning(
                "marked replies cut by a crash as interrupted", extra={"count": len(cut)}
            )
        await self.retention.start()

    async def mend_cut_replies(
        self,
        platform: str,
        mend: Mend,
        *,
        max_chars: int,
        render_status: Callable[[ReplyStatus], str],
    ) -> int:
        """Let an adapter mark on the platform each of its replies a crash cut.

        For each reply of ``platform`` that :meth:`start` marked interrupted and that has
        platform messages, ``mend`` is called with the text its last message should show: its
        part of the saved text and the footer ``render_status`` gives for an interrupted reply
        (see :func:`bot.conversation.cut_replies.last_message_text`). A failure
        (:class:`OllabotError`) is logged and the others are still mended. The platform's cut
        replies are forgotten afterwards, so a second call (a reconnect) does nothing.

        Args:
            platform: The adapter's platform ("discord", "matrix").
            mend: Edits ``cut.refs[-1]`` to show the text.
            max_chars: The platform's longest message.
            render_status: The adapter's footer for a reply status (a surface's
                ``render_status``).

        Returns:
            How many replies were mended.
        """
        mine = [cut for cut in self._cut_replies if cut.key.platform == platform]
        self._cut_replies = [cut for cut in self._cut_replies if cut.key.platform != platform]
        return await mend_cut_replies(
            platform, mine, mend, max_chars=max_chars, render_status=render_status
        )

    def begin_shutdown(self, grace: float = 10.0) -> None:
        """Take no new turns: a new message (or one still queued) is told the bot is restarting.

        The replies being written go on; :meth:`drain` waits for them, and :meth:`close`
        waits no longer than ``grace`` seconds from now in all.
        """
        if self._shutdown_deadline is None:
            self._shutdown_deadline = time.monotonic() + grace

    def end_grace(self) -> None:
        """Wait no more for the replies being written (a second signal): close cuts them now."""
        self._shutdown_deadline = time.monotonic()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_deadline is not None

    @property
    def replies_in_progress(self) -> int:
        """Turns being answered or waiting to be."""
        return sum(1 for t in self._inflight if not t.done())

    def _grace_left(self, grace: float) -> float:
        if self._shutdown_deadline is None:
            return grace
        return max(0.0, self._shutdown_deadline - time.monotonic())

    async def drain(self) -> None:
        """Wait, until the shutdown's grace ends, for the replies being written to finish."""
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=self._grace_left(0.0))

    async def close(self, *, grace: float = 10.0) -> None:
        """Let in-flight replies finish for ``grace`` seconds, mark the rest, close everything.

        After :meth:`begin_shutdown`, what is left of its grace period applies instead.
        """
        if self._closed:
            return
        self._closed = True
        pending = {t for t in self._inflight if not t.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=self._grace_left(grace))
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        await self.retention.close()
        try:
            if self.mcp is not None:
                await self.mcp.close()
        finally:
            try:
                await self.model.close()
            finally:
                await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- model information --------------------------------------------------------------------

    async def model_info(self, name: str) -> ModelInfo:
        """What Ollama says about ``name`` (cached for a few minutes; see :class:`ModelCatalogue`).

        Raises:
            ModelNotFoundError: listing the installed models.
            OllamaUnavailableError: when Ollama cannot be reached.
        """
        return await self.catalogue.info(name)

    async def model_names(self) -> list[str]:
        """Installed model names, for autocompletion; empty when Ollama is down."""
        return await self.catalogue.names()

    def tool_names(self) -> list[str]:
        """What ``tools allow|deny`` can name, for autocompletion: every tool available now
        and ``server.*`` for each configured MCP server."""
        names = [entry.qualified for entry in self.toolbox.entries()]
        return names + [f"{server}.*" for server in self.toolbox.servers]

    async def supports_vision(self, key: SessionKey, server: str | None) -> bool:
        settings = await self.settings.effective(key, server)
        try:
            return (await self.model_info(settings.model)).supports_vision
        except OllabotError:
            return False

    # --- conversations ------------------------------------------------------------------------

    async def handle_turn(
        self, turn: Turn, surface: ReplySurface, *, notify: Notify | None = None
    ) -> ReplyResult:
        """Answer one turn on ``surface``. Never raises :class:`OllabotError`."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await self._handle_turn(turn, surface, notify)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle_turn(
        self, turn: Turn, surface: ReplySurface, notify: Notify | None
    ) -> ReplyResult:
        with self.turns.track(turn.key, turn.author.id) as active:
            return await self._handle_tracked(turn, surface, notify, active)

    async def _handle_tracked(
        self, turn: Turn, surface: ReplySurface, notify: Notify | None, active: ActiveTurn
    ) -> ReplyResult:
        streamer = ReplyStreamer(surface)
        claimed = answering = False
        notify = _best_effort(notify, turn.key)

        async def stop_running() -> None:
            await self.sessions.stop(turn.key)

        try:
            if self.shutting_down:
                raise Busy(RESTARTING, retry_after=60.0)
            if turn.event_id and not await self.store.claim_event(turn.key.platform, turn.event_id):
                logger.info("event already answered", extra={"event_id": turn.event_id})
                return ReplyResult(outcome=None, skipped=True)
            claimed = turn.event_id is not None
            text = validate_input(turn.text, max_chars=self.config.limits.max_input_chars)
            await self.sessions.check_rate(turn.author.id)
            async with self.sessions.turn(turn.key, notify, stop=active.stop_requested) as ticket:
                if self.shutting_down:
                    raise Busy(RESTARTING, retry_after=60.0)  # queued when the shutdown began
                answering = True
                await active.on_stop(stop_running)
                return await self._answerer.answer(turn, text, surface, ticket, notify)
        except StoppedWhileQueued:
            # Stopped before its turn came: the model never saw it; the user sees it stopped.
            reply = await streamer.finish(ReplyStatus(Outcome.STOPPED))
            return ReplyResult(Outcome.STOPPED, reply.text, tuple(reply.message_ids))
        except asyncio.CancelledError:
            if claimed and not answering and turn.event_id is not None:
                # Cancelled while it waited its turn (a shutdown): nothing was answered, so a
                # redelivery of the event after the restart must be answered, not skipped.
                await self.store.release_event(turn.key.platform, turn.event_id)
            raise
        except OllabotError as err:
            # A refusal (bad input, rate limit) is routine; a database failure needs the operator.
            logger.log(
                logging.WARNING if isinstance(err, StoreError) else logging.INFO,
                "turn refused or failed",
                extra={"session": str(turn.key), "error": type(err).__name__, "detail": err.detail},
            )
            reply = await streamer.finish(ReplyStatus(Outcome.ERROR, error=err.user_message))
            return ReplyResult(
                Outcome.ERROR, reply.text, tuple(reply.message_ids), error=err.user_message
            )

    async def stop(self, key: SessionKey) -> bool:
        """Stop every reply of ``key``, running or queued, whoever asked (the terminal's owner).

        A running reply keeps its partial text, marked stopped.
        """
        return await self.turns.stop_all(key) > 0

    async def stop_replies(self, place: SessionKey, by: Author) -> StopReport:
        """Stop the replies at ``place`` that ``by`` may stop: theirs, or all for a moderator."""
        return await self.turns.stop(place, by)

    # --- commands -----------------------------------------------------------------------------

    async def execute(self, ctx: CommandContext, command: Command) -> CommandResult:
        """Run a command. Never raises :class:`OllabotError`: failures come back as results."""
        return await self._commands.run(ctx, command)


def _best_effort(notify: Notify | None, key: SessionKey) -> Notify | None:
    """``notify`` for notices that must not end a turn when they cannot be shown.

    A queue notice or an attachment note is information about the reply, not the reply: when
    the platform refuses it (adapters raise :class:`OllabotError` for that), the turn goes on
    and the reply still comes.
    """
    if notify is None:
        return None

    async def safe(text: str) -> None:
        try:
            await notify(text)
        except OllabotError as err:
            logger.warning(
                "could not show a notice; the reply goes on",
                extra={"session": str(key), "error": type(err).__name__, "detail": err.detail},
            )

    return safe
