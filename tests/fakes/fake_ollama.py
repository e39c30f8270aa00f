"""A wire-level fake of the Ollama REST API, for tests and benches.

It is a real aiohttp server on ``127.0.0.1`` (ephemeral port) that speaks the same JSON and NDJSON
as Ollama, so the real ``ollama.AsyncClient`` runs its whole code path (HTTP, decoding, error
mapping) against it. Nothing here imports the engine.

Use it as an async context manager, or through the ``fake_ollama`` pytest fixture::

    async with FakeOllama() as fake:            # "llama3.2:latest" is installed by default
        fake.add_model("qwen3", capabilities=["completion", "tools", "thinking"])
        fake.script(Reply(tokens=["Hel", "lo"], thinking=["hmm"]))
        client = ollama.AsyncClient(host=fake.url)
        ...
        assert fake.requests[-1]["options"]["temperature"] == 0.2

Endpoints: ``POST /api/chat`` (streamed NDJSON or one JSON object), ``GET /api/tags``,
``POST /api/show``, ``POST /api/pull`` (streamed progress), ``GET /api/ps``, ``GET /api/version``.
An unknown model gives HTTP 404 ``{"error": "model 'x' not found"}``.

Scripting ``/api/chat``: queue :class:`Reply` objects with :meth:`FakeOllama.script`; each chat
request takes the next one. When the queue is empty the reply is ``"echo: <last user text>"``,
split into word tokens (see :func:`echo_text`), so any test can assert on it.

Failure modes a reply can script: HTTP error status before streaming (``status``), an
``{"error": ...}`` line after n tokens (``error_after``), an abrupt connection close after n tokens
(``drop_after``), slow tokens (``first_token_delay``, ``token_delay``, or the server-wide
``tokens_per_second``), a ``gate`` event the reply waits on before its first token, and a hold
after n tokens (``hold_after``) until the client hangs up.

Like Ollama, the fake stops a reply at ``options.num_predict`` tokens (thinking tokens count
first) and ends it with ``done_reason: "length"``.

The context window, as Ollama applies it: each request runs with ``options.num_ctx`` or, without
it, the server's default (``default_num_ctx``, 4,096 as on current releases), capped at the
model's ``context_length``. A prompt longer than that loses its oldest non-system messages,
silently (the newest is always kept); ``prompt_eval_count`` reports the tokens kept. The fake
counts a message's tokens with :func:`prompt_tokens` (its word tokens plus four for the chat
template's role markers). ``contexts`` records what each served request ran with (window, kept
messages, how many were dropped); ``reloads`` counts the times a loaded model was run with
another window, which makes Ollama reload it.

Observing: ``requests`` (every ``/api/chat`` body), ``log`` (every request as ``(path, body)``),
``active_streams``, ``streams_completed``, ``streams_closed_by_client`` (a client that closed the
HTTP stream before the end, which is how cancellation reaches Ollama), and ``wait_for_*`` helpers
that wait on conditions instead of sleeping.

Capacity: ``max_parallel`` (``None``: unlimited; set it before the first chat request) lets at
most that many chat streams generate at once; the others wait their turn before their first byte,
as with Ollama's ``OLLAMA_NUM_PARALLEL``. ``waiting_streams`` counts the ones waiting,
``max_waiting_streams`` the most that ever waited at once.

:meth:`FakeOllama.stop` stops listening (connections are refused); :meth:`FakeOllama.start` starts
again on the same port. :meth:`FakeOllama.kill` dies like a killed process: every open stream is
cut at once (no final line, no terminating chunk), then connections are refused;
``killed_streams`` counts the streams it cut. ``max_active_streams`` is the most chat streams that
ever ran at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

__all__ = [
    "FakeContext",
    "FakeModel",
    "FakeOllama",
    "Reply",
    "echo_text",
    "fit_context",
    "prompt_tokens",
    "word_tokens",
]

_NDJSON = "application/x-ndjson"
DEFAULT_MODEL = "llama3.2:latest"
VERSION = "0.12.6"
DEFAULT_NUM_CTX = 4096
"""Ollama's context window when a request names none (current releases; older ones: 2,048)."""
TEMPLATE_TOKENS = 4
"""Tokens a chat template adds around each message (role markers)."""


def word_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens whose concatenation is exactly ``text``."""
    return re.findall(r"\S+\s*|\s+", text)


def echo_text(body: Mapping[str, Any]) -> str:
    """The default reply text for a chat request body: ``"echo: <last user text>"``."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return f"echo: {message.get('content', '')}"
    return "echo: "


def prompt_tokens(message: Mapping[str, Any]) -> int:
    """How many tokens the fake counts for one chat message: word tokens, plus role markers."""
    count = len(word_tokens(str(message.get("content") or ""))) + TEMPLATE_TOKENS
    for call in message.get("tool_calls") or ():
        count += len(word_tokens(json.dumps(call)))
    return count


@dataclass(frozen=True)
class FakeContext:
    """What one chat request ran with.

    Attributes:
        num_ctx: The window: ``options.num_ctx`` or the server's default, capped at the model's
            maximum.
        messages: The messages the model saw (system messages and the newest that fit).
        dropped: How many messages were dropped, oldest first, for want of room.
        prompt_tokens: The tokens the model evaluated (``prompt_eval_count``).
    """

    num_ctx: int
    messages: list[dict[str, Any]]
    dropped: int
    prompt_tokens: int


def fit_context(messages: Sequence[Mapping[str, Any]], num_ctx: int) -> FakeContext:
    """Ollama's rule: keep the system messages, then the newest messages while they fit.

    The newest message is kept even when it alone is too long; the prompt is then cut to the
    window (Ollama's runner truncates it), so ``prompt_tokens`` never exceeds ``num_ctx``.
    """
    system = [i for i, m in enumerate(messages) if m.get("role") == "system"]
    others = [i for i, m in enumerate(messages) if m.get("role") != "system"]
    used = sum(prompt_tokens(messages[i]) for i in system)
    kept = set(system)
    for position, index in enumerate(reversed(others)):
        cost = prompt_tokens(messages[index])
        if position > 0 and used + cost > num_ctx:
            break
        kept.add(index)
        used += cost
    return FakeContext(
        num_ctx=num_ctx,
        messages=[dict(m) for i, m in enumerate(messages) if i in kept],
        dropped=len(messages) - len(kept),
        prompt_tokens=min(used, num_ctx),
    )


def normalize_name(name: str) -> str:
    """Ollama's model naming: a name without a tag means ``:latest``."""
    return name if ":" in name else f"{name}:latest"


_SETTLE_TURNS = 10
"""Event-loop turns after which a client's hang-up has reached the fake's handler."""


@dataclass
class Reply:
    """One scripted answer to a ``/api/chat`` request.

    Attributes:
        tokens: Content tokens, streamed one line each.
        thinking: Thinking tokens, streamed (one line each) before the content.
        tool_calls: Calls the model asks for, as ``{"name": ..., "arguments": {...}}`` mappings (or
            objects with ``name`` and ``arguments`` attributes); sent in ``message.tool_calls``
            after the content.
        token_delay: Seconds between two lines.
        first_token_delay: Seconds before the first line.
        error_after: After this many content tokens, send an ``{"error": ...}`` line and end.
        error_message: The text of that error line (or of the ``status`` error body).
        drop_after: After this many content tokens, close the connection abruptly.
        status: Answer this HTTP status (e.g. 500) with an error body instead of streaming.
        done_reason: The ``done_reason`` of the last line.
        gate: If set, wait for this event before the first line (for deterministic tests).
        end_after: After this many content tokens, end the response cleanly but without
            Ollama's final ``done`` line (as a proxy that gives up does).
        hold_after: After this many content tokens, hold the stream open (counted in
            ``streams_held``) until ``release`` is set; without ``release``, until the client
            hangs up. Like Ollama, a stream the client closes gets no final line.
        release: Ends the hold of ``hold_after``.
    """

    tokens: Sequence[str] = ()
    thinking: Sequence[str] = ()
    tool_calls: Sequence[Any] = ()
    token_delay: float = 0.0
    first_token_delay: float = 0.0
    error_after: int | None = None
    error_message: str = "an error was encountered while running the model"
    drop_after: int | None = None
    status: int | None = None
    done_reason: str = "stop"
    gate: asyncio.Event | None = None
    hold_after: int | None = None
    release: asyncio.Event | None = None
    end_after: int | None = None

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> Reply:
        """A reply streaming ``text`` as word tokens."""
        return cls(tokens=word_tokens(text), **kwargs)


@dataclass
class FakeModel:
    """An installed model as the fake describes it."""

    name: str
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    context_length: int = 8192
    family: str = "llama"
    parameter_size: str = "3.2B"
    size: int = 2_019_393_189

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()


class FakeOllama:
    """A scriptable Ollama server on loopback. See the module docstring."""

    def __init__(
        self,
        models: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._host = host
        self._port = port
        self.models: dict[str, FakeModel] = {}
        for name in [DEFAULT_MODEL] if models is None else models:
            self.add_model(name)
        self.replies: deque[Reply] = deque()
        self.default_reply: Callable[[Mapping[str, Any]], Reply] = lambda body: Reply.text(
            echo_text(body)
        )
        self.tokens_per_second: float | None = None
        self.max_parallel: int | None = None
        self.waiting_streams = 0
        self.max_waiting_streams = 0
        self._parallel: asyncio.Semaphore | None = None
        self.pullable: set[str] | None = None
        self.requests: list[dict[str, Any]] = []
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.loaded: set[str] = set()
        self.default_num_ctx = DEFAULT_NUM_CTX
        self.contexts: list[FakeContext] = []
        self.reloads = 0
        self._loaded_ctx: dict[str, int] = {}
        self.active_streams = 0
        self.max_active_streams = 0
        self.killed_streams = 0
        self._transports: set[Any] = set()
        self._cut: set[Any] = set()  # transports cut by kill()
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_closed_by_client = 0
        self.streams_held = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to hand to ``ollama.AsyncClient(host=...)``."""
        if not self._port:
            raise RuntimeError("FakeOllama is not started")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        """Start listening (again on the same port after :meth:`stop`)."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        # handler_cancellation: a client that hangs up cancels the handler, as in Ollama, where
        # closing the HTTP stream stops the generation.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the ephemeral port
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]
        self._runner, self._site = runner, site

    async def stop(self) -> None:
        """Stop listening and drop open connections; new connections are refused."""
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            self._stopping = True
            try:
                await runner.cleanup()
            finally:
                self._stopping = False

    async def kill(self) -> None:
        """Die like a killed process: cut every open stream at once, then refuse connections."""
        self.killed_streams += len(self._transports)
        for transport in list(self._transports):
            self._cut.add(transport)
            transport.abort()
        await self.stop()

    async def __aenter__(self) -> FakeOllama:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting ---------------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        *,
        capabilities: Iterable[str] = ("completion",),
        context_length: int = 8192,
        family: str = "llama",
        parameter_size: str = "3.2B",
        size: int = 2_019_393_189,
    ) -> FakeModel:
        """Install a model (``name`` without a tag means ``:latest``)."""
        model = FakeModel(
            normalize_name(name), list(capabilities), context_length, family, parameter_size, size
        )
        self.models[model.name] = model
        return model

    def remove_model(self, name: str) -> None:
        """Uninstall a model; later requests for it get a 404."""
        self.models.pop(normalize_name(name), None)
        self.loaded.discard(normalize_name(name))

    def script(self, *replies: Reply) -> None:
        """Queue replies; each ``/api/chat`` request takes the next one."""
        self.replies.extend(replies)

    # -- waiting (no sleeps in tests) --------------------------------------------------------

    async def _wait(self, predicate: Callable[[], bool], within: float) -> None:
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(within):
                await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_for_requests(self, n: int = 1, within: float = 5.0) -> None:
        """Wait until ``n`` chat requests in total were received."""
        await self._wait(lambda: len(self.requests) >= n, within)

    async def closed_by_client(self) -> int:
        """``streams_closed_by_client`` once the hang-ups that already happened are delivered.

        No clock and no waiting for something that may come later: the event loop turns a few
        times (the socket's end reaches the server and cancels its handler on the next turns),
        so a stream the client closed before this call is counted, and one it leaked (left to
        the garbage collector) is not.
        """
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        return self.streams_closed_by_client

    async def wait_for_client_close(self, n: int = 1, within: float = 5.0) -> None:
        """Wait until ``n`` streams in total were closed by the client before their end."""
        await self._wait(lambda: self.streams_closed_by_client >= n, within)

    async def wait_for_held(self, n: int = 1, within: float = 5.0) -> None:
        """Wait until ``n`` streams in total reached their ``hold_after`` point."""
        await self._wait(lambda: self.streams_held >= n, within)

    async def wait_for_idle(self, within: float = 5.0) -> None:
        """Wait until no stream is active."""
        await self._wait(lambda: self.active_streams == 0, within)

    def _notify(self) -> None:
        # Synchronous on purpose: it runs in a cancelled handler's ``finally`` too.
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    # -- handlers ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        self.log.append((request.path, body))
        return body

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.Response(
            status=status, text=json.dumps({"error": message}), content_type="application/json"
        )

    def _not_found(self, name: str) -> web.Response:
        return self._error(404, f"model '{name}' not found")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        self.requests.append(body)
        self._notify()
        name = str(body.get("model", ""))
        if normalize_name(name) not in self.models:
            return self._not_found(name)
        reply = self.replies.popleft() if self.replies else self.default_reply(body)
        if reply.status is not None:
            return self._error(reply.status, reply.error_message)
        reply = _limit_predict(reply, body)
        context = self._run_with(normalize_name(name), body)
        if body.get("stream", True) is False:
            return self._chat_whole(name, context, reply)
        if self.max_parallel is None:
            return await self._chat_stream(request, name, context, reply)
        if self._parallel is None:
            self._parallel = asyncio.Semaphore(self.max_parallel)
        self.waiting_streams += 1
        self.max_waiting_streams = max(self.max_waiting_streams, self.waiting_streams)
        try:
            await self._parallel.acquire()
        finally:
            self.waiting_streams -= 1
        try:
            return await self._chat_stream(request, name, context, reply)
        finally:
            self._parallel.release()

    def _run_with(self, model: str, body: Mapping[str, Any]) -> FakeContext:
        """Load ``model`` with the request's window (counting reloads) and fit the prompt."""
        wanted = (body.get("options") or {}).get("num_ctx") or self.default_num_ctx
        num_ctx = min(int(wanted), self.models[model].context_length)
        if model in self.loaded and self._loaded_ctx.get(model) != num_ctx:
            self.reloads += 1
        self.loaded.add(model)
        self._loaded_ctx[model] = num_ctx
        context = fit_context(body.get("messages") or [], num_ctx)
        self.contexts.append(context)
        return context

    def _line(self, name: str, **message: Any) -> dict[str, Any]:
        return {
            "model": name,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
        }

    @staticmethod
    def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
        calls = []
        for call in reply.tool_calls:
            if isinstance(call, Mapping):
                fn, args = call["name"], call.get("arguments", {})
            else:
                fn, args = call.name, call.arguments
            calls.append({"function": {"name": fn, "arguments": dict(args)}})
        return calls

    def _final(
        self, name: str, context: FakeContext, reply: Reply, start: float, first: float | None
    ) -> dict[str, Any]:
        now = time.perf_counter()
        line = self._line(name)
        line.update(
            done=True,
            done_reason=reply.done_reason,
            total_duration=int((now - start) * 1e9),
            load_duration=1_000_000,
            prompt_eval_count=context.prompt_tokens,
            prompt_eval_duration=int(((first or now) - start) * 1e9),
            eval_count=len(reply.tokens) + len(reply.thinking),
            eval_duration=int((now - (first or now)) * 1e9),
        )
        return line

    def _chat_whole(self, name: str, context: FakeContext, reply: Reply) -> web.Response:
        start = time.perf_counter()
        line = self._final(name, context, reply, start, start)
        line["message"]["content"] = "".join(reply.tokens)
        if reply.thinking:
            line["message"]["thinking"] = "".join(reply.thinking)
        if reply.tool_calls:
            line["message"]["tool_calls"] = self._tool_calls(reply)
        return web.json_response(line)

    async def _chat_stream(
        self, request: web.Request, name: str, context: FakeContext, reply: Reply
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": _NDJSON})
        self.active_streams += 1
        self.max_active_streams = max(self.max_active_streams, self.active_streams)
        self.streams_started += 1
        transport = request.transport
        if transport is not None:
            self._transports.add(transport)
        start = time.perf_counter()
        first: float | None = None
        try:
            await resp.prepare(request)
            if reply.gate is not None:
                await reply.gate.wait()
            delay = reply.token_delay
            if not delay and self.tokens_per_second:
                delay = 1.0 / self.tokens_per_second
            lines = [self._line(name, thinking=t) for t in reply.thinking]
            content_start = len(lines)
            lines += [self._line(name, content=t) for t in reply.tokens]
            if reply.tool_calls:
                lines.append(self._line(name, tool_calls=self._tool_calls(reply)))
            for index, line in enumerate(lines):
                sent = index - content_start  # content tokens already sent
                if reply.error_after is not None and sent == reply.error_after:
                    await resp.write(_encode({"error": reply.error_message}))
                    await resp.write_eof()
                    return resp
                if reply.drop_after is not None and sent == reply.drop_after:
                    return self._drop(request, resp)
                if reply.end_after is not None and sent == reply.end_after:
                    await resp.write_eof()
                    return resp
                if reply.hold_after is not None and sent == reply.hold_after:
                    await self._hold(reply)
                wait = reply.first_token_delay if index == 0 else delay
                if wait:
                    await asyncio.sleep(wait)
                if first is None:
                    first = time.perf_counter()
                await resp.write(_encode(line))
            sent = len(reply.tokens)
            if reply.error_after is not None and reply.error_after >= sent:
                await resp.write(_encode({"error": reply.error_message}))
                await resp.write_eof()
                return resp
            if reply.drop_after is not None and reply.drop_after >= sent:
                return self._drop(request, resp)
            if reply.hold_after is not None and reply.hold_after >= sent:
                await self._hold(reply)
            await resp.write(_encode(self._final(name, context, reply, start, first)))
            await resp.write_eof()
            self.streams_completed += 1
            return resp
        except (asyncio.CancelledError, ConnectionResetError) as err:
            if transport is not None and transport in self._cut:
                # Cut by kill(): the server is "dead"; no error to report for the write.
                if isinstance(err, asyncio.CancelledError):
                    raise
                return resp
            # The client closed the HTTP stream early (cancellation): count it, as a test's proof
            # that stopping a reply reaches the server. Our own shutdown does not count.
            if not self._stopping:
                self.streams_closed_by_client += 1
            raise
        finally:
            self._transports.discard(transport)
            self.active_streams -= 1
            self._notify()

    async def _hold(self, reply: Reply) -> None:
        self.streams_held += 1
        self._notify()
        await (reply.release or asyncio.Event()).wait()

    @staticmethod
    def _drop(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        # Close the socket without the terminating chunk: the client sees an incomplete body.
        transport = request.transport
        if transport is not None:
            transport.abort()
        return resp

    async def _tags(self, request: web.Request) -> web.Response:
        await self._body(request)
        return web.json_response({"models": [self._describe(m) for m in self.models.values()]})

    def _describe(self, model: FakeModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": "2026-01-01T00:00:00Z",
            "size": model.size,
            "digest": model.digest,
            "details": {
                "format": "gguf",
                "family": model.family,
                "families": [model.family],
                "parameter_size": model.parameter_size,
                "quantization_level": "Q4_K_M",
            },
        }

    async def _show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name = str(body.get("model") or body.get("name") or "")
        model = self.models.get(normalize_name(name))
        if model is None:
            return self._not_found(name)
        described = self._describe(model)
        return web.json_response(
            {
                "modelfile": f"FROM {model.name}",
                "parameters": "stop <|eot_id|>",
                "template": "{{ .Prompt }}",
                "details": described["details"],
                "model_info": {
                    "general.architecture": model.family,
                    "general.parameter_count": 3_212_749_888,
                    f"{model.family}.context_length": model.context_length,
                    f"{model.family}.embedding_length": 3072,
                },
                "capabilities": list(model.capabilities),
                "modified_at": described["modified_at"],
            }
        )

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        name = str(body.get("model") or body.get("name") or "")
        if self.pullable is not None and normalize_name(name) not in {
            normalize_name(n) for n in self.pullable
        }:
            resp = web.StreamResponse(headers={"Content-Type": _NDJSON})
            await resp.prepare(request)
            await resp.write(_encode({"status": "pulling manifest"}))
            await resp.write(_encode({"error": "pull model manifest: file does not exist"}))
            await resp.write_eof()
            return resp
        digest = "sha256:" + hashlib.sha256(normalize_name(name).encode()).hexdigest()
        total = 2_000_000
        steps: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        steps += [
            {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total, "completed": c}
            for c in (0, total // 4, total // 2, total)
        ]
        steps += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
        if body.get("stream", True) is False:
            self.add_model(name)
            return web.json_response({"status": "success"})
        resp = web.StreamResponse(headers={"Content-Type": _NDJSON})
        await resp.prepare(request)
        for step in steps:
            await resp.write(_encode(step))
        self.add_model(name)
        await resp.write(_encode({"status": "success"}))
        await resp.write_eof()
        return resp

    async def _ps(self, request: web.Request) -> web.Response:
        await self._body(request)
        running = []
        for name in sorted(self.loaded):
            model = self.models.get(name)
            if model is None:
                continue
            described = self._describe(model)
            described.update(
                expires_at="2099-01-01T00:00:00Z",
                size_vram=model.size,
                context_length=model.context_length,
            )
            running.append(described)
        return web.json_response({"models": running})

    async def _version(self, request: web.Request) -> web.Response:
        await self._body(request)
        return web.json_response({"version": VERSION})


def _limit_predict(reply: Reply, body: Mapping[str, Any]) -> Reply:
    """``reply`` cut at ``options.num_predict`` tokens, as Ollama cuts it ("length")."""
    limit = (body.get("options") or {}).get("num_predict")
    if limit is None or limit < 0 or len(reply.thinking) + len(reply.tokens) <= limit:
        return reply
    thinking = list(reply.thinking[:limit])
    tokens = list(reply.tokens[: limit - len(thinking)])
    # The model never got to the tool calls it would have written after the cut.
    return replace(reply, thinking=thinking, tokens=tokens, tool_calls=(), done_reason="length")


def _encode(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()
