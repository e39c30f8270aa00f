"""When and how often to try a model call again: bounded attempts, exponential backoff, jitter.

Only errors that say so are retried (``retryable=True``: Ollama unreachable, HTTP 5xx/429, an error
line or a dropped connection before any text was shown). A missing model, rejected input or a
timeout is never retried: trying again would only make the user wait longer for the same answer.

The generation core retries only until the first chunk was handed out; after that a retry would
repeat text the user already saw.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from bot.errors import GenerationTimeout, InputRejected, ModelNotFoundError, OllabotError

__all__ = ["RetryPolicy", "is_retryable"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    """Whether trying the same call again may succeed.

    True only for our own errors that carry ``retryable=True``; never for a missing model,
    rejected input or a timeout, whatever their flag says.
    """
    if isinstance(error, ModelNotFoundError | InputRejected | GenerationTimeout):
        return False
    return isinstance(error, OllabotError) and bool(getattr(error, "retryable", False))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    The n-th wait is ``min(maximum, initial * 2**(n-1) + uniform(0, jitter))`` seconds.

    Attributes:
        attempts: Total tries, the first included (1 means no retry).
        initial: The first backoff, in seconds.
        maximum: The longest backoff, in seconds (before jitter).
        jitter: Up to this many random seconds added to each wait, so that many sessions
            failing together do not retry in lockstep. ``None`` means ``initial / 2``.
    """

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 8.0
    jitter: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("backoff must not be negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that tries once."""
        return cls(attempts=1)

    def retrying(self) -> AsyncRetrying:
        """A tenacity controller for this policy (raises the last error when attempts run out)."""
        jitter = self.initial / 2 if self.jitter is None else self.jitter
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=lambda state: self.backoff(state.attempt_number, jitter),
            retry=retry_if_exception(is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )

    def backoff(self, attempt: int, jitter: float = 0.0) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        # Our own formula rather than tenacity's wait_exponential_jitter, whose arguments
        # changed between the tenacity versions we accept.
        exponential: float = self.initial * 2.0 ** (attempt - 1)
        return min(self.maximum, exponential + random.uniform(0.0, jitter))

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()``, calling it again on retryable errors as this policy allows.

        Raises:
            OllabotError: The last error, once it is not retryable or attempts ran out.
        """

        async def attempt() -> T:
            return await fn()

        result: T = await self.retrying()(attempt)
        return result


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    detail = error.detail if isinstance(error, OllabotError) else repr(error)
    log.warning(
        "attempt %d failed, retrying in %.2f s: %s",
        state.attempt_number,
        wait,
        detail,
        extra={"attempt": state.attempt_number, "retry_in": wait},
    )
