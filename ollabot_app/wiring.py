"""Building the running parts from the configuration: the engine, and the adapters to start.

Adapters are imported lazily: a deployment that only uses Matrix never loads discord.py, and the
import of one adapter can never break another.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bot.config import BotConfig, describe_validation_error
from bot.conversation.engine import Engine
from bot.errors import ConfigError, StoreError
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatModel
from bot.model.router import RoutedChatModel
from bot.store.port import Store
from bot.store.postgres import PostgresStore, redact_url
from bot.store.sqlite import SqliteStore

__all__ = [
    "AdapterStatus",
    "adapter_statuses",
    "describe_store",
    "instance_name",
    "make_model",
    "make_store",
    "open_engine",
]

AdapterMain = Callable[[Engine], Coroutine[Any, Any, None]]
_M = TypeVar("_M", bound=BaseModel)
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdapterStatus:
    """Whether one platform adapter is configured and has what it needs to start.

    Attributes:
        name: ``discord`` or ``matrix``.
        configured: The config has the adapter's table.
        summary: One line for ``ollabot check`` (never a secret).
        problem: What is missing or wrong, ``None`` when it can start.
        start: Runs the adapter until cancelled; ``None`` when it cannot start.
        details: More lines for ``ollabot check``: ``(healthy, what, text)``.
    """

    name: str
    configured: bool
    summary: str
    problem: str | None = None
    start: AdapterMain | None = None
    details: tuple[tuple[bool, str, str], ...] = ()


def make_model(config: BotConfig) -> ChatModel:
    """The Ollama backend the configuration points at: one host, or a router over ``hosts``.

    With ``ollama.hosts`` set, a ``host`` given in the file or ``OLLAMA_HOST`` is ignored, with
    a warning.
    """
    ollama = config.ollama
    if ollama.hosts is None:
        return OllamaChatModel(ollama.host, connect_timeout=ollama.connect_timeout)
    if ollama.ignored_host is not None:
        logger.warning(
            "ollama.hosts is set, so ollama.host / OLLAMA_HOST (%s) is ignored",
            ollama.ignored_host,
        )
    return RoutedChatModel(
        [OllamaChatModel(url, connect_timeout=ollama.connect_timeout) for url in ollama.hosts],
        max_parallel_per_host=ollama.max_parallel_per_host,
    )


def instance_name(config: BotConfig) -> str:
    """This process's name in a shared database: ``storage.instance``, else one made from the
    Discord shard ids (``discord-shards-0-1``), else ``main``."""
    if config.storage.instance:
        return config.storage.instance
    table = config.discord or {}
    shard_ids = table.get("shard_ids")
    if isinstance(shard_ids, list | tuple) and shard_ids:
        return "discord-shards-" + "-".join(str(i) for i in shard_ids)
    return "main"


def describe_store(config: BotConfig) -> str:
    """Where the state lives, for messages (a PostgreSQL URL's password hidden)."""
    url = config.storage.database_url
    return f"the database is {redact_url(url)}" if url else f"storage.path is {config.storage.path}"


def make_store(config: BotConfig) -> Store:
    """The PostgreSQL store when a database URL is configured, else the SQLite file.

    Raises:
        StoreError: The SQLite file's directory cannot be created.
    """
    storage = config.storage
    instance = instance_name(config)
    if storage.database_url:
        return PostgresStore(storage.database_url, instance=instance, pool_size=storage.pool_size)
    directory = storage.path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the database's directory {directory}: {exc.strerror}."
        ) from exc
    return SqliteStore(storage.path, busy_timeout_ms=storage.busy_timeout_ms, instance=instance)


@asynccontextmanager
async def open_engine(config: BotConfig) -> AsyncIterator[Engine]:
    """An engine on Ollama and the configured store, started, and closed (gracefully) on exit.

    Closing lets in-flight replies finish for a grace period, marks the rest, and closes the
    backend and the store.
    """
    engine = Engine(make_model(config), make_store(config), config)
    try:
        await engine.start()
        yield engine
    finally:
        await engine.close()


def _validate(model: type[_M], table: dict[str, Any], *, prefix: str, source: str) -> _M:

    try:
        return model.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc, prefix=prefix, source=source), key=prefix
        ) from exc


def adapter_statuses(config: BotConfig, *, source: str) -> list[AdapterStatus]:
    """Discord's and Matrix's status, in that order.

    Args:
        config: The loaded configuration.
        source: The config file's name, for messages.
    """
    return [_discord(config, source), _matrix(config, source)]


def _discord(config: BotConfig, source: str) -> AdapterStatus:

    token = config.secrets.discord_token
    if config.discord is None:
        hint = " (DISCORD_TOKEN is set, but there is no [discord] table)" if token else ""
        return AdapterStatus("discord", False, f"not configured{hint}")
    try:
        from adapters.discord.config import DiscordConfig

        settings = _validate(DiscordConfig, config.discord, prefix="discord", source=source)
    except ConfigError as exc:
        return AdapterStatus("discord", True, "invalid", problem=exc.user_message)
    if token is None or not token.get_secret_value():
        return AdapterStatus(
            "discord",
            True,
            "token missing",
            problem="discord: set DISCORD_TOKEN in the environment",
        )
    secret = token.get_secret_value()

    async def start(engine: Engine) -> None:
        from adapters.discord import run_discord

        await run_discord(engine, settings, secret)

    return AdapterStatus("discord", True, "ready (DISCORD_TOKEN is set)", start=start)


def _matrix(config: BotConfig, source: str) -> AdapterStatus:

    secrets = config.secrets
    if config.matrix is None:
        return AdapterStatus("matrix", False, "not configured")
    try:
        from adapters.matrix.config import MatrixConfig
        from adapters.matrix.crypto import describe_store, with_default_store

        settings = _validate(MatrixConfig, config.matrix, prefix="matrix", source=source)
    except ConfigError as exc:
        return AdapterStatus("matrix", True, "invalid", problem=exc.user_message)
    settings = with_default_store(settings, config.storage.path)
    fine, text = describe_store(settings)
    encryption = (fine, "matrix encryption", text)
    token = secrets.matrix_access_token.get_secret_value() if secrets.matrix_access_token else None
    password = secrets.matrix_password.get_secret_value() if secrets.matrix_password else None
    if not token and not password:
        return AdapterStatus(
            "matrix",
            True,
            "credentials missing",
            problem="matrix: set MATRIX_ACCESS_TOKEN or MATRIX_PASSWORD in the environment",
            details=(encryption,),
        )
    how = "MATRIX_ACCESS_TOKEN" if token else "MATRIX_PASSWORD"

    async def start(engine: Engine) -> None:
        from adapters.matrix import run_matrix

        await run_matrix(engine, settings, access_token=token or None, password=password or None)

    return AdapterStatus(
        "matrix",
        True,
        f"ready ({settings.user_id} on {settings.homeserver}, {how} is set)",
        start=start,
        details=(encryption,),
    )
