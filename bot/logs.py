"""Structured JSON logs through stdlib logging, with secrets removed from every record.

:func:`configure_logging` installs one handler on the root logger. Its :class:`RedactionFilter`
rewrites each record before it is formatted: the message, every extra field and the exception
text lose anything that looks like a credential (Discord bot tokens, ``Authorization`` values,
``access_token``/``password`` fields, Matrix ``syt_`` tokens) and every exact secret passed to
:func:`register_secret` at start-up. Message bodies (what users wrote, what the model said) are
only logged when ``log_bodies`` is on.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

__all__ = [
    "BODY_FIELDS",
    "REDACTED",
    "RedactionFilter",
    "Redactor",
    "configure_logging",
    "log_interaction",
    "redact",
    "register_secret",
    "shutdown_logging",
]

REDACTED = "[REDACTED]"
BODY_FIELDS = frozenset({"prompt", "reply"})
# Fields whose value is a secret whatever it looks like.
_SECRET_KEYS = re.compile(
    r"^(?:password|passwd|access_token|refresh_token|token|api_key|secret|authorization)$",
    re.IGNORECASE,
)


def _keep_scheme(match: re.Match[str]) -> str:
    scheme = f"{match[2]} " if match[2] else ""
    return f"{match[1]}{scheme}{REDACTED}"


_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Discord bot token: base64 user id . timestamp . HMAC.
    (re.compile(r"[A-Za-z0-9_-]{24,}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"), REDACTED),
    # Matrix access and refresh tokens (Synapse's syt_/syr_ format).
    (re.compile(r"\bsy[tr]_[A-Za-z0-9_-]+"), REDACTED),
    # Authorization header values, in headers, dict reprs or JSON.
    (
        re.compile(
            r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|bot|basic)\s+)?[^\s\"',}]+"
        ),
        _keep_scheme,
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # key=value and "key": "value" forms of credential fields.
    (
        re.compile(
            r"(?i)((?:access_token|refresh_token|password|passwd|api_key)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"'&,}]+"
        ),
        rf"\1{REDACTED}",
    ),
)
_MIN_SECRET_LEN = 4
# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class Redactor:
    """Removes credentials from text: known patterns plus registered exact secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Redact every occurrence of ``secret`` from now on (ignored if shorter than 4)."""
        if not secret or len(secret) < _MIN_SECRET_LEN:
            return
        with self._lock:
            # Longest first, so a secret containing another is removed whole.
            self._secrets = tuple(sorted({*self._secrets, secret}, key=len, reverse=True))

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``[REDACTED]``."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        """Redact a field value: strings, and strings inside dicts, lists and tuples."""
        if key is not None and _SECRET_KEYS.match(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else is rendered as text by the formatter; redact that text now.
        return self.text(str(value))


_DEFAULT_REDACTOR = Redactor()


class _LogState:
    """Process-wide logging choices made once by :func:`configure_logging`."""

    log_bodies = False
    handler: logging.Handler | None = None


_STATE = _LogState()


def register_secret(value: str) -> None:
    """Never log ``value``: call once at start-up for every token and password in the config."""
    _DEFAULT_REDACTOR.add(value)


def redact(text: str) -> str:
    """``text`` with credentials and registered secrets replaced by ``[REDACTED]``."""
    return _DEFAULT_REDACTOR.text(text)


class RedactionFilter(logging.Filter):
    """Rewrites records so no handler after it sees a secret. Never drops a record.

    Args:
        redactor: What to remove (default: the process-wide one fed by :func:`register_secret`).
        log_bodies: Keep the ``prompt``/``reply`` fields; otherwise they are removed.
    """

    def __init__(self, redactor: Redactor | None = None, *, log_bodies: bool = False) -> None:
        super().__init__()
        self.redactor = redactor or _DEFAULT_REDACTOR
        self.log_bodies = log_bodies

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A bad format string: keep what was logged, as text, rather than lose the record.
            message = f"{record.msg} {record.args}"
        if isinstance(record.msg, dict) and not record.args:
            # python-json-logger merges a dict message into the record: keep it a dict.
            record.msg = self.redactor.value(record.msg)
        else:
            record.msg = self.redactor.text(message)
        record.args = None

        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)

        for key in list(record.__dict__):
            if key in _STANDARD_ATTRS:
                continue
            if key in BODY_FIELDS and not self.log_bodies:
                delattr(record, key)
                continue
            setattr(record, key, self.redactor.value(record.__dict__[key], key))
        return True


def configure_logging(
    level: str | int = "INFO",
    *,
    stream: IO[str] | None = None,
    json: bool = True,
    log_bodies: bool = False,
) -> logging.Handler:
    """Send every log record, redacted, to ``stream`` as one JSON object a line (or plain text).

    Calling it again replaces the handler it installed before (not anybody else's).

    Args:
        level: The root logger's level.
        stream: Where to write (default ``sys.stderr``).
        json: One JSON object per line; ``False`` for human-readable lines.
        log_bodies: Include what users wrote and what the model replied in interaction records.

    Returns:
        The installed handler (remove it from the root logger to undo).
    """
    root = logging.getLogger()
    if _STATE.handler is not None:
        root.removeHandler(_STATE.handler)
        _STATE.handler.close()

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactionFilter(log_bodies=log_bodies))
    if json:
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    _STATE.handler = handler
    _STATE.log_bodies = log_bodies
    return handler


def shutdown_logging() -> None:
    """Remove and close the handler :func:`configure_logging` installed; bodies off again."""
    if _STATE.handler is not None:
        logging.getLogger().removeHandler(_STATE.handler)
        _STATE.handler.close()
        _STATE.handler = None
    _STATE.log_bodies = False


def log_interaction(
    logger: logging.Logger,
    *,
    session: str,
    model: str,
    mode: str,
    prompt_tokens: int,
    eval_tokens: int,
    ttft: float | None,
    tokens_per_second: float | None,
    outcome: str,
    prompt: str | None = None,
    reply: str | None = None,
    queue_wait: float | None = None,
) -> None:
    """Write one INFO record describing one exchange with the model.

    The record's fields: ``event="interaction"``, ``session``, ``model``, ``mode``,
    ``prompt_tokens``, ``eval_tokens``, ``ttft`` (seconds to the first token),
    ``tokens_per_second``, ``outcome``; plus ``prompt`` and ``reply`` only when logging was
    configured with ``log_bodies=True``; plus ``queue_wait`` (seconds the turn waited for its
    session and a generation slot) when given.
    """
    extra: dict[str, Any] = {
        "event": "interaction",
        "session": str(session),
        "model": model,
        "mode": str(mode),
        "prompt_tokens": prompt_tokens,
        "eval_tokens": eval_tokens,
        "ttft": None if ttft is None else round(ttft, 4),
        "tokens_per_second": None if tokens_per_second is None else round(tokens_per_second, 2),
        "outcome": str(outcome),
    }
    if queue_wait is not None:
        extra["queue_wait"] = round(queue_wait, 4)
    if _STATE.log_bodies:
        if prompt is not None:
            extra["prompt"] = prompt
        if reply is not None:
            extra["reply"] = reply
    logger.info(
        "interaction %s model=%s outcome=%s", extra["session"], model, extra["outcome"], extra=extra
    )
