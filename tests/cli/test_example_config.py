"""``config/bot.example.toml`` is what the bot reads: every key in it parses, every key the
configuration models have is in it, and the value it shows is the default.

The file is read by the real loader (``load_config``) and the adapters' tables by the models the
command line validates them with, once as shipped (only the active keys) and once with every
commented-out table and key switched on, which is what a user gets by uncommenting them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from adapters.discord.config import DiscordConfig
from adapters.matrix.config import MatrixConfig
from bot.config import (
    BotConfig,
    DefaultsConfig,
    LimitsConfig,
    LoggingConfig,
    McpConfig,
    McpServerConfig,
    OllamaConfig,
    StorageConfig,
    load_config,
)
from ollabot_app.wiring import adapter_statuses
from tests.cli.runner import REPO

EXAMPLE = REPO / "config" / "bot.example.toml"

# A commented-out key or table: ``# key = value``, ``# [discord]``, ``# # device_id = "..."``.
_COMMENTED_KEY = re.compile(r"^(?:# ?)+(?=[A-Za-z_][A-Za-z0-9_]*\s*=|\[)", re.MULTILINE)

# Keys whose value in the example is an illustration, not the default (the default is unset).
_ILLUSTRATIONS = {
    "ollama.hosts",
    "defaults.temperature",
    "defaults.top_p",
    "defaults.seed",
    "defaults.num_predict",
    "storage.url",
    "storage.instance",
    "discord.shard_count",
    "discord.shard_ids",
    "matrix.homeserver",
    "matrix.user_id",
    "matrix.device_id",
    "matrix.crypto_store",
}

_TABLES: dict[str, type[BaseModel]] = {
    "ollama": OllamaConfig,
    "defaults": DefaultsConfig,
    "limits": LimitsConfig,
    "storage": StorageConfig,
    "logging": LoggingConfig,
    "mcp": McpConfig,
    "discord": DiscordConfig,
    "matrix": MatrixConfig,
}

# What the commented [[mcp.servers]] example's env names must find in the environment.
_ENV = {"FILES_API_KEY": "files-key", "DISCORD_TOKEN": "t0ken", "MATRIX_PASSWORD": "pw"}


def _everything_on(tmp_path: Path) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(_COMMENTED_KEY.sub("", EXAMPLE.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _tables(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_example_as_shipped_loads_to_exactly_the_defaults() -> None:
    config = load_config(EXAMPLE, env={})

    assert config.model_dump() == BotConfig().model_dump()
    assert config.discord is None
    assert config.matrix is None


def test_every_commented_key_parses_with_the_real_loader_and_the_adapters_models(
    tmp_path: Path,
) -> None:
    path = _everything_on(tmp_path)

    config = load_config(path, env=_ENV)

    assert config.ollama.hosts == ("http://gpu1:11434", "http://gpu2:11434")
    assert [s.name for s in config.mcp.servers] == ["files", "search"]
    assert config.storage.database_url is not None
    statuses = adapter_statuses(config, source=str(path))
    assert [(s.name, s.configured, s.problem) for s in statuses] == [
        ("discord", True, None),
        ("matrix", True, None),
    ]


def test_every_key_the_models_have_is_in_the_example(tmp_path: Path) -> None:
    tables = _tables(_everything_on(tmp_path))

    for name, model in _TABLES.items():
        assert set(tables[name]) == set(model.model_fields), name
    for server in tables["mcp"]["servers"]:
        assert set(server) <= set(McpServerConfig.model_fields)
    stdio, http = tables["mcp"]["servers"]
    assert set(stdio) | set(http) == set(McpServerConfig.model_fields)


@pytest.mark.parametrize("table", sorted(_TABLES))
def test_the_value_shown_for_a_key_is_its_default(tmp_path: Path, table: str) -> None:
    model = _TABLES[table]
    shown = _tables(_everything_on(tmp_path))[table]
    parsed = model.model_validate(shown)

    for key in shown:
        if f"{table}.{key}" in _ILLUSTRATIONS or key == "servers":
            continue
        default = model.model_fields[key].get_default(call_default_factory=True)
        assert getattr(parsed, key) == default, f"{table}.{key}"
