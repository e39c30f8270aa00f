"""The port to a chat model. ``OllamaChatModel`` implements it; tests and benches may fake it.

The engine talks to "a chat model" only through this protocol, so a second backend drops in.
Implementations translate their library's errors into :mod:`bot.errors` where they enter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import InputRejected
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


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One model server (an Ollama host) as ``ollabot check`` and ``model list`` show it.

    Attributes:
        url: The host's base URL.
        up: Whether it answered its last check (or request).
        version: The server's version, when known.
        models: Installed model names, as last read.
        loaded: Model names loaded in memory, as last read.
        in_flight: Generations running there now (through this process).
        cap: At most this many generations at once (``None``: no cap of the bot's own).
        detail: Why it is down.
    """

    url: str
    up: bool
    version: str | None = None
    models: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()
    in_flight: int = 0
    cap: int | None = None
    detail: str | None = None


def short_host(url: str) -> str:
    """A host's URL without its scheme (``http://gpu1:11434`` -> ``gpu1:11434``)."""
    return url.split("://", 1)[-1]


def select_hosts(urls: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The URLs among ``urls`` that ``wanted`` names; all of them when ``wanted`` is empty.

    A host may be named by its URL, by ``host:port``, or by its host name alone when that is
    unambiguous (``gpu1`` for ``http://gpu1:11434``).

    Raises:
        InputRejected: A name matches no host, or more than one.
    """
    if not wanted:
        return list(urls)
    chosen: list[str] = []
    for name in wanted:
        bare = short_host(name.strip().rstrip("/"))
        matches = [u for u in urls if bare in (short_host(u), short_host(u).rsplit(":", 1)[0])]
        if len(matches) != 1:
            known = ", ".join(short_host(u) for u in urls)
            what = "matches several hosts" if matches else "is not one of the hosts"
            raise InputRejected(f"'{name}' {what}. Hosts: {known}.")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


class ChatModel(Protocol):
    """A chat model backend (Ollama, or a fake in tests), on one host or routed over several.

    ``chat`` returns an async iterator of deltas. Closing it (``aclose``) must stop the
    generation on the server side (close the HTTP stream). ``hosts`` checks and describes every
    server behind the backend; ``pull`` goes to the hosts named (all when none is).
    """

    @property
    def host(self) -> str: ...

    def chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]: ...

    async def show(self, model: str) -> ModelInfo: ...

    async def list_models(self) -> list[ModelInfo]: ...

    def pull(self, model: str, hosts: Sequence[str] = ()) -> AsyncIterator[PullProgress]: ...

    async def version(self) -> str: ...

    async def hosts(self) -> list[HostStatus]: ...

    async def close(self) -> None: ...


class ResponseCacheLike(Protocol):
    """A cache of whole replies (``bot.model.cache.ResponseCache`` implements it).

    ``get`` returns the stored reply marked ``cached=True``, or ``None`` (also for requests it
    does not cache, e.g. sampled ones). ``put`` is offered every reply that ended and keeps only
    the complete ones that used no tools.
    """

    def get(self, request: ChatRequest) -> Response | None: ...

    def put(self, request: ChatRequest, response: Response) -> None: ...


class ToolRunnerLike(Protocol):
    """Runs the model's tool calls (``bot.model.tools.ToolRegistry`` implements it).

    ``run`` never raises (except ``CancelledError``): a failure comes back as text for the model.
    """

    def schemas(self) -> list[dict[str, Any]]: ...

    async def run(self, call: ToolCall) -> str: ...
