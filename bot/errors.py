"""The engine's exceptions. Third-party errors are translated into these once, at the edge.

Every error carries ``user_message``: one line fit to show a chat user, and ``detail``: what goes
in the logs. ``str(err)`` is the user message.

    OllabotError
    ├── OllamaError                     the model backend failed
    │   ├── ModelNotFoundError          the model is not installed (lists what is)
    │   ├── OllamaUnavailableError      cannot connect to Ollama (says where it looked)
    │   ├── GenerationTimeout           no token in time, or the whole reply took too long
    │   ├── StreamInterrupted           the stream broke after tokens were handed out
    │   └── ChatError                   a conversation-level failure, with context
    ├── InputRejected                   the user's input is not acceptable (says why)
    ├── PermissionDenied                the author may not do this (says why)
    ├── Busy                            queue or rate limit full (says when to retry)
    ├── RateLimited                     a platform said 429 (``retry_after`` seconds)
    ├── StoreError                      the database failed (locked, disk full)
    ├── ToolError                       a tool call failed (timed out, its server is down)
    ├── LeaseHeld                       another running process holds a lease (says which)
    └── ConfigError                     the configuration is invalid (names the key)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "Busy",
    "ChatError",
    "ConfigError",
    "GenerationTimeout",
    "InputRejected",
    "LeaseHeld",
    "ModelNotFoundError",
    "OllabotError",
    "OllamaError",
    "OllamaUnavailableError",
    "PermissionDenied",
    "RateLimited",
    "StoreError",
    "StreamInterrupted",
    "ToolError",
]


class OllabotError(Exception):
    """Base of every error the engine raises."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.detail = detail if detail is not None else user_message


class OllamaError(OllabotError):
    """The model backend failed."""

    retryable: bool = False

    def __init__(
        self,
        user_message: str = "The model backend failed.",
        *,
        detail: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable


class ModelNotFoundError(OllamaError):
    """The requested model is not installed in Ollama."""

    def __init__(self, model: str, available_models: Sequence[str] = ()) -> None:
        self.model = model
        self.available_models = tuple(available_models)
        installed = ", ".join(self.available_models) if self.available_models else "none"
        super().__init__(
            f"Model '{model}' is not installed. Installed models: {installed}.",
            status_code=404,
            retryable=False,
        )


class OllamaUnavailableError(OllamaError):
    """Ollama cannot be reached at all."""

    retryable = True

    def __init__(self, host: str, *, detail: str | None = None, hint: str | None = None) -> None:
        self.host = host
        if hint is None:
            hint = "Set OLLAMA_HOST or ollama.host in the config to point the bot elsewhere."
        super().__init__(f"Cannot reach Ollama at {host}. Is it running? {hint}", detail=detail)


class GenerationTimeout(OllamaError):
    """The model took too long: no first token, too long a gap, or too long in total."""

    def __init__(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.seconds = seconds
        super().__init__(
            f"The model took too long ({phase}: over {seconds:g} s).",
            retryable=False,
        )


class StreamInterrupted(OllamaError):
    """The stream broke after some tokens were handed out; the partial text is kept."""

    def __init__(self, partial: str, cause: str) -> None:
        self.partial = partial
        super().__init__(f"The reply was interrupted: {cause}", retryable=False)


class ChatError(OllamaError):
    """A conversation-level failure. ``context`` holds structured fields for the logs.

    A subclass of :class:`OllamaError`, as the seed declares it: ``except OllamaError`` around a
    chat catches it too. Never retried.
    """

    def __init__(self, message: str, context: dict[str, Any] | None = None) -> None:
        self.context = dict(context or {})
        super().__init__(
            message,
            detail=f"{message} {self.context}" if self.context else message,
            retryable=False,
        )


class InputRejected(OllabotError):
    """The input is not acceptable: empty, too long, or malformed. Never retried."""


class PermissionDenied(OllabotError):
    """The author may not do this; the message says why."""


class Busy(OllabotError):
    """The bot cannot take this now (rate limit or full queue); the message says when to retry."""

    def __init__(self, user_message: str, *, retry_after: float | None = None) -> None:
        super().__init__(user_message)
        self.retry_after = retry_after


class RateLimited(OllabotError):
    """A platform answered 429. Raised by reply surfaces; the streamer waits and goes on."""

    def __init__(self, retry_after: float, *, detail: str | None = None) -> None:
        super().__init__(f"Rate limited for {retry_after:.2f} s", detail=detail)
        self.retry_after = retry_after


class StoreError(OllabotError):
    """The database failed: locked, disk full, or corrupt."""


class ToolError(OllabotError):
    """A tool call failed: it timed out, its MCP server is down or went away, or it errored.

    The message goes back to the model (which may tell the user) and into the call's line.
    """


class LeaseHeld(OllabotError):
    """Another running process holds a lease this one needs (the one Matrix sync of an account).

    Attributes:
        name: The lease, e.g. ``matrix-sync:@bot:example.org``.
        instance: The holder's instance name (``storage.instance``).
        host: The holder's host name.
        pid: The holder's process id on that host.
        since: When the holder took the lease (UTC).
    """

    def __init__(self, name: str, *, instance: str, host: str, pid: int, since: datetime) -> None:
        self.name = name
        self.instance = instance
        self.host = host
        self.pid = pid
        self.since = since
        super().__init__(
            f"Another ollabot process holds {name} in this database: instance '{instance}', "
            f"pid {pid} on {host}, since {since:%Y-%m-%d %H:%M:%S} UTC."
        )


class ConfigError(OllabotError):
    """The configuration is invalid. The message names the key and what is wrong."""

    def __init__(self, user_message: str, *, key: str | None = None) -> None:
        super().__init__(user_message)
        self.key = key
