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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.config import BotConfig
from bot.conversation.attachments import compose_prompt
from bot.conversation.chain import ChainStream, chain_request
from bot.conversation.commands import Command, CommandContext, CommandResult
from bot.conversation.cut_replies import Mend, mend_cut_replies
from bot.conversation.history import (
    CHARS_PER_TOKEN,
    message_chars,
    message_tokens,
    prompt_budget,
    trim_to_budget,
)
from bot.conversation.retention import Retention
from bot.conversation.runner import CommandRunner
from bot.conversation.sessions import SessionManager, StoppedWhileQueued, Ticket
from bot.conversation.settings import EffectiveSettings, SettingsResolver
from bot.conversation.stopping import ActiveTurn, ActiveTurns, StopReport
from bot.conversation.tool_rules import load_rules
from bot.conversation.tooling import CallLines, LastCalls, ToolCommands, hub_specs
from bot.errors import Busy, OllabotError, StoreError
from bot.logs import log_interaction
from bot.model.catalogue import ModelCatalogue
from bot.model.generation import Generator, ResponseStream, Timeouts
from bot.model.mcp import McpHub
from bot.model.port import ChatModel, ChatRequest
from bot.model.retry import RetryPolicy
from bot.model.toolbox import ToolBox, ToolSession
from bot.model.tools import builtin_tools
from bot.reply.streamer import ReplyStatus, ReplyStreamer, ReplySurface
from bot.store.port import CutReply, MessageStatus, NewMessage, Store, StoredMessage
from bot.turn import Author, SessionKey, Turn
from bot.types import Message, ModelInfo, Outcome, Response, Role, StreamChunk
from bot.validation import validate_input

logger = logging.getLogger(__name__)

RESTARTING = "The bot is restarting; send your message again in a minute."
"""What a message gets while the bot shuts down (it is not answered)."""

Notify = Callable[[str], Awaitable[None]]

PARTIAL_SAVE_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class ReplyResult:
    """What became of a turn.

    Attributes:
        outcome: How the reply ended; ``None`` when the turn was skipped.
        text: The answer as shown (thinking excluded).
        message_ids: The platform messages that carry it.
        skipped: The event had already been answered (a replay after a restart).
        error: The user-facing error, when there was one.
        prompt_tokens: Tokens of the prompt the model read (``None`` when not reported).
        eval_tokens: Tokens the model generated (``None`` when not reported).
    """

    outcome: Outcome | None
    text: str = ""
    message_ids: tuple[str, ...] = ()
    skipped: bool = False
    error: str | None = None
    prompt_tokens: int | None = None
    eval_tokens: int | None = None


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
                return await self._answer(turn, text, surface, ticket, notify)
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

    async def _answer(
        self,
        turn: Turn,
        text: str,
        surface: ReplySurface,
        ticket: Ticket,
        notify: Notify | None,
    ) -> ReplyResult:
        settings = await self.settings.effective(turn.key, turn.server)
        info = await self.model_info(settings.model)
        window = settings.context_window(info)
        system = _system_message(settings)
        reserve = settings.num_predict or (
            self.config.defaults.chain_num_predict
            if turn.chain
            else self.config.limits.reply_reserve_tokens
        )
        budget = prompt_budget(window, reserve)
        # The newest message always goes to the model: its attachments are cut to the room the
        # window leaves, and a message that cannot fit at all is refused here.
        composed = compose_prompt(
            text,
            turn.attachments,
            info,
            max_chars=self.config.limits.max_attachment_chars,
            room_chars=message_chars(budget - message_tokens(system)),
            context_length=window,
        )
        if notify is not None:
            for note in composed.notes:
                await notify(note)
        prompt, images = composed.text, composed.images
        newest = Message(role=Role.USER, content=prompt, images=images)
        session_id = await self.store.session_id(turn.key)
        history = await self._context(session_id, system, newest, budget)
        await self.store.append(
            session_id,
            NewMessage(Role.USER, prompt, author_id=turn.author.id, author_name=turn.author.name),
        )
        request = ChatRequest(
            model=settings.model,
            messages=history,
            options=settings.request_options(info),
            think=settings.think and info.supports_thinking,
        )
        chain = ChainStream() if turn.chain else None
        if chain is not None:
            request = chain_request(request, num_predict=self.config.defaults.chain_num_predict)
            # Its instructions lengthen the system prompt: the history is trimmed again.
            request = replace(request, messages=trim_to_budget(request.messages, budget))
        reply_id = await self.store.append(
            session_id, NewMessage(Role.ASSISTANT, "", status=MessageStatus.STREAMING)
        )
        streamer = ReplyStreamer(surface, show_thinking=settings.show_thinking)
        await streamer.start()
        # A chain of thought answers in a JSON format of its own: no tools there.
        tools = await self._tool_session(turn, info, streamer) if chain is None else None
        stream = self.generator.stream(
            request, tool_runner=tools or None, max_tool_rounds=self.config.mcp.max_tool_rounds
        )
        try:
            response = await self._run_stream(ticket, stream, streamer, reply_id, chain)
        except OllabotError as err:
            # Failed before any text: this reply's message shows the error (one message, not
            # a second one), and the stored reply says so.
            response = Response(
                model_name=settings.model, outcome=Outcome.ERROR, error=err.user_message
            )
            logger.info(
                "generation failed",
                extra={"session": str(turn.key), "error": type(err).__name__, "detail": err.detail},
            )
        if tools is not None:
            self._last_calls.remember(turn.key, tools.calls)
        # The model is done: let another conversation generate while this reply's last edit
        # waits for the platform's pacing.
        ticket.generation_done()
        status = ReplyStatus(
            response.outcome,
            model=settings.model,
            tokens_per_second=response.tokens_per_second,
            error=response.error,
        )
        reply = await streamer.finish(status)
        try:
            await self._save_reply(reply_id, response, reply.message_ids)
        except StoreError as err:
            # The user has seen the reply; what was saved last stays (a restart marks it cut).
            logger.warning(
                "could not save a finished reply", extra={"reply": reply_id, "detail": err.detail}
            )
        log_interaction(
            logger,
            session=str(turn.key),
            model=settings.model,
            mode=settings.mode.value,
            prompt_tokens=response.prompt_token_count,
            eval_tokens=response.token_count,
            ttft=response.time_to_first_token,
            tokens_per_second=response.tokens_per_second,
            outcome=response.outcome.value,
            queue_wait=ticket.queue_wait,
            prompt=prompt if self.config.logging.log_bodies else None,
            reply=response.content if self.config.logging.log_bodies else None,
        )
        return ReplyResult(
            response.outcome,
            response.content,
            tuple(reply.message_ids),
            error=response.error,
            prompt_tokens=response.prompt_token_count,
            eval_tokens=response.token_count,
        )

    async def _tool_session(
        self, turn: Turn, info: ModelInfo, streamer: ReplyStreamer
    ) -> ToolSession | None:
        """The tools offered for this reply: only to a model that can use tools, only those
        allowed here; each call is shown in the reply as it runs."""
        if not info.supports_tools:
            return None
        rules = await load_rules(
            self.store, turn.key, turn.server, builtins=self.config.defaults.tools
        )
        return self.toolbox.session(
            lambda entry: rules.allows(entry.qualified, entry.server), on_call=CallLines(streamer)
        )

    async def _run_stream(
        self,
        ticket: Ticket,
        stream: ResponseStream,
        streamer: ReplyStreamer,
        reply_id: int,
        chain: ChainStream | None = None,
    ) -> Response:
        """Feed the stream to the streamer, saving partial text; ``stop`` closes the stream.

        With ``chain``, the model's JSON is shown (and saved) as the chain's display text.
        """
        ticket.on_stop(stream.aclose)
        if ticket.stop_requested:
            await stream.aclose()  # stopped while the request was being prepared
        partial: list[str] = []
        last_save = time.monotonic()
        sent = 0
        try:
            async for delta in stream:
                chunk = delta
                if chain is not None:
                    chunk = StreamChunk(content=chain.feed(delta.content), thinking=delta.thinking)
                streamer.push(chunk)
                if chunk.content:
                    partial.append(chunk.content)
                if len(streamer.message_ids) != sent:
                    # A new platform message: saved at once, so that after a crash the
                    # restarted bot can find it and mark the reply as cut.
                    refs = streamer.message_ids
                    sent = len(refs)
                    last_save = time.monotonic()
                    await self.store.update_message(
                        reply_id,
                        content="".join(partial),
                        status=MessageStatus.STREAMING,
                        refs=refs,
                    )
                    continue
                if not chunk.content:
                    continue
                now = time.monotonic()
                if now - last_save > PARTIAL_SAVE_INTERVAL:
                    last_save = now
                    # Kept current so that a crash leaves the text written so far.
                    await self.store.update_message(
                        reply_id, content="".join(partial), status=MessageStatus.STREAMING
                    )
            response = await stream
        except asyncio.CancelledError:
            # The bot is shutting down: the reply ends here, marked interrupted.
            await self._shutdown_reply(stream, streamer, reply_id, "".join(partial))
            raise
        except StoreError as err:
            # Saving the partial text failed. Not a generation failure: stop the model (nobody
            # would read the rest, and its slot must not be handed on while it still runs),
            # keep what was shown, and say that it could not be saved.
            await stream.aclose()
            logger.warning(
                "could not save a reply while it streamed; stopped it",
                extra={"reply": reply_id, "detail": err.detail},
            )
            stopped = await stream
            return stopped.model_copy(
                update={
                    "content": "".join(partial),
                    "outcome": Outcome.ERROR,
                    "error": f"This reply could not be saved ({err.user_message}), so it was "
                    "stopped here.",
                }
            )
        if chain is None:
            return response
        tail = chain.finish()  # what a reply cut off inside a step still had to say
        if tail:
            streamer.push(StreamChunk(content=tail))
        return response.model_copy(update={"content": chain.text})

    async def _shutdown_reply(
        self, stream: ResponseStream, streamer: ReplyStreamer, reply_id: int, text: str
    ) -> None:
        await stream.aclose()
        message = "The bot is restarting; this reply was cut short."
        await self.store.update_message(
            reply_id,
            content=text,
            status=MessageStatus.INTERRUPTED,
            refs=streamer.message_ids,
        )
        await streamer.finish(ReplyStatus(Outcome.INTERRUPTED, error=message))

    async def _save_reply(self, reply_id: int, response: Response, refs: tuple[str, ...]) -> None:
        await self.store.update_message(
            reply_id,
            content=response.content,
            status=MessageStatus.of(response.outcome),
            eval_tokens=response.token_count,
            prompt_tokens=response.prompt_token_count,
            duration=_generation_time(response),
            refs=refs,
        )

    async def _context(
        self, session_id: int, system: Message, newest: Message, budget: int
    ) -> list[Message]:
        """The system prompt, the stored history that fits ``budget`` tokens, then ``newest``."""
        room = budget - message_tokens(system) - message_tokens(newest)
        # Characters bound the read (the per-message overhead only adds to the cost);
        # trim_to_budget then counts tokens as the window will.
        stored = await self.store.context_messages(session_id, max(0, room) * CHARS_PER_TOKEN)
        older = [m for s in stored if (m := _as_message(s)) is not None]
        return trim_to_budget([system, *older, newest], budget)

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


def _system_message(settings: EffectiveSettings) -> Message:
    system = settings.system_prompt
    addendum = settings.mode.profile.addendum
    return Message(role=Role.SYSTEM, content=f"{system}\n\n{addendum}" if addendum else system)


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


def _as_message(stored: StoredMessage) -> Message | None:
    if not stored.content.strip() or stored.role not in (Role.USER, Role.ASSISTANT):
        return None
    return Message(role=stored.role, content=stored.content)


def _generation_time(response: Response) -> float | None:
    # Stored only beside Ollama's own counters: a speed from a count the bot made up (a stopped
    # reply's streamed chunks) would skew the channel's mean.
    if response.total_duration is None or response.token_count_estimated:
        return None
    return max(0.0, response.total_duration - (response.time_to_first_token or 0.0))
