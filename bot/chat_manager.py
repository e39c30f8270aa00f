"""``ChatManager``: one conversation with one Ollama model, for scripts and the terminal.

It is the library face of the engine: it validates input, keeps the history (trimmed to the
model's context), applies a chat mode, offers tools to models that can use them, and runs
chain-of-thought prompts. Streaming, retries, timeouts, tool rounds and caching are the job of
:class:`bot.model.generation.Generator`; talking to Ollama is that of
:class:`bot.model.ollama.OllamaChatModel`.

Example::

    async with ChatManager(ModelConfig(name="llama3.2"), system_prompt="Be brief.") as chat:
        async for chunk in chat.send_message("Hello!"):
            print(chunk.content, end="")
        reply = await chat.get_response_with_meta("And in French?")
        print(reply.content, reply.tokens_per_second)

The model is learnt (``/api/show``: context length, tools, thinking, vision) on first use, or
earlier by calling :meth:`ChatManager.initialize_model`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from bot.conversation.history import (
    context_window,
    message_tokens,
    prompt_budget,
    trim_to_budget,
)
from bot.errors import ChatError, InputRejected
from bot.model.cache import ResponseCache
from bot.model.generation import Generator, ResponseStream, Timeouts
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatModel, ChatRequest
from bot.model.retry import RetryPolicy
from bot.model.tools import Tool, ToolRegistry, builtin_tools
from bot.pending_reply import PendingReply
from bot.prompts import ChainOfThoughtPrompt, ChainResult, parse_chain
from bot.types import (
    DEFAULT_CONTEXT_LENGTH,
    ChatMode,
    Message,
    ModelConfig,
    ModelInfo,
    Outcome,
    Response,
    Role,
)
from bot.validation import DEFAULT_MAX_CHARS, validate_input, validate_system_prompt

__all__ = ["DEFAULT_CHAIN_NUM_PREDICT", "DEFAULT_CONTEXT_CAP", "ChatManager"]

log = logging.getLogger(__name__)

# Without a configured context length the manager asks Ollama for at most this many tokens of
# context (the engine's rule: see bot.conversation.history.context_window).
DEFAULT_CONTEXT_CAP = DEFAULT_CONTEXT_LENGTH
# Room kept for the reply when no num_predict is configured (the engine's default reserve).
_REPLY_RESERVE = 1024
# A chain of thought with no num_predict configured stops after this many tokens: a small model
# that never closes its JSON would otherwise run until the context is full.
DEFAULT_CHAIN_NUM_PREDICT = 1024


class ChatManager:
    """One conversation with one Ollama model. Use it as an async context manager.

    It owns its backend (one HTTP client) and closes it on exit, unless the backend was passed in
    as ``model`` (then the caller closes it).

    The model is learnt from Ollama on first use (the first message, chain or explicit
    :meth:`initialize_model` call) and cached; tools enabled before that are checked then.

    Args:
        config: Model name and sampling overrides (default ``ModelConfig()``).
        host: Ollama's URL (default: the ``ollama`` library's, ``OLLAMA_HOST`` or localhost).
        system_prompt: Who the bot is; always kept when the history is trimmed.
        mode: Sampling options and a system-prompt addendum (see :class:`bot.types.ChatMode`).
        timeouts: Time limits per reply (``Timeouts.connect`` is also the connect timeout).
        retry: Retries before the first token (default ``RetryPolicy()``).
        cache: Replies to repeat deterministic requests from (temperature 0 or a fixed seed).
        max_input_chars: The longest message accepted.
        model: A ready backend to use instead of building an ``OllamaChatModel``.
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        host: str | None = None,
        system_prompt: str | None = None,
        mode: ChatMode = ChatMode.BALANCED,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        cache: ResponseCache | None = None,
        max_input_chars: int = DEFAULT_MAX_CHARS,
        model: ChatModel | None = None,
    ) -> None:
        self.config = config or ModelConfig()
        timeouts = timeouts or Timeouts()
        self._owns_model = model is None
        self._model: ChatModel = (
            model if model is not None else OllamaChatModel(host, connect_timeout=timeouts.connect)
        )
        self._generator = Generator(
            self._model, timeouts=timeouts, retry=retry or RetryPolicy(), cache=cache
        )
        self.cache = cache
        self.max_input_chars = max_input_chars
        self._mode = mode
        self._system_prompt: str | None = None
        self.system_prompt = system_prompt
        self._info: ModelInfo | None = None
        self._tools: ToolRegistry | None = None
        self._tools_unchecked = False
        self._init_lock = asyncio.Lock()
        self._history: list[Message] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ChatManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the backend's HTTP client (if this manager built it). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_model:
            await self._model.close()

    # -- the model ---------------------------------------------------------------------------

    async def initialize_model(self, name: str | None = None) -> ModelInfo:
        """Switch to model ``name`` (default: the configured one) and learn what it can do.

        Asks Ollama for the model's context length and capabilities (tools, thinking, vision).

        Args:
            name: An installed model, e.g. ``"llama3.2"`` or ``"qwen3:8b"``.

        Returns:
            What Ollama reports about the model.

        Raises:
            ModelNotFoundError: The model is not installed; ``available_models`` lists what is.
            OllamaUnavailableError: Ollama cannot be reached.
            ChatError: Tools were enabled before the model was known, and it does not support
                them (they are then disabled).
        """
        name = name or self.config.name
        info = await self._model.show(name)
        self.config = self.config.model_copy(update={"name": name})
        self._info = info
        if self._tools_unchecked:
            self._tools_unchecked = False
            if not info.supports_tools:
                self._tools = None
                raise _no_tools(name, info)
        log.info(
            "model ready",
            extra={
                "model": name,
                "context_length": info.context_length,
                "capabilities": sorted(info.capabilities),
            },
        )
        return info

    async def _ready(self) -> ModelInfo:
        """The model's information, learnt from Ollama on first use and kept."""
        if self._info is not None:
            return self._info
        async with self._init_lock:
            if self._info is None:
                return await self.initialize_model()
            return self._info

    @property
    def model_info(self) -> ModelInfo | None:
        """What Ollama reported about the model (``None`` until it was first used)."""
        return self._info

    async def available_models(self) -> list[str]:
        """The names of the models installed in Ollama."""
        return [m.name for m in await self._model.list_models()]

    @property
    def context_length(self) -> int:
        """The context window (``num_ctx``) every request uses, by the engine's rule.

        The configured ``context_length`` (else 8192), capped at the model's maximum once the
        model is known (see :func:`bot.conversation.history.context_window`).
        """
        model_max = self._info.context_length if self._info is not None else None
        return context_window(model_max, self.config.context_length)

    @property
    def history_budget(self) -> int:
        """Tokens the prompt may use: the context minus room for the reply."""
        return prompt_budget(self.context_length, self.config.num_predict or _REPLY_RESERVE)

    # -- mode, system prompt, tools ----------------------------------------------------------

    @property
    def mode(self) -> ChatMode:
        """The current chat mode."""
        return self._mode

    def set_mode(self, mode: ChatMode) -> None:
        """Answer in ``mode`` from the next message on (sampling options and prompt addendum)."""
        self._mode = ChatMode(mode)

    @property
    def system_prompt(self) -> str | None:
        """The system prompt (without the mode's addendum)."""
        return self._system_prompt

    @system_prompt.setter
    def system_prompt(self, value: str | None) -> None:
        self._system_prompt = validate_system_prompt(value, max_chars=self.max_input_chars)

    def enable_function_calling(self, tools: Sequence[Tool[Any]] | None = None) -> None:
        """Offer tools to the model from the next message on.

        Args:
            tools: The tools; ``None`` offers the built-ins (``current_time``, ``calculate``).

        Before the model is known the choice is recorded, and checked when the model is first
        used: a model without tools then raises :class:`ChatError` there.

        Raises:
            ChatError: The model is known and does not support tools.
        """
        if self._info is not None and not self._info.supports_tools:
            raise _no_tools(self.config.name, self._info)
        self._tools = ToolRegistry(builtin_tools() if tools is None else tools)
        self._tools_unchecked = self._info is None

    def disable_function_calling(self) -> None:
        """Stop offering tools."""
        self._tools = None
        self._tools_unchecked = False

    @property
    def tools(self) -> ToolRegistry | None:
        """The tools offered to the model, or ``None``."""
        return self._tools

    # -- history -----------------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        """The conversation so far (a copy), oldest first; the system prompt is not part of it."""
        return list(self._history)

    def clear_history(self) -> None:
        """Forget the conversation (the system prompt, mode and tools stay)."""
        self._history.clear()

    def _system_message(self, base: str | None = None) -> Message | None:
        parts = [p for p in (base or self._system_prompt, self._mode.profile.addendum) if p]
        return Message(role=Role.SYSTEM, content="\n\n".join(parts)) if parts else None

    def _request(
        self, messages: list[Message], *, format: dict[str, Any] | None = None
    ) -> ChatRequest:
        options = self.config.options(self._mode)
        options["num_ctx"] = self.context_length  # capped at the model's maximum
        info = self._info
        think = bool(self.config.think and info is not None and info.supports_thinking)
        return ChatRequest(
            model=self.config.name,
            messages=tuple(messages),
            options=options,
            think=think,
            format=format,
            keep_alive=self.config.keep_alive,
        )

    def _tool_runner(self) -> ToolRegistry | None:
        if self._tools is None or self._info is None or not self._info.supports_tools:
            return None
        return self._tools

    # -- talking -----------------------------------------------------------------------------

    def send_message(
        self, text: str, *, images: Sequence[bytes] = ()
    ) -> ResponseStream | PendingReply:
        """Ask the model; returns the reply as a stream.

        Iterate the stream for :class:`bot.types.StreamChunk` s (thinking arrives in
        ``chunk.thinking``), ``await`` it for the whole :class:`bot.types.Response`, or both.
        Use ``async with`` (or ``aclose()``) to stop early: the partial text is kept.

        When the reply ends with any text (complete, stopped, or interrupted by a lost
        connection), the message and the reply are added to the history; thinking never is. A
        reply that fails before any text raises and leaves the history unchanged.

        Args:
            text: The user's message.
            images: Pictures for a vision model (raw PNG/JPEG bytes).

        Returns:
            The reply stream (nothing is sent until it is iterated or awaited). Before the
            model is known, a :class:`bot.pending_reply.PendingReply` that learns it first.

        Raises:
            InputRejected: At once, if the message is empty or too long; nothing is sent.
            ChatError: Images were given but the model does not support vision (at once when
                the model is known, else where the reply is first used).
        """
        cleaned = validate_input(text, max_chars=self.max_input_chars)
        if self._info is None:

            async def start() -> ResponseStream:
                await self._ready()
                return self._stream(cleaned, images)

            return PendingReply(start, model=self.config.name)
        return self._stream(cleaned, images)

    def _stream(self, cleaned: str, images: Sequence[bytes]) -> ResponseStream:
        if images and (self._info is None or not self._info.supports_vision):
            raise ChatError(
                f"Model '{self.config.name}' cannot see images (send them to a vision model).",
                {"model": self.config.name},
            )
        user = Message(role=Role.USER, content=cleaned, images=tuple(images))
        system = self._system_message()
        budget = self.history_budget
        needed = message_tokens(user) + (message_tokens(system) if system else 0)
        if needed > budget:
            # Ollama would cut the message itself; the model would answer a fragment.
            raise InputRejected(
                f"This message and the system prompt are about {needed:,} tokens, but the "
                f"{self.context_length:,}-token context window has room for {budget:,} "
                "(the rest is kept for the reply). Send a shorter message or configure a "
                "larger context_length."
            )
        messages = ([system] if system else []) + [*self._history, user]
        messages = trim_to_budget(messages, budget)

        def remember(response: Response) -> None:
            self._history.append(user)
            if response.content.strip():
                self._history.append(
                    Message(
                        role=Role.ASSISTANT,
                        content=response.content,
                        metadata={"outcome": response.outcome.value},
                    )
                )

        # The hook runs inside the generator when the reply ends: nothing wraps the per-token path.
        return self._generator.stream(
            self._request(messages), tool_runner=self._tool_runner(), on_end=remember
        )

    async def get_response_with_meta(self, text: str) -> Response:
        """Ask the model and wait for the whole reply, with its timings and token counts.

        Raises:
            InputRejected: The message is empty or too long.
            OllamaError: The model failed before answering (not installed, unreachable, timeout).
        """
        return await self.send_message(text)

    async def execute_chain(self, prompt: ChainOfThoughtPrompt) -> ChainResult:
        """Solve ``prompt`` step by step; the exchange is not added to the history.

        The model is asked for JSON matching ``prompt.schema()`` (Ollama's structured output);
        replies that ignore it, or that were cut off inside it, are still read by
        :func:`bot.prompts.parse_chain`. The reply is bounded by ``config.num_predict``, or by
        :data:`DEFAULT_CHAIN_NUM_PREDICT` tokens when that is not set.

        Raises:
            InputRejected: The task is empty or too long.
            ChatError: The model stopped before giving any answer.
            OllamaError: The model failed before answering.
        """
        task = validate_input(prompt.task, max_chars=self.max_input_chars)
        prompt = ChainOfThoughtPrompt(task=task, steps=prompt.steps)
        await self._ready()
        messages = prompt.messages(system_prompt=self._system_prompt)
        request = self._request(messages, format=prompt.schema())
        request.options.setdefault("num_predict", DEFAULT_CHAIN_NUM_PREDICT)
        response = await self._generator.stream(request)
        if not response.content.strip():
            raise ChatError(
                "The model gave no answer to the step-by-step task.",
                {"model": self.config.name, "outcome": response.outcome.value},
            )
        if response.outcome is not Outcome.COMPLETE:
            log.warning("chain-of-thought reply incomplete: %s", response.error)
        return parse_chain(response.content)


def _no_tools(name: str, info: ModelInfo) -> ChatError:
    capabilities = ", ".join(sorted(info.capabilities)) or "none"
    return ChatError(
        f"Model '{name}' does not support tools (its capabilities: {capabilities}).",
        {"model": name},
    )
