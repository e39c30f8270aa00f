"""A bounded, expiring cache of whole model replies, keyed by the exact request.

Only deterministic requests (temperature 0, or a fixed seed) are cached by default: caching a
sampled reply would make the bot repeat itself where users expect variety.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from bot.model.port import ChatRequest
from bot.types import Message, Outcome, Response

__all__ = ["ResponseCache", "is_deterministic", "request_key"]


def _message_json(message: Message) -> dict[str, Any]:
    return {
        "role": message.role.value,
        "content": message.content,
        "images": [hashlib.sha256(image).hexdigest() for image in message.images],
        "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls],
    }


def request_key(request: ChatRequest) -> str:
    """The cache key of a request: sha256 of a canonical JSON of everything that shapes the reply.

    Covers the model, options, every message (role, content, image hashes, tool calls), tools,
    ``format`` and ``think``. ``keep_alive`` is left out: it does not change the reply.
    """
    canonical = {
        "model": request.model,
        "options": request.options,
        "messages": [_message_json(m) for m in request.messages],
        "tools": list(request.tools),
        "format": request.format,
        "think": request.think,
    }
    text = json.dumps(
        canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the same request should give the same reply: temperature 0 or a fixed seed."""
    options = request.options
    if options.get("seed") is not None:
        return True
    temperature = options.get("temperature")
    return temperature is not None and float(temperature) == 0.0


class ResponseCache:
    """Replies to repeated requests, bounded by count and age. Implements ``ResponseCacheLike``.

    Args:
        max_entries: At most this many replies are kept; the least recently used goes first.
        ttl_seconds: A reply is forgotten this long after it was stored.
        cache_nondeterministic: Also cache sampled (temperature > 0, no seed) requests.
        timer: The clock entries age by (seconds); tests may pass their own.

    Attributes:
        hits: Lookups that found a reply.
        misses: Cacheable lookups that found nothing (uncacheable requests count as neither).
    """

    def __init__(
        self,
        max_entries: int = 256,
        ttl_seconds: float = 600,
        cache_nondeterministic: bool = False,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._entries: TTLCache[str, Response] = TTLCache(
            maxsize=max_entries, ttl=ttl_seconds, timer=timer
        )
        # TTLCache is not thread-safe; a batch run from worker threads must not corrupt it.
        self._lock = threading.Lock()
        self.cache_nondeterministic = cache_nondeterministic
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def cacheable(self, request: ChatRequest) -> bool:
        """Whether this cache would store a reply to ``request``."""
        return self.cache_nondeterministic or is_deterministic(request)

    def get(self, request: ChatRequest) -> Response | None:
        """The stored reply to ``request`` (marked ``cached=True``), or ``None``."""
        if not self.cacheable(request):
            return None
        key = request_key(request)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
        return found.model_copy(update={"cached": True})

    def put(self, request: ChatRequest, response: Response) -> None:
        """Store ``response`` for ``request`` if the request is cacheable and the reply complete.

        Stopped, interrupted or failed replies are never stored: a retry should get a whole one.
        """
        if not self.cacheable(request) or response.outcome is not Outcome.COMPLETE:
            return
        if response.tool_calls:
            # A reply that asks for tools depends on the world (time, files); ask again next time.
            return
        with self._lock:
            self._entries[request_key(request)] = response.model_copy(update={"cached": False})

    def clear(self) -> None:
        """Forget every stored reply (counters are kept)."""
        with self._lock:
            self._entries.clear()
