"""The port to a chat model. ``OllamaChatModel`` implements it; tests and benches may fake it.

The engine talks to "a chat model" only through this protocol, so a second backend drops in.
Implementations translate their library's errors into :mod:`bot.errors` where they enter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.types import Message, ModelInfo, PullProgress, Response, ToolCall


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything one ``/api/chat`` call needs.

    Attributes:
        model: The model name.
        messages: The whole conversation to send, system prompt first.
        options: Ollama sampling options (temperature, top_p, seed, num_ctx, num_predict).
        tools: Tool definitions in Ollama's JSON-schema form.
        think: Ask a thinking-capable model to think (streamed separately).
        format: A JSON schema for structured output, or ``None``.
        keep_alive: How long Ollama keeps the model loaded.
    """

    model: str
    messages: Sequence[Message]
    options: dict[str, Any] = field(default_factory=dict)
    tools: Sequence[dict[str, Any]] = ()
    think: bool = False
    format: dict[str, Any] | None = None
    keep_alive: str | None = None


@dataclass(slots=True)
class ChatDelta:
    """One streamed line of a chat reply, as the backend sees it.

    The last delta has ``done=True`` and carries the counters (durations in seconds). One is
    built per token, so it is a plain slotted dataclass: a frozen one costs about 1 us more to
    construct (``object.__setattr__`` per field). Treat it as read-only all the same.
    """

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    done: bool = False
    done_reason: str | None = None
    eval_count: int | None = None
    prompt_eval_count: int | None = None
    total_duration: float | None = None
    eval_duration: float | None = None


class ChatModel(Protocol):
    """A chat model backend (Ollama, or a fake in tests).

    ``chat`` returns an async iterator of deltas. Closing it (``aclose``) must stop the
    generation on the server side (close the HTTP stream).
    """

    @property
    def host(self) -> str: ...

    def chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]: ...

    async def show(self, model: str) -> ModelInfo: ...

    async def list_models(self) -> list[ModelInfo]: ...

    def pull(self, model: str) -> AsyncIterator[PullProgress]: ...

    async def version(self) -> str: ...

    async def close(self) -> None: ...


class ResponseCacheLike(Protocol):
    """A cache of whole replies (``bot.model.cache.ResponseCache`` implements it).

    ``get`` returns ``None`` for requests it does not cache (e.g. sampled ones).
    """

    def get(self, request: ChatRequest) -> Response | None: ...

    def put(self, request: ChatRequest, response: Response) -> None: ...


class ToolRunnerLike(Protocol):
    """Runs the model's tool calls (``bot.model.tools.ToolRegistry`` implements it).

    ``run`` never raises (except ``CancelledError``): a failure comes back as text for the model.
    """

    def schemas(self) -> list[dict[str, Any]]: ...

    async def run(self, call: ToolCall) -> str: ...
