"""``ollabot check`` and ``ollabot models``: is everything the bot needs in place?

Neither prints a secret: only whether each one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from bot.config import BotConfig
from bot.conversation.tooling import hub_specs
from bot.errors import OllamaError, StoreError
from bot.model.mcp import McpHub
from bot.model.port import ChatModel, short_host
from bot.store.postgres import PostgresStore
from bot.types import ModelInfo
from ollabot_app.wiring import adapter_statuses, instance_name, make_model

__all__ = ["check", "list_models", "model_installed"]

OK, BAD, OFF = "ok", "!!", "--"


def model_installed(name: str, models: Sequence[ModelInfo | str]) -> bool:
    """Whether ``name`` is installed; ``llama3.2`` matches Ollama's ``llama3.2:latest``."""
    names = {m if isinstance(m, str) else m.name for m in models}
    return name in names or (":" not in name and f"{name}:latest" in names)


def _line(out: TextIO, mark: str, what: str, text: str) -> None:
    out.write(f"[{mark}] {what}: {text}\n")


async def check(config: BotConfig, *, source: str, out: TextIO | None = None) -> int:
    """Report on the config, Ollama, the default model, storage and each adapter.

    Args:
        out: Where the report goes; standard output as it is at the call when ``None``.

    Returns:
        0 when the bot can start as configured, 1 when something is missing.
    """
    out = out or sys.stdout  # looked up now, not at import: a test may have replaced it since
    healthy = True
    _line(out, OK, "config", f"{source} is valid")
    healthy &= await _check_ollama(config, out)

    if config.storage.database_url:
        healthy &= await _check_database(config, out)
    else:
        healthy &= _check_storage(config.storage.path, out)

    if config.mcp.servers:
        healthy &= await _check_mcp(config, out)

    for status in adapter_statuses(config, source=source):
        if not status.configured:
            _line(out, OFF, status.name, status.summary)
        elif status.problem:
            healthy = False
            _line(out, BAD, status.name, status.problem)
        else:
            _line(out, OK, status.name, status.summary)
        for fine, what, text in status.details:
            healthy &= fine
            _line(out, OK if fine else BAD, what, text)
    return 0 if healthy else 1


MCP_CHECK_SECONDS = 30.0


async def _check_mcp(config: BotConfig, out: TextIO) -> bool:
    """Start each MCP server once and list its tools (the values of ``env`` are never shown)."""
    hub = McpHub(hub_specs(config), connect_timeout=MCP_CHECK_SECONDS)
    names = hub.server_names
    with _reported_here(logging.getLogger(McpHub.__module__)):
        async with hub:
            with contextlib.suppress(TimeoutError):
                await hub.wait_for(
                    lambda h: all(h.status(n) == "up" or h.restarts(n) > 0 for n in names),
                    within=MCP_CHECK_SECONDS,
                )
            tools = hub.tools()
            statuses = {name: hub.status(name) for name in names}
    healthy = True
    for server in config.mcp.servers:
        where = f"stdio {server.command}" if server.command else f"http {_no_userinfo(server.url)}"
        status = statuses[server.name]
        if status == "up":
            count = sum(1 for t in tools if t.server == server.name)
            _line(out, OK, f"mcp {server.name}", f"up ({where}), {count} tools")
        else:
            healthy = False
            _line(out, BAD, f"mcp {server.name}", f"{status} ({where})")
    return healthy


@contextlib.contextmanager
def _reported_here(logger: logging.Logger) -> Iterator[None]:
    """Hold back ``logger``'s warnings while a probe runs whose outcome the report states.

    A server that is down makes the hub warn at each restart; the report's own line already
    says which server and why, so at the quiet default level (WARNING) those warnings would
    only repeat it between the report's lines. A lower ``--log-level`` still shows them.
    """
    if logger.getEffectiveLevel() <= logging.INFO:
        yield
        return
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _no_userinfo(url: str | None) -> str:
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def _check_database(config: BotConfig, out: TextIO) -> bool:
    url = config.storage.database_url
    assert url is not None
    store = PostgresStore(url, instance=instance_name(config), pool_size=1)
    try:
        async with store:
            found = await store.diagnostics()
    except StoreError as exc:
        # The operator reads this: the chat users' "ask the bot's operator" would be no help.
        _line(out, BAD, "storage", f"cannot open the database at {store.where}: {exc.detail}")
        return False
    server, schema = found["server_version"], found["schema_version"]
    _line(out, OK, "storage", f"PostgreSQL {server} at {store.where} (schema v{schema})")
    return True


def _check_storage(path: Path, out: TextIO) -> bool:
    directory = path.parent if str(path.parent) else Path(".")
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK):
        _line(out, OK, "storage", f"{path} is writable{_database_size(path)}")
        return True
    _line(out, BAD, "storage", f"cannot write to {existing} (storage.path is {path})")
    return False


def _database_size(path: Path) -> str:
    """How big the database is (the file and its write-ahead log), for the storage line."""
    files = [path, path.with_name(path.name + "-wal")]
    size = sum(f.stat().st_size for f in files if f.exists())
    if not path.exists():
        return " (no database yet)"
    return f" (database {size / 1e6:.1f} MB)" if size >= 100_000 else f" (database {size:,} bytes)"


async def _check_ollama(config: BotConfig, out: TextIO) -> bool:
    """One line per Ollama host (with its models when there are several), then the models and
    the default model. Healthy only when every host answers and one of them has the default."""
    model = make_model(config)
    try:
        hosts = await model.hosts()
    finally:
        await model.close()
    several = len(hosts) > 1
    for host in hosts:
        if not host.up:
            _line(out, BAD, "ollama", host.detail or f"Cannot reach Ollama at {host.url}.")
            continue
        _line(out, OK, "ollama", f"reachable at {host.url} (version {host.version})")
        if several:
            loaded = f" (loaded: {', '.join(host.loaded)})" if host.loaded else ""
            models = ", ".join(host.models) or "none"
            _line(out, OK if host.models else BAD, f"models on {short_host(host.url)}",
                  f"{models}{loaded}")  # fmt: skip
    up = [h for h in hosts if h.up]
    if not up:
        return False
    names = sorted({name for h in up for name in h.models})
    _line(out, OK if names else BAD, "models", ", ".join(names) or "none")
    default = config.defaults.model
    having = [h for h in up if model_installed(default, h.models)]
    if not having:
        _line(out, BAD, "default model", f"{default} is not installed: ollama pull {default}")
        return False
    where = f" on {len(having)} of {len(hosts)} hosts" if several else ""
    _line(out, OK, "default model", f"{default} is installed{where}")
    return len(up) == len(hosts)


async def list_models(config: BotConfig, *, out: TextIO | None = None) -> int:
    """Print the installed models, one a line: name, parameters, family, size, context, abilities;
    with several Ollama hosts, the hosts that have each model, then each host's state.

    Raises:
        OllamaError: Ollama cannot be reached or failed.
    """
    out = out or sys.stdout
    model = make_model(config)
    try:
        hosts = await model.hosts() if config.ollama.hosts else []
        listed = await model.list_models()
        # /api/tags leaves out context length and capabilities; /api/show has them.
        models = await asyncio.gather(*(_details(model, m) for m in listed))
    finally:
        await model.close()
    if not models:
        out.write(f"No models are installed in Ollama at {model.host}. ")
        out.write(f"Pull one with: ollama pull {config.defaults.model}\n")
        return 0
    several = len(hosts) > 1
    width = max(len(m.name) for m in models)
    for m in sorted(models, key=lambda m: m.name):
        size = f"{m.size / 1e9:.1f} GB" if m.size else ""
        details = [d for d in (m.parameter_size, m.family, size) if d]
        details.append(f"context {m.context_length}")
        caps = ", ".join(sorted(m.capabilities - {"completion"}))
        if caps:
            details.append(caps)
        if several:
            on = [short_host(h.url) for h in hosts if model_installed(m.name, h.models)]
            details.append(f"on {', '.join(on)}")
        out.write(f"{m.name.ljust(width)}  {'  '.join(details)}\n")
    if several:
        out.write("\n")
        for host in hosts:
            state = (
                f"up (version {host.version}), loaded: {', '.join(host.loaded) or 'none'}"
                if host.up
                else f"down: {host.detail}"
            )
            out.write(f"{short_host(host.url)}  {state}\n")
    return 0


async def _details(model: ChatModel, listed: ModelInfo) -> ModelInfo:
    try:
        shown = await model.show(listed.name)
    except OllamaError:
        # One model that cannot be described (removed meanwhile) still gets its line.
        return listed
    return shown.model_copy(update={"size": listed.size or shown.size})
