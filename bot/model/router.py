"""Several Ollama hosts behind the one model port, so the engine never knows how many there are.

:class:`RoutedChatModel` implements :class:`bot.model.port.ChatModel` over one backend per host
(``OllamaChatModel``). For each request it picks a host:

1. Only a host that has the model installed (its ``/api/tags``) and is up.
2. Among those, one that has the model loaded already (its ``/api/ps``, or a reply seen from it):
   no cold load. Among those, the one with the fewest generations in flight.
3. Each host runs at most ``max_parallel_per_host`` generations at once (Ollama's own
   ``OLLAMA_NUM_PARALLEL`` default is 4). When every host with the model loaded is at its cap,
   the request goes to a host that has the model installed but not loaded **only if that host is
   idle** (nothing in flight); otherwise it waits for the first free slot. A cold load costs
   seconds once and can evict what a busy host is serving; a wait costs a fraction of one reply.
   ``docs/scaling.md`` explains the rule. When no host has the model loaded, the least busy host
   that has it loads it.

Failover: a host that refuses the connection, answers 5xx, or fails before the first token is
skipped for that request (the request goes to the next host at once), marked down, and checked
again in the background with a doubling backoff; a check that passes brings it back. A reply is
never moved once a delta was handed out: a failure after that reaches the generation core, which
keeps the partial text and marks the reply interrupted. A host that answers 404 for a model it
listed lost it: its list is refreshed and another host is tried.

The lists of installed and loaded models are read at the first request and refreshed in the
background every ``refresh_interval`` seconds, and at once when a host comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any

from bot.errors import ModelNotFoundError, OllamaError, OllamaUnavailableError
from bot.model.hosts import HostBackend, HostState, Wait, choose, is_host_failure, model_key
from bot.model.port import ChatDelta, ChatRequest, HostStatus, select_hosts, short_host
from bot.types import ModelInfo, PullProgress

__all__ = ["HOSTS_HINT", "RoutedChatModel"]

log = logging.getLogger(__name__)

HOSTS_HINT = "Check ollama.hosts in the config."
"""What an unreachable host's message suggests (``OLLAMA_HOST`` is ignored with several hosts)."""


class RoutedChatModel:
    """A chat model served by several Ollama hosts. See the module docstring.

    Args:
        backends: One backend per host (each knows its own URL). At least one.
        max_parallel_per_host: At most this many generations at once on each host.
        refresh_interval: Seconds between two readings of each host's installed and loaded models.
        recheck_initial: Seconds before a host that went down is checked the first time.
        recheck_max: The longest wait between two checks of a down host.
        clock: Monotonic clock, in seconds.
    """

    def __init__(
        self,
        backends: Sequence[HostBackend],
        *,
        max_parallel_per_host: int = 4,
        refresh_interval: float = 30.0,
        recheck_initial: float = 1.0,
        recheck_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("at least one host is needed")
        if max_parallel_per_host < 1:
            raise ValueError("max_parallel_per_host must be at least 1")
        self._hosts = [
            HostState(
                b,
                cap=max_parallel_per_host,
                recheck_initial=recheck_initial,
                recheck_max=recheck_max,
                clock=clock,
            )
            for b in backends
        ]
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._waiters: list[asyncio.Future[None]] = []
        self._listing = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        """Every host's URL, comma-separated (for messages)."""
        return ", ".join(h.url for h in self._hosts)

    @property
    def waiting(self) -> int:
        """Requests waiting for a free slot on a suitable host."""
        return len(self._waiters)

    def statuses(self) -> list[HostStatus]:
        """Every host as last seen, without checking it (``hosts()`` checks)."""
        return [h.status() for h in self._hosts]

    async def close(self) -> None:
        """Stop the background checks and close every host's client."""
        tasks = [t for t in (self._monitor, self._refresher) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._monitor = self._refresher = None
        await asyncio.gather(*(h.backend.close() for h in self._hosts))

    async def __aenter__(self) -> RoutedChatModel:
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
        """Stream one reply from the best host, moving to another only before the first delta.

        The request goes to the host unchanged (options included).

        Raises:
            OllamaError: No host could serve it: the last host's error, or
                :class:`ModelNotFoundError` / :class:`OllamaUnavailableError` when none was tried.
        """
        tried: list[HostState] = []
        last: OllamaError | None = None
        while True:
            try:
                host = await self._acquire(request.model, tried)
            except OllamaError:
                # A host that lost the model only knew its own list: the router's error names
                # what every host has.
                if last is None or isinstance(last, ModelNotFoundError):
                    raise
                if isinstance(last, OllamaUnavailableError):
                    # The host's own message points at OLLAMA_HOST, which is ignored here.
                    raise _unreachable(last.host, last.detail) from None
                raise last from None
            tried.append(host)
            stream = host.backend.chat(request)
            try:
                try:
                    first = await anext(stream)
                except StopAsyncIteration:
                    return
                except ModelNotFoundError as err:
                    last = err
                    log.warning("ollama host %s lost model %s", host.url, request.model)
                    host.forget(request.model)
                    await self._list(host)
                    continue
                except OllamaError as err:
                    if not is_host_failure(err):
                        raise
                    last = err
                    self._down(host, err)
                    continue
                host.loaded.add(model_key(request.model))
                if not host.up:  # tried as a last resort, and it answered
                    host.mark_up()
                yield first
                async for delta in stream:
                    yield delta
                return
            finally:
                await _aclose(stream)
                self._release(host)

    async def _acquire(self, model: str, tried: Sequence[HostState]) -> HostState:
        """Wait for a host to run ``model`` on and take one of its slots."""
        await self._ensure_listed()
        refreshed = False
        while True:
            choice = choose(self._hosts, model, tried)
            if isinstance(choice, HostState):
                choice.in_flight += 1
                choice.chosen += 1
                return choice
            if isinstance(choice, Wait):
                await self._wait_for_change()
                continue
            if not refreshed and any(h.up for h in self._hosts):
                # Nobody up has it: it may have been pulled since the last reading.
                refreshed = True
                await self._list_all()
                continue
            raise self._no_host(model, tried)

    def _no_host(self, model: str, tried: Sequence[HostState]) -> OllamaError:
        if not any(h.up for h in self._hosts):
            return _unreachable(self.host)
        down = [h.url for h in self._hosts if h.may_have(model) and (not h.up or h in tried)]
        if down:
            return _unreachable(", ".join(down), f"no host up with {model}")
        installed = sorted({name for h in self._hosts for name in (h.models or {})})
        return ModelNotFoundError(model, installed)

    def _release(self, host: HostState) -> None:
        host.in_flight -= 1
        self._wake()

    async def _wait_for_change(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Something changed (a slot freed, a host up or down): every waiter chooses again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- health ------------------------------------------------------------------------------

    def _down(self, host: HostState, error: OllamaError) -> None:
        host.mark_down(error)
        self._wake()
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.create_task(self._watch(), name="ollama-hosts-watch")

    async def _watch(self) -> None:
        """Check each down host when its backoff ends, until every host is up."""
        while True:
            down = [h for h in self._hosts if not h.up]
            if not down:
                return
            now = self._clock()
            due = [h for h in down if h.next_check <= now]
            if due:
                await asyncio.gather(*(self._check(h) for h in due))
                continue
            await asyncio.sleep(min(h.next_check for h in down) - now)

    async def _check(self, host: HostState) -> None:
        """Probe one host; up with a fresh list when it answers, down (longer backoff) if not."""
        try:
            await host.probe()
        except OllamaError as err:
            host.mark_down(err)
        else:
            host.mark_up()
        self._wake()

    async def _list(self, host: HostState) -> None:
        """Read one host's models; a host that fails is marked down."""
        try:
            await host.refresh()
        except OllamaError as err:
            if is_host_failure(err):
                self._down(host, err)
            else:
                log.warning("could not list the models of %s: %s", host.url, err.detail)
        self._wake()

    async def _list_all(self) -> None:
        async with self._listing:
            await asyncio.gather(*(self._list(h) for h in self._hosts if h.up))

    async def _ensure_listed(self) -> None:
        """List hosts never listed (awaited); refresh stale lists in the background."""
        if any(h.up and h.models is None for h in self._hosts):
            async with self._listing:
                await asyncio.gather(
                    *(self._list(h) for h in self._hosts if h.up and h.models is None)
                )
        now = self._clock()
        stale = [h for h in self._hosts if h.up and now - h.listed_at > self._refresh_interval]
        if stale and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._list_all(), name="ollama-hosts-refresh")

    # -- models ------------------------------------------------------------------------------

    async def hosts(self) -> list[HostStatus]:
        """Check every host now (version, installed and loaded models) and report each."""
        await asyncio.gather(*(self._check(h) for h in self._hosts))
        if any(not h.up for h in self._hosts) and (self._monitor is None or self._monitor.done()):
            self._monitor = asyncio.create_task(self._watch(), name="ollama-hosts-watch")
        return [h.status() for h in self._hosts]

    async def list_models(self) -> list[ModelInfo]:
        """Every model installed on at least one host that is up (each name once).

        Raises:
            OllamaUnavailableError: No host answers.
        """
        await self._list_all()
        merged: dict[str, ModelInfo] = {}
        listed = [h for h in self._hosts if h.up and h.models is not None]
        if not listed:
            raise _unreachable(self.host)
        for host in listed:
            for info in (host.models or {}).values():
                merged.setdefault(model_key(info.name), info)
        return list(merged.values())

    async def loaded_models(self) -> list[str]:
        """Every model loaded on at least one host (as last read)."""
        return sorted({name for h in self._hosts if h.up for name in h.loaded})

    async def show(self, model: str) -> ModelInfo:
        """What a host that has ``model`` says about it.

        Raises:
            ModelNotFoundError: No host has it (lists what the hosts have).
            OllamaError: Every host that has it failed.
        """
        await self._ensure_listed()
        tried: list[HostState] = []
        last: OllamaError | None = None
        for attempt in range(2):
            if attempt:
                await self._list_all()  # maybe pulled since the last reading
            for host in [h for h in self._hosts if h.up and h.has(model)]:
                tried.append(host)
                try:
                    return await host.backend.show(model)
                except ModelNotFoundError as err:
                    last = err
                    host.forget(model)
                except OllamaError as err:
                    if not is_host_failure(err):
                        raise
                    last = err
                    self._down(host, err)
        if last is not None and not isinstance(last, ModelNotFoundError):
            raise last
        raise self._no_host(model, ())

    async def version(self) -> str:
        """The version of the first host that answers (a cheap "is any host up" probe).

        Raises:
            OllamaUnavailableError: No host answers.
        """
        for host in sorted(self._hosts, key=lambda h: not h.up):
            try:
                version = await host.backend.version()
            except OllamaError as err:
                if host.up:
                    self._down(host, err)
                continue
            host.version = version
            if not host.up:
                host.mark_up()
                self._wake()
            return version
        raise _unreachable(self.host)

    async def pull(self, model: str, hosts: Sequence[str] = ()) -> AsyncIterator[PullProgress]:
        """Pull ``model`` to the named hosts (all when none is named), one after the other.

        Each report's status starts with the host's address. A host that fails does not stop
        the others.

        Raises:
            InputRejected: A named host is not one of the configured hosts.
            OllamaError: At the end, when the pull failed on some host (names them).
        """
        targets = select_hosts([h.url for h in self._hosts], hosts)
        failed: list[str] = []
        for host in [h for h in self._hosts if h.url in targets]:
            short = short_host(host.url)
            try:
                async for step in host.backend.pull(model):
                    yield step.model_copy(update={"status": f"{short}: {step.status}"})
            except OllamaError as err:
                failed.append(short)
                yield PullProgress(status=f"{short}: error: {err.user_message}")
                continue
            await self._list(host)
        if failed:
            raise OllamaError(
                f"Pulling '{model}' failed on {', '.join(failed)} "
                f"({len(targets) - len(failed)} of {len(targets)} hosts have it).",
                retryable=False,
            )
        yield PullProgress(status=f"success: {model} is on {len(targets)} host(s)")


def _unreachable(where: str, detail: str = "no Ollama host answers") -> OllamaUnavailableError:
    return OllamaUnavailableError(where, detail=detail, hint=HOSTS_HINT)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
