"""The Ollama implementation of :class:`bot.model.port.ChatModel`, on ``ollama.AsyncClient``.

This is the only module that imports ``ollama``. Every error the library (or httpx under it)
raises is translated here, once, into :mod:`bot.errors`:

=================================================  ==========================================
What happened                                       Raised as
=================================================  ==========================================
connection refused (``ConnectionError``,            :class:`OllamaUnavailableError` (host named)
``httpx.ConnectError``, connect timeout)
HTTP 404                                            :class:`ModelNotFoundError` (installed listed)
HTTP 5xx, 429                                       ``OllamaError(retryable=True)``
other HTTP 4xx (bad request, no tool support)       ``OllamaError(retryable=False)``
``{"error": ...}`` line mid-stream                  ``OllamaError(retryable=True)``
connection dropped mid-stream                       ``OllamaError(retryable=True)``
no byte within ``read_timeout``                     :class:`GenerationTimeout`
=================================================  ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import httpx
import ollama
import pydantic

from bot.errors import GenerationTimeout, ModelNotFoundError, OllamaError, OllamaUnavailableError
from bot.model.port import ChatDelta, ChatRequest, HostStatus, select_hosts
from bot.types import Message, ModelInfo, PullProgress, ToolCall

__all__ = ["OllamaChatModel"]

log = logging.getLogger(__name__)

_NS = 1e9


class OllamaChatModel:
    """A chat model served by Ollama. Owns one ``ollama.AsyncClient``; close it with ``close()``.

    Args:
        host: Ollama's base URL; ``None`` lets the ``ollama`` library pick its default
            (``OLLAMA_HOST`` or ``http://127.0.0.1:11434``). Configuration should pass it.
        connect_timeout: Seconds to wait for a TCP connection before calling Ollama unavailable.
        read_timeout: Seconds to wait for any byte of a response; ``None`` waits forever (the
            generation core enforces first-token and gap timeouts itself).
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float | None = None,
    ) -> None:
        self._read_timeout = read_timeout
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._client = _LeanClient(host=host, timeout=timeout)
        # The library resolves the default host itself; report the URL it really uses.
        self._host = str(self._client._client.base_url).rstrip("/")

    @property
    def host(self) -> str:
        """The base URL this backend talks to."""
        return self._host

    async def close(self) -> None:
        """Close the HTTP client (and any connection it holds)."""
        await self._client.close()  # type: ignore[no-untyped-call]  # untyped in ollama

    async def __aenter__(self) -> OllamaChatModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- chat --------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """Stream one chat reply.

        Closing the returned iterator (``aclose``) closes the HTTP stream, which is how Ollama
        learns to stop generating.

        Raises:
            OllamaError: Or a subclass; see the module docstring for which failure maps to which.
        """
        try:
            stream = await self._client.chat(
                model=request.model,
                messages=[_wire_message(m) for m in request.messages],
                tools=list(request.tools) or None,
                stream=True,
                think=request.think,
                format=request.format,
                options=dict(request.options) or None,
                keep_alive=request.keep_alive,
            )
            try:
                # ``_LeanClient`` makes the library yield our deltas (see there).
                async for delta in cast(AsyncIterator[ChatDelta], stream):
                    yield delta
            finally:
                # Leaves the library's ``async with client.stream(...)``: the response and its
                # connection are closed even when the consumer stopped early.
                await _aclose(stream)
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err, model=request.model) from err

    # -- models ------------------------------------------------------------------------------

    async def show(self, model: str) -> ModelInfo:
        """What Ollama knows about an installed model (context length, capabilities).

        Raises:
            ModelNotFoundError: The model is not installed.
            OllamaError: Ollama failed or cannot be reached.
        """
        try:
            shown = await self._client.show(model)
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err, model=model) from err
        info: Mapping[str, Any] = shown.modelinfo or {}
        context = next(
            (int(v) for k, v in info.items() if k.endswith(".context_length") and v), None
        )
        details = shown.details
        return ModelInfo(
            name=model,
            context_length=context or ModelInfo.model_fields["context_length"].default,
            capabilities=frozenset(shown.capabilities or ()),
            family=details.family if details else None,
            parameter_size=details.parameter_size if details else None,
        )

    async def list_models(self) -> list[ModelInfo]:
        """The installed models (``context_length`` is the default: ``/api/tags`` omits it).

        Raises:
            OllamaError: Ollama failed or cannot be reached.
        """
        try:
            listed = await self._client.list()
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err) from err
        return [
            ModelInfo(
                name=m.model or "",
                size=int(m.size) if m.size is not None else None,
                family=m.details.family if m.details else None,
                parameter_size=m.details.parameter_size if m.details else None,
            )
            for m in listed.models
        ]

    async def pull(self, model: str, hosts: Sequence[str] = ()) -> AsyncIterator[PullProgress]:
        """Download a model, reporting progress; the last report has status ``"success"``.

        Args:
            model: The model to pull.
            hosts: Hosts named by the user; this backend has one, which they must name.

        Raises:
            InputRejected: ``hosts`` names another host.
            OllamaError: The pull failed (unknown model, network); not retryable.
        """
        select_hosts([self._host], hosts)
        try:
            stream = await self._client.pull(model, stream=True)
            try:
                async for part in stream:
                    yield PullProgress(
                        status=part.status or "",
                        digest=part.digest,
                        total=part.total,
                        completed=part.completed,
                    )
            finally:
                await _aclose(stream)
        except ollama.ResponseError as err:
            if err.status_code == -1 or err.status_code == 404:
                raise OllamaError(
                    f"Could not pull '{model}': {err.error}", detail=str(err), retryable=False
                ) from err
            raise await self._translate(err, model=None) from err
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err) from err

    async def loaded_models(self) -> list[str]:
        """The models loaded in memory now (``/api/ps``).

        Raises:
            OllamaError: Ollama failed or cannot be reached.
        """
        try:
            running = await self._client.ps()
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err) from err
        return [m.model or m.name or "" for m in running.models if m.model or m.name]

    async def hosts(self) -> list[HostStatus]:
        """This one host: its version, installed and loaded models, or why it cannot be used."""
        try:
            version = await self.version()
            models = await self.list_models()
            loaded = await self.loaded_models()
        except OllamaError as err:
            return [HostStatus(url=self._host, up=False, detail=err.user_message)]
        return [
            HostStatus(
                url=self._host,
                up=True,
                version=version,
                models=tuple(sorted(m.name for m in models)),
                loaded=tuple(sorted(loaded)),
            )
        ]

    async def version(self) -> str:
        """Ollama's version string (also a cheap "is it up" probe).

        Raises:
            OllamaUnavailableError: Ollama cannot be reached.
        """
        try:
            # AsyncClient has no version() method; its raw request keeps its error mapping.
            response = await self._client._request_raw(  # type: ignore[no-untyped-call]
                "GET", "/api/version"
            )
            return str(response.json()["version"])
        except _LIBRARY_ERRORS as err:
            raise await self._translate(err) from err
        except (KeyError, ValueError) as err:
            raise OllamaError("Ollama sent an unexpected answer.", detail=repr(err)) from err

    # -- error translation -------------------------------------------------------------------

    async def _installed_names(self) -> list[str]:
        try:
            listed = await self._client.list()
        except _LIBRARY_ERRORS:
            log.warning("could not list installed models at %s", self._host, exc_info=True)
            return []
        return [m.model for m in listed.models if m.model]

    async def _translate(self, err: BaseException, *, model: str | None = None) -> OllamaError:
        """Map one library error to ours (see the table in the module docstring)."""
        if isinstance(err, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
            return OllamaUnavailableError(self._host, detail=repr(err))
        if isinstance(err, ollama.ResponseError):
            status = err.status_code
            if status == 404 and model is not None:
                return ModelNotFoundError(model, await self._installed_names())
            if status == -1:
                return OllamaError(
                    f"The model failed while answering: {err.error}",
                    detail=str(err),
                    retryable=True,
                )
            retryable = status >= 500 or status == 429
            return OllamaError(
                f"Ollama answered HTTP {status}: {err.error}",
                detail=str(err),
                status_code=status,
                retryable=retryable,
            )
        if isinstance(err, httpx.ReadTimeout):
            return GenerationTimeout("no data from Ollama", self._read_timeout or 0.0)
        if isinstance(err, httpx.TransportError):
            # RemoteProtocolError (peer closed mid-body), ReadError, WriteError, ...
            return OllamaError(
                "The connection to Ollama was lost.", detail=repr(err), retryable=True
            )
        return OllamaError("Ollama sent an unexpected answer.", detail=repr(err), retryable=False)


class _MalformedLine(ValueError):
    """A streamed chat line that does not have the shape Ollama documents."""


_LIBRARY_ERRORS = (
    _MalformedLine,
    ollama.ResponseError,
    ConnectionError,
    httpx.HTTPError,
    pydantic.ValidationError,
)


def _wire_message(message: Message) -> dict[str, Any]:
    """Our message in Ollama's JSON form (``tool_name`` comes from ``metadata``)."""
    wire: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.images:
        wire["images"] = list(message.images)
    if message.tool_calls:
        wire["tool_calls"] = [
            {"function": {"name": c.name, "arguments": dict(c.arguments)}}
            for c in message.tool_calls
        ]
    tool_name = message.metadata.get("tool_name")
    if tool_name:
        wire["tool_name"] = str(tool_name)
    return wire


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    # The library returns async generators but types them as plain iterators.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _seconds(ns: int | None) -> float | None:
    return ns / _NS if ns is not None else None


class _LeanClient(ollama.AsyncClient):
    """``ollama.AsyncClient`` whose streamed chat lines become :class:`ChatDelta` directly.

    The library validates every streamed line into a pydantic ``ChatResponse`` (about 3.5 us per
    token, more than the rest of the engine's per-token work), of which the backend only reads a
    few fields. Here each line's object, already parsed by the library's ``json.loads``, goes
    straight into :func:`_line_delta`. Request building, HTTP errors and ``{"error": ...}``
    lines keep the library's own handling: only the class it builds each line with changes.
    """

    async def _request(self, cls: Any, *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        if stream and cls is ollama.ChatResponse:
            cls = _line_delta
        return await super()._request(cls, *args, stream=stream, **kwargs)


def _line_delta(
    *,
    message: Any = None,
    done: Any = False,
    done_reason: str | None = None,
    eval_count: int | None = None,
    prompt_eval_count: int | None = None,
    total_duration: int | None = None,
    eval_duration: int | None = None,
    **_: Any,
) -> ChatDelta:
    """One streamed ``/api/chat`` line (the fields of its JSON object) as a delta.

    Raises:
        _MalformedLine: The line does not have the documented shape.
    """
    if type(message) is not dict:
        if message is not None:
            raise _MalformedLine(f"chat line with a message of type {type(message).__name__}")
        message = {}
    content = message.get("content") or ""
    thinking = message.get("thinking") or ""
    calls = message.get("tool_calls")
    if not done and not calls and type(content) is str and type(thinking) is str:
        return ChatDelta(content, thinking)  # the per-token path: positional, cheapest call
    if type(content) is not str or type(thinking) is not str:
        raise _MalformedLine("chat line whose content or thinking is not text")
    try:
        tool_calls = tuple(
            ToolCall(
                name=c["function"]["name"], arguments=dict(c["function"].get("arguments") or {})
            )
            for c in calls or ()
        )
    except (KeyError, TypeError, ValueError) as err:
        raise _MalformedLine(f"chat line with malformed tool calls: {err!r}") from err
    if not done:
        return ChatDelta(content, thinking, tool_calls)
    return ChatDelta(
        content,
        thinking,
        tool_calls,
        done=True,
        done_reason=done_reason,
        eval_count=eval_count,
        prompt_eval_count=prompt_eval_count,
        total_duration=_seconds(total_duration),
        eval_duration=_seconds(eval_duration),
    )
