"""The bot's configuration: one typed, frozen model, read once at the edge (the command line).

Non-secret settings come from ``config/bot.toml``; secrets and hosts come from the environment
(``DISCORD_TOKEN``, ``MATRIX_ACCESS_TOKEN``, ``MATRIX_PASSWORD``, ``OLLAMA_HOST``,
``OLLABOT_DATABASE_URL``) through pydantic-settings, and so do the variables an MCP server's
``env`` names. No other module reads the environment. A bad file or value raises
:class:`bot.errors.ConfigError` naming the key and what is wrong; secrets are never printed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.types import DEFAULT_CONTEXT_LENGTH, MIN_CONTEXT_LENGTH, ChatMode

DEFAULT_CONFIG_PATH = Path("config/bot.toml")
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value:
        raise ValueError("must not be empty")
    if "://" not in value:
        value = f"http://{value}"
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class OllamaConfig(_Frozen):
    """Where Ollama is and how long to wait for it (seconds).

    ``hosts`` lists several Ollama servers to route between; when it is set, ``host`` (and
    ``OLLAMA_HOST``) are ignored. ``max_parallel_per_host`` caps the generations the bot runs at
    once on each of them (Ollama's own ``OLLAMA_NUM_PARALLEL`` default is 4).
    """

    host: str = DEFAULT_OLLAMA_HOST
    hosts: tuple[str, ...] | None = None
    max_parallel_per_host: int = Field(default=4, ge=1, le=64)
    connect_timeout: float = Field(default=5.0, gt=0)
    first_token_timeout: float = Field(default=120.0, gt=0)
    between_tokens_timeout: float = Field(default=60.0, gt=0)
    total_timeout: float = Field(default=600.0, gt=0)
    retry_attempts: int = Field(default=3, ge=1, le=10)
    retry_initial_backoff: float = Field(default=0.5, gt=0)
    retry_max_backoff: float = Field(default=8.0, gt=0)

    @field_validator("host")
    @classmethod
    def _host_is_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("hosts")
    @classmethod
    def _hosts_are_urls(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one host (or leave it out to use ollama.host)")
        urls = tuple(_url(v) for v in value)
        if len(set(urls)) != len(urls):
            raise ValueError("names a host twice")
        return urls

    @property
    def host_urls(self) -> tuple[str, ...]:
        """The Ollama servers in use: ``hosts`` when set, else ``host`` alone."""
        return self.hosts if self.hosts is not None else (self.host,)

    @property
    def ignored_host(self) -> str | None:
        """The ``host`` (from the file or ``OLLAMA_HOST``) that ``hosts`` overrides, if one was
        given: the bot warns about it at start."""
        if self.hosts is not None and "host" in self.model_fields_set:
            return self.host
        return None


class DefaultsConfig(_Frozen):
    """The bottom of the settings cascade: what a channel gets before a moderator changes it."""

    model: str = "llama3.2"
    mode: ChatMode = ChatMode.BALANCED
    system_prompt: str = "You are a helpful assistant in a group chat. Be concise."
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    num_predict: int | None = None
    chain_num_predict: int = Field(default=1024, ge=1)
    # The context window (num_ctx) every request runs with, capped at the model's maximum.
    context_length: int = Field(default=DEFAULT_CONTEXT_LENGTH, ge=MIN_CONTEXT_LENGTH)
    think: bool = False
    show_thinking: bool = False
    tools: bool = True


class LimitsConfig(_Frozen):
    """How much the bot takes on at once."""

    max_concurrent_generations: int = Field(default=4, ge=1, le=64)
    user_messages_per_minute: float = Field(default=10.0, gt=0)
    user_commands_per_minute: float = Field(default=20.0, gt=0)
    max_queue_per_session: int = Field(default=5, ge=1)
    max_waiting_turns: int = Field(default=64, ge=1)
    queue_notice_delay: float = Field(default=1.5, ge=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    max_input_chars: int = Field(default=4096, ge=1)
    max_attachment_chars: int = Field(default=20_000, ge=0)
    reply_reserve_tokens: int = Field(default=1024, ge=0)


class StorageConfig(_Frozen):
    """Where the state lives: a SQLite file (the default) or a PostgreSQL server.

    Attributes:
        path: The SQLite file, used unless ``url`` is set.
        busy_timeout_ms: How long a SQLite write waits for another process's lock.
        url: A ``postgresql://`` URL: several bot processes then share one database. The
            ``OLLABOT_DATABASE_URL`` environment variable (which keeps the password out of the
            file) wins over it. Never printed.
        instance: This process's name among the processes sharing the database; after a crash
            a process marks only its own cut replies. Default: made from the Discord shard ids
            (``discord-shards-0-1``), else ``main``.
        pool_size: The most PostgreSQL connections this process opens.
    """

    path: Path = Path("ollabot.db")
    busy_timeout_ms: int = Field(default=5000, ge=0)
    url: SecretStr | None = None
    instance: str | None = Field(default=None, min_length=1, max_length=100)
    pool_size: int = Field(default=10, ge=1, le=100)
    retention_days: float = Field(default=90.0, gt=0)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().startswith(_POSTGRES_SCHEMES):
            raise ValueError("must be a postgresql:// URL")
        return SecretStr(value.get_secret_value().strip())

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL URL with its password (for the driver only), or ``None`` (SQLite)."""
        return None if self.url is None else self.url.get_secret_value()


def url_password(url: str | None) -> str | None:
    """The password inside a database URL, for log redaction (``None`` when there is none)."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class LoggingConfig(_Frozen):
    """Logging: JSON lines to stderr by default; message bodies only when opted in."""

    level: str = "INFO"
    json_format: bool = True
    log_bodies: bool = False

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class McpServerConfig(_Frozen):
    """One MCP server: a command the bot starts (stdio) or a URL (streamable HTTP).

    ``env`` maps the variable the server sees to the name of the bot's environment variable that
    holds its value, so secrets stay out of the file (and out of the logs).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if self.url is not None and (self.env or self.args):
            raise ValueError("env and args apply to a command, not to a url")
        for server_var, bot_var in self.env.items():
            if not _ENV_NAME.match(server_var) or not _ENV_NAME.match(bot_var):
                raise ValueError("env maps variable names to variable names (letters, _, digits)")
        return self


class McpConfig(_Frozen):
    """Tools from MCP servers, and the bounds on every reply's tool use."""

    servers: tuple[McpServerConfig, ...] = ()
    max_result_chars: int = Field(default=8000, ge=100, le=1_000_000)
    max_tool_rounds: int = Field(default=4, ge=1, le=32)
    total_tool_seconds: float = Field(default=120.0, gt=0)

    @field_validator("servers")
    @classmethod
    def _unique_names(cls, servers: tuple[McpServerConfig, ...]) -> tuple[McpServerConfig, ...]:
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError("server names must be unique")
        return servers


class Secrets(BaseSettings):
    """Secrets and hosts from the environment. Never printed (``SecretStr``)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    matrix_access_token: SecretStr | None = Field(
        default=None, validation_alias="MATRIX_ACCESS_TOKEN"
    )
    matrix_password: SecretStr | None = Field(default=None, validation_alias="MATRIX_PASSWORD")
    ollama_host: str | None = Field(default=None, validation_alias="OLLAMA_HOST")
    database_url: SecretStr | None = Field(default=None, validation_alias="OLLABOT_DATABASE_URL")
    # The values of the variables named in ``[[mcp.servers]].env``, by variable name: read by
    # :func:`load_config`, never from a field of the file.
    mcp_env: dict[str, SecretStr] = Field(default_factory=dict, exclude=True)

    def values(self) -> list[str]:
        """Every secret value that is set, for log redaction."""
        found = [self.discord_token, self.matrix_access_token, self.matrix_password]
        found += self.mcp_env.values()
        values = [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]
        url = self.database_url.get_secret_value() if self.database_url else None
        password = url_password(url)
        return [*values, url, password] if url and password else values


class BotConfig(_Frozen):
    """The whole configuration.

    ``discord`` and ``matrix`` stay raw tables here: the engine does not know the adapters'
    settings; the command line validates each table with its adapter's own model.
    """

    ollama: OllamaConfig = OllamaConfig()
    defaults: DefaultsConfig = DefaultsConfig()
    limits: LimitsConfig = LimitsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    mcp: McpConfig = McpConfig()
    discord: dict[str, Any] | None = None
    matrix: dict[str, Any] | None = None
    secrets: Secrets = Field(default_factory=lambda: Secrets.model_validate({}), exclude=True)

    def secret_values(self) -> list[str]:
        """Every secret to keep out of the logs: the environment's, and a database password."""
        url = self.storage.database_url
        password = url_password(url)
        extra = [url, password] if url and password else []
        return [*self.secrets.values(), *extra]


def describe_validation_error(error: ValidationError, *, prefix: str = "", source: str) -> str:
    """One line naming the first bad key and what is wrong with it (never the value)."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if prefix:
        key = f"{prefix}.{key}"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against config/bot.example.toml)"
    more = len(error.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {key}: {msg}{tail}"


def load_config(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> BotConfig:
    """Read the TOML file (optional: defaults when it is missing) and the environment.

    Args:
        path: The TOML file; ``config/bot.toml`` when ``None``. A missing default file is fine;
            a missing file named explicitly is an error.
        env: The environment to read secrets from; ``os.environ`` when ``None``.

    Raises:
        ConfigError: naming the key and the problem.
    """
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    elif explicit:
        raise ConfigError(f"{path}: no such file")

    try:
        secrets = Secrets() if env is None else Secrets.model_validate(dict(env))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source="environment")) from exc

    if secrets.ollama_host:
        data.setdefault("ollama", {})
        if isinstance(data["ollama"], dict):
            data["ollama"] = {**data["ollama"], "host": secrets.ollama_host}
    if secrets.database_url and secrets.database_url.get_secret_value().strip():
        data.setdefault("storage", {})
        if isinstance(data["storage"], dict):
            url = secrets.database_url.get_secret_value()
            data["storage"] = {**data["storage"], "url": url}
    try:
        config = BotConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source=str(path))) from exc
    source = os.environ if env is None else env
    mcp_env: dict[str, SecretStr] = {}
    for i, server in enumerate(config.mcp.servers):
        for server_var, bot_var in server.env.items():
            value = source.get(bot_var)
            if value is None:
                raise ConfigError(
                    f"{path}: mcp.servers.{i}.env.{server_var}: the environment variable "
                    f"{bot_var} is not set",
                    key=f"mcp.servers.{i}.env.{server_var}",
                )
            mcp_env[bot_var] = SecretStr(value)
    if mcp_env:
        secrets = secrets.model_copy(update={"mcp_env": mcp_env})
    return config.model_copy(update={"secrets": secrets})
