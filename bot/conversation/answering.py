"""Answering one turn once it is its turn: the request, the stream, the saved reply.

:class:`Answerer` is what the engine does for a turn between its place in the queue and its
result: it reads the settings in force and the model's window, composes the newest message (its
attachments cut to the room the window leaves), loads the history that fits, streams the model's
reply through a :class:`bot.reply.streamer.ReplyStreamer` (tools where allowed, a chain of thought
when asked), saves the partial text as it grows and the reply when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from bot.config import BotConfig
from bot.conversation.attachments import compose_prompt
from bot.conversation.chain import ChainStream, chain_request
from bot.conversation.history import (
    CHARS_PER_TOKEN,
    message_chars,
    message_tokens,
    prompt_budget,
    trim_to_budget,
)
from bot.conversation.sessions import Ticket
from bot.conversation.settings import EffectiveSettings, SettingsResolver
from bot.conversation.tool_rules import load_rules
from bot.conversation.tooling import CallLines, LastCalls
from bot.errors import OllabotError, StoreError
from bot.logs import log_interaction
from bot.model.catalogue import ModelCatalogue
from bot.model.generation import Generator, ResponseStream
from bot.model.port import ChatRequest
from bot.model.toolbox import ToolBox, ToolSession
from bot.reply.streamer import ReplyStatus, ReplyStreamer, ReplySurface
from bot.store.port import MessageStatus, NewMessage, Store, StoredMessage
from bot.turn import Turn
from bot.types import Message, ModelInfo, Outcome, Response, Role, StreamChunk

__all__ = ["Answerer", "Notify", "ReplyResult"]

logger = logging.getLogger("bot.conversation.engine")

Notify = Callable[[str], Awaitable[None]]
"""Shows a notice about a turn (a queue place, a cut attachment) to its author."""

PARTIAL_SAVE_INTERVAL = 2.0
"""Seconds between saves of a streaming reply's text (a crash keeps what was saved)."""


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


class Answerer:
    """Answers turns for one engine. See the module docstring.

    Args:
        config: The bot configuration.
        store: History and replies.
        settings: The settings in force for a session.
        catalogue: Model metadata (the window, capabilities).
        generator: Streams replies from the model.
        toolbox: The tools a reply may be offered.
        last_calls: Where each conversation's last tool calls are kept for ``tools calls``.
    """

    def __init__(
        self,
        *,
        config: BotConfig,
        store: Store,
        settings: SettingsResolver,
        catalogue: ModelCatalogue,
        generator: Generator,
        toolbox: ToolBox,
        last_calls: LastCalls,
    ) -> None:
        self._config = config
        self._store = store
        self._settings = settings
        self._catalogue = catalogue
        self._generator = generator
        self._toolbox = toolbox
        self._last_calls = last_calls

    async def answer(
        self,
        turn: Turn,
        text: str,
        surface: ReplySurface,
        ticket: Ticket,
        notify: Notify | None,
    ) -> ReplyResult:
        """Answer ``turn`` (its validated ``text``) on ``surface`` now that ``ticket`` is its turn.

        Raises:
            OllabotError: before the model was asked (the model is missing, the message does not
                fit its window, the database failed); the caller shows it.
        """
        settings = await self._settings.effective(turn.key, turn.server)
        info = await self._catalogue.info(settings.model)
        window = settings.context_window(info)
        system = _system_message(settings)
        reserve = settings.num_predict or (
            self._config.defaults.chain_num_predict
            if turn.chain
            else self._config.limits.reply_reserve_tokens
        )
        budget = prompt_budget(window, reserve)
        # The newest message always goes to the model: its attachments are cut to the room the
        # window leaves, and a message that cannot fit at all is refused here.
        composed = compose_prompt(
            text,
            turn.attachments,
            info,
            max_chars=self._config.limits.max_attachment_chars,
            room_chars=message_chars(budget - message_tokens(system)),
            context_length=window,
        )
        if notify is not None:
            for note in composed.notes:
                await notify(note)
        prompt, images = composed.text, composed.images
        newest = Message(role=Role.USER, content=prompt, images=images)
        session_id = await self._store.session_id(turn.key)
        history = await self._context(session_id, system, newest, budget)
        await self._store.append(
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
            request = chain_request(request, num_predict=self._config.defaults.chain_num_predict)
            # Its instructions lengthen the system prompt: the history is trimmed again.
            request = replace(request, messages=trim_to_budget(request.messages, budget))
        reply_id = await self._store.append(
            session_id, NewMessage(Role.ASSISTANT, "", status=MessageStatus.STREAMING)
        )
        streamer = ReplyStreamer(surface, show_thinking=settings.show_thinking)
        await streamer.start()
        # A chain of thought answers in a JSON format of its own: no tools there.
        tools = await self._tool_session(turn, info, streamer) if chain is None else None
        stream = self._generator.stream(
            request, tool_runner=tools or None, max_tool_rounds=self._config.mcp.max_tool_rounds
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
            prompt=prompt if self._config.logging.log_bodies else None,
            reply=response.content if self._config.logging.log_bodies else None,
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
            self._store, turn.key, turn.server, builtins=self._config.defaults.tools
        )
        return self._toolbox.session(
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
                    await self._store.update_message(
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
                    await self._store.update_message(
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
        await self._store.update_message(
            reply_id,
            content=text,
            status=MessageStatus.INTERRUPTED,
            refs=streamer.message_ids,
        )
        await streamer.finish(ReplyStatus(Outcome.INTERRUPTED, error=message))

    async def _save_reply(self, reply_id: int, response: Response, refs: tuple[str, ...]) -> None:
        await self._store.update_message(
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
        stored = await self._store.context_messages(session_id, max(0, room) * CHARS_PER_TOKEN)
        older = [m for s in stored if (m := _as_message(s)) is not None]
        return trim_to_budget([system, *older, newest], budget)


def _system_message(settings: EffectiveSettings) -> Message:
    system = settings.system_prompt
    addendum = settings.mode.profile.addendum
    return Message(role=Role.SYSTEM, content=f"{system}\n\n{addendum}" if addendum else system)


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
