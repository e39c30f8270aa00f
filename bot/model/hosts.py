"""One Ollama host as the router sees it (installed, loaded, how busy, up or down), and the rule
that picks a host for a request (:func:`choose`).

:class:`bot.model.router.RoutedChatModel` keeps one :class:`HostState` per configured host. The
state is plain bookkeeping, changed only from the event loop: no locks. What it holds comes from
the host itself (``/api/tags`` for installed models, ``/api/ps`` for loaded ones, ``/api/version``
as the health probe) and from what the router saw (a request that went through, a refused
connection).

A host that failed is *down*: the router sends it nothing and checks it again after a backoff
that doubles from ``recheck_initial`` up to ``recheck_max`` seconds; a check that passes brings it
back with a fresh list of its models.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final, Protocol

from bot.errors import (
    GenerationTimeout,
    ModelNotFoundError,
    OllamaError,
    OllamaUnavailableError,
)
from bot.model.port import ChatDelta, ChatRequest, HostStatus
from bot.types import ModelInfo, PullProgress

__all__ = ["WAIT", "HostBackend", "HostState", "Wait", "choose", "is_host_failure", "model_key"]

log = logging.getLogger(__name__)


class HostBackend(Protocol):
    """What the router needs from one host's backend (``OllamaChatModel`` has it all)."""

    @property
    def host(self) -> str: ...

    def chat(self, request: ChatRequest) -> AsyncIterator[ChatDelta]: ...

    async def show(self, model: str) -> ModelInfo: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def loaded_models(self) -> list[str]: ...

    def pull(self, model: str, hosts: Sequence[str] = ()) -> AsyncIterator[PullProgress]: ...

    async def version(self) -> str: ...

    async def close(self) -> None: ...


def model_key(name: str) -> str:
    """Ollama's naming: a model named without a tag is ``:latest``."""
    return name if ":" in name else f"{name}:latest"


def is_host_failure(error: OllamaError) -> bool:
    """Whether ``error``, raised before any token, says the *host* failed (try another one).

    A refused connection, HTTP 5xx or 429, an error line or a connection dropped before the
    first token: the same request may well succeed elsewhere. A missing model, a rejected
    request (4xx) or a timeout are not the host's fault in that sense.
    """
    if isinstance(error, ModelNotFoundError | GenerationTimeout):
        return False
    return bool(error.retryable)


class HostState:
    """The router's view of one host. See the module docstring.

    Args:
        backend: The host's own backend.
        cap: At most this many generations at once on this host.
        recheck_initial: Seconds before the first check of a host that went down.
        recheck_max: The longest wait between two checks.
        clock: Monotonic clock in seconds.
    """

    def __init__(
        self,
        backend: HostBackend,
        *,
        cap: int,
        recheck_initial: float,
        recheck_max: float,
        clock: Callable[[], float],
    ) -> None:
        self.backend = backend
        self.url = backend.host
        self.cap = cap
        self.in_flight = 0
        self.up = True
        self.detail: str | None = None  # why it is down
        self.version: str | None = None
        self.models: dict[str, ModelInfo] | None = None  # None: never listed
        self.loaded: set[str] = set()
        self.listed_at = -math.inf
        self.failures = 0
        self.next_check = 0.0
        self.chosen = 0  # times chosen, to spread ties
        self._recheck_initial = recheck_initial
        self._recheck_max = recheck_max
        self._clock = clock

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<HostState {self.url} {state} {self.in_flight}/{self.cap}>"

    # -- what it has -------------------------------------------------------------------------

    def has(self, model: str) -> bool:
        """Whether the host was last seen with ``model`` installed."""
        return self.models is not None and model_key(model) in self.models

    def may_have(self, model: str) -> bool:
        """Whether the host has ``model`` or was never listed (so it may have it)."""
        return self.models is None or model_key(model) in self.models

    def has_loaded(self, model: str) -> bool:
        return model_key(model) in self.loaded

    @property
    def free(self) -> bool:
        return self.in_flight < self.cap

    def forget(self, model: str) -> None:
        """The host said it does not have ``model`` (removed since it was listed)."""
        key = model_key(model)
        if self.models is not None:
            self.models.pop(key, None)
        self.loaded.discard(key)

    async def refresh(self) -> None:
        """List the host's installed and loaded models (``/api/tags``, ``/api/ps``).

        Raises:
            OllamaError: The host failed or cannot be reached (the caller marks it down).
        """
        listed = await self.backend.list_models()
        loaded = await self.backend.loaded_models()
        self.models = {model_key(m.name): m for m in listed if m.name}
        self.loaded = {model_key(name) for name in loaded}
        self.listed_at = self._clock()

    async def probe(self) -> None:
        """Check the host's health and, when it answers, refresh what it has.

        Raises:
            OllamaError: The host is still failing.
        """
        self.version = await self.backend.version()
        await self.refresh()

    # -- health ------------------------------------------------------------------------------

    def mark_down(self, error: OllamaError) -> None:
        """The host failed: send it nothing until a check passes (backoff doubles each time)."""
        self.failures += 1
        wait = min(self._recheck_max, self._recheck_initial * 2.0 ** (self.failures - 1))
        self.next_check = self._clock() + wait
        # The host's own "unreachable" message points at OLLAMA_HOST, ignored with several hosts.
        unreachable = isinstance(error, OllamaUnavailableError)
        self.detail = f"Cannot reach Ollama at {self.url}." if unreachable else error.user_message
        if self.up:
            log.warning(
                "ollama host %s is down, checking again in %.1f s: %s",
                self.url,
                wait,
                error.detail,
                extra={"ollama_host": self.url},
            )
        self.up = False

    def mark_up(self) -> None:
        if not self.up:
            log.warning("ollama host %s is back", self.url, extra={"ollama_host": self.url})
        self.up = True
        self.failures = 0
        self.detail = None

    def status(self) -> HostStatus:
        """What ``ollabot check`` and ``model list`` show for this host."""
        return HostStatus(
            url=self.url,
            up=self.up,
            version=self.version,
            models=tuple(sorted(self.models or ())),
            loaded=tuple(sorted(self.loaded)),
            in_flight=self.in_flight,
            cap=self.cap,
            detail=self.detail,
        )


class Wait:
    """What :func:`choose` says when every suitable host is at its cap: wait for a change."""


WAIT: Final = Wait()


def choose(
    hosts: Sequence[HostState], model: str, tried: Sequence[HostState]
) -> HostState | Wait | None:
    """The host to send a request for ``model`` to (the rule in :mod:`bot.model.router`).

    Args:
        hosts: Every host, in configured order.
        model: The model asked for.
        tried: Hosts that already failed this request.

    Returns:
        The host; :data:`WAIT` when the suitable ones are all busy; ``None`` when no host can
        serve ``model`` (none has it, or all that have it failed this request).
    """
    live = [h for h in hosts if h.up and h not in tried and h.has(model)]
    if not live:
        # Every host with the model is down: try one anyway, its next check may be late.
        down = [h for h in hosts if not h.up and h not in tried and h.may_have(model)]
        free = [h for h in down if h.free]
        if free:
            return min(free, key=lambda h: h.next_check)
        return WAIT if down else None
    loaded = [h for h in live if h.has_loaded(model)]
    ready = [h for h in loaded if h.free]
    if ready:
        return _least_busy(ready)
    cold = [h for h in live if not h.has_loaded(model) and h.free]
    if not loaded:
        return _least_busy(cold) if cold else WAIT
    # Every host with it loaded is full: a cold load only on an idle host, else wait.
    idle = [h for h in cold if h.in_flight == 0]
    return _least_busy(idle) if idle else WAIT


def _least_busy(hosts: Sequence[HostState]) -> HostState:
    """Fewest generations in flight; among equals, the one chosen least often (spreads ties)."""
    return min(hosts, key=lambda h: (h.in_flight, h.chosen))
