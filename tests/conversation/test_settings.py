"""Settings cascade and command parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import DefaultsConfig
from bot.conversation.commands import (
    Cot,
    ModelList,
    ModelPull,
    ModelSet,
    ModeSet,
    Reset,
    SystemClear,
    SystemSet,
    ThinkSet,
    parse_command,
)
from bot.conversation.settings import (
    SettingKey,
    SettingsResolver,
    parse_value,
    scopes_for,
    target_scope,
)
from bot.errors import InputRejected
from bot.store.port import Scope, ScopeKind
from bot.store.sqlite import SqliteStore
from bot.turn import SessionKey
from bot.types import ChatMode

THREAD = SessionKey("discord", "chan", "thr")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "bot.db") as s:
        yield s


async def test_narrowest_scope_wins_and_reports_where_each_value_comes_from(
    store: SqliteStore,
) -> None:
    resolver = SettingsResolver(store, DefaultsConfig(model="base", mode=ChatMode.BALANCED))
    await store.set_setting(Scope("discord", ScopeKind.SERVER, "g"), "model", "server-model")
    await store.set_setting(Scope("discord", ScopeKind.ROOM, "chan"), "model", "room-model")
    await store.set_setting(Scope("discord", ScopeKind.ROOM, "chan"), "mode", "code")
    await store.set_setting(Scope("discord", ScopeKind.THREAD, "chan/thr"), "model", "thread-m")

    in_thread = await resolver.effective(THREAD, "g")
    assert in_thread.model == "thread-m"
    assert in_thread.sources[SettingKey.MODEL] == "thread"
    assert in_thread.mode is ChatMode.CODE
    assert in_thread.sources[SettingKey.MODE] == "room"

    other_room = await resolver.effective(SessionKey("discord", "other"), "g")
    assert other_room.model == "server-model"
    assert other_room.mode is ChatMode.BALANCED
    assert other_room.sources[SettingKey.MODE] == "default"

    await store.set_setting(Scope("discord", ScopeKind.THREAD, "chan/thr"), "model", None)
    assert (await resolver.effective(THREAD, "g")).model == "room-model"


def test_commands_in_a_thread_apply_to_the_thread_unless_a_scope_is_named() -> None:
    assert target_scope(THREAD, "g", None).kind is ScopeKind.THREAD
    assert target_scope(THREAD, "g", ScopeKind.ROOM) == Scope("discord", ScopeKind.ROOM, "chan")
    assert target_scope(SessionKey("discord", "chan"), "g", None).kind is ScopeKind.ROOM
    with pytest.raises(InputRejected, match="not in a server"):
        target_scope(SessionKey("console", "local"), None, ScopeKind.SERVER)
    assert [s.kind for s in scopes_for(THREAD, None)] == [ScopeKind.ROOM, ScopeKind.THREAD]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (SettingKey.MODE, "loud", "Unknown mode"),
        (SettingKey.TEMPERATURE, "hot", "temperature must be a number"),
        (SettingKey.TEMPERATURE, "3", "from 0 to 2"),
        (SettingKey.MODEL, "two words", "one word"),
        (SettingKey.SYSTEM_PROMPT, "x" * 5000, "limit is 4,000"),
        (SettingKey.THINK, "maybe", "on"),
    ],
)
def test_bad_setting_values_are_refused_with_a_reason(
    key: SettingKey, value: str, message: str
) -> None:
    with pytest.raises(InputRejected, match=message):
        parse_value(key, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model set qwen3:8b", ModelSet("qwen3:8b")),
        ("model set qwen3 --scope server", ModelSet("qwen3", ScopeKind.SERVER)),
        ("models", ModelList()),
        ("model pull llama3.2", ModelPull("llama3.2")),
        ("pull llama3.2", ModelPull("llama3.2")),
        ("model pull qwen3 gpu1 gpu2:11434", ModelPull("qwen3", ("gpu1", "gpu2:11434"))),
        ("mode precise", ModeSet("precise")),
        ("mode set CODE", ModeSet("code")),
        ("system set You are a pirate.  Arr!", SystemSet("You are a pirate.  Arr!")),
        ("system clear", SystemClear()),
        ("think on", ThinkSet(True)),
        ("cot What is 17 * 23?", Cot("What is 17 * 23?")),
        ("/reset", Reset()),
    ],
)
def test_command_text_parses_into_the_command(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["", "dance", "model set", "think maybe", "cot", "mode a b"])
def test_bad_command_text_is_refused_with_usage(text: str) -> None:
    with pytest.raises(InputRejected):
        parse_command(text)
