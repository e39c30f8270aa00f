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
    EffectiveSettings,
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
from bot.types import ChatMode, ModelConfig, ModelInfo

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


# --- each parser's edges and words (pinned: mutation testing found them unchecked) ---------------


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        (SettingKey.THINK, True, True),
        (SettingKey.THINK, False, False),
        *[(SettingKey.THINK, word, True) for word in ("on", " TRUE ", "yes", "1")],
        *[(SettingKey.SHOW_THINKING, word, False) for word in ("off", "False", "no", "0")],
        (SettingKey.TEMPERATURE, "0", 0.0),
        (SettingKey.TEMPERATURE, "2", 2.0),
        (SettingKey.TOP_P, "0.01", 0.01),
        (SettingKey.TOP_P, 1, 1.0),
        (SettingKey.SEED, "0", 0),
        (SettingKey.NUM_PREDICT, "1", 1),
        (SettingKey.CONTEXT_LENGTH, " 8,192 ", 8192),
        (SettingKey.CONTEXT_LENGTH, "1_048_576", 1 << 20),
        (SettingKey.CONTEXT_LENGTH, "512", 512),
        (SettingKey.MODEL, "  qwen3:8b ", "qwen3:8b"),
        (SettingKey.MODEL, "m" * 200, "m" * 200),
        (SettingKey.MODE, " PRECISE ", "precise"),
        (SettingKey.SYSTEM_PROMPT, "  Be kind.  ", "Be kind."),
        (SettingKey.SYSTEM_PROMPT, "x" * 4000, "x" * 4000),
        (SettingKey.SEED, None, None),
    ],
)
def test_values_at_the_edges_are_accepted_and_normalised(
    key: SettingKey, raw: object, expected: object
) -> None:
    assert parse_value(key, raw) == expected


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        (SettingKey.THINK, "maybe", "Say `on` or `off`."),
        (SettingKey.TEMPERATURE, "2.01", "temperature must be a number from 0 to 2."),
        (SettingKey.TEMPERATURE, "-0.01", "temperature must be a number from 0 to 2."),
        (SettingKey.TEMPERATURE, "warm", "temperature must be a number from 0 to 2."),
        (SettingKey.TOP_P, "0", "top_p must be a number from 0.01 to 1."),
        (SettingKey.TOP_P, [], "top_p must be a number from 0.01 to 1."),
        (SettingKey.SEED, "-1", "seed must be at least 0."),
        (SettingKey.SEED, "1.5", "seed must be a whole number."),
        (SettingKey.SEED, [], "seed must be a whole number."),
        (SettingKey.NUM_PREDICT, "0", "num_predict must be at least 1."),
        (
            SettingKey.CONTEXT_LENGTH,
            "lots",
            "context_length is a number of tokens from 512 to 1,048,576, like `8192`.",
        ),
        (
            SettingKey.CONTEXT_LENGTH,
            str((1 << 20) + 1),
            "context_length is a number of tokens from 512 to 1,048,576.",
        ),
        (SettingKey.CONTEXT_LENGTH, "511", "from 512"),
        (SettingKey.MODEL, "m" * 201, "A model name is one word"),
        (SettingKey.MODEL, "two words", "A model name is one word, like `llama3.2` or `qwen3:8b`."),
        (SettingKey.MODEL, "   ", "A model name is one word"),
        (SettingKey.MODE, "loud", "Unknown mode 'loud'. Modes: balanced, precise, creative, code."),
        (
            SettingKey.SYSTEM_PROMPT,
            "x" * 4001,
            "The system prompt is 4,001 characters; the limit is 4,000.",
        ),
        (SettingKey.SYSTEM_PROMPT, " ", "must not be empty (use `system clear` instead)."),
    ],
)
def test_values_past_the_edges_are_refused_with_the_rule(
    key: SettingKey, raw: object, message: str
) -> None:
    with pytest.raises(InputRejected) as refused:
        parse_value(key, raw)
    assert message in refused.value.user_message


@pytest.mark.parametrize(
    ("kind", "thread", "server", "expected"),
    [
        (None, None, "g", (ScopeKind.ROOM, "r")),
        (None, "t", "g", (ScopeKind.THREAD, "r/t")),
        (ScopeKind.SERVER, "t", "g", (ScopeKind.SERVER, "g")),
        (ScopeKind.ROOM, "t", None, (ScopeKind.ROOM, "r")),
    ],
)
def test_a_command_applies_to_the_named_scope_else_the_narrowest(
    kind: ScopeKind | None, thread: str | None, server: str | None, expected: tuple[ScopeKind, str]
) -> None:
    scope = target_scope(SessionKey("p", "r", thread), server, kind)
    assert (scope.platform, scope.kind, scope.id) == ("p", *expected)


@pytest.mark.parametrize(
    ("kind", "words"), [(ScopeKind.SERVER, "a server"), (ScopeKind.THREAD, "a thread")]
)
def test_a_scope_the_conversation_is_not_in_is_refused_by_name(kind: ScopeKind, words: str) -> None:
    with pytest.raises(InputRejected, match=f"This conversation is not in {words}."):
        target_scope(SessionKey("p", "r"), None, kind)


# --- what a conversation runs with (mutation testing of settings.py found these unchecked) --------


async def test_every_setting_in_force_comes_from_the_defaults_or_the_narrowest_scope(
    store: SqliteStore,
) -> None:
    defaults = DefaultsConfig(
        model="base",
        mode=ChatMode.PRECISE,
        system_prompt="Be brief.",
        temperature=0.3,
        top_p=0.8,
        seed=7,
        num_predict=100,
        context_length=4096,
    )
    room = Scope("discord", ScopeKind.ROOM, "chan")
    # A key written by a newer version comes first and must not hide the ones after it.
    await store.set_setting(room, "a_setting_from_a_newer_version", "x")
    await store.set_setting(room, "context_length", 16384)
    await store.set_setting(room, "show_thinking", True)
    await store.set_setting(room, "temperature", 0.9)
    await store.set_setting(room, "think", True)

    effective = await SettingsResolver(store, defaults).effective(
        SessionKey("discord", "chan"), "g"
    )

    from_room = {SettingKey.CONTEXT_LENGTH, SettingKey.SHOW_THINKING}
    from_room |= {SettingKey.TEMPERATURE, SettingKey.THINK}
    assert effective == EffectiveSettings(
        model="base",
        mode=ChatMode.PRECISE,
        system_prompt="Be brief.",
        temperature=0.9,
        top_p=0.8,
        seed=7,
        num_predict=100,
        think=True,
        show_thinking=True,
        context_length=16384,
        sources={key: "room" if key in from_room else "default" for key in SettingKey},
    )
    # What reaches Ollama: the room's window capped at the model's, the explicit values.
    small = ModelInfo(name="base", context_length=8192)
    large = ModelInfo(name="base", context_length=32768)
    assert (effective.context_window(small), effective.context_window(large)) == (8192, 16384)
    assert effective.request_options(small) == {
        "temperature": 0.9,
        "top_p": 0.8,
        "seed": 7,
        "num_predict": 100,
        "num_ctx": 8192,
    }
    assert effective.model_config() == ModelConfig(
        name="base", temperature=0.9, top_p=0.8, seed=7, num_predict=100, think=True
    )
    # What `settings` shows: plain values, the mode by name.
    assert effective.value(SettingKey.MODE) == "precise"
    assert effective.value(SettingKey.SEED) == 7


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        (SettingKey.THINK, "maybe", "Say `on` or `off`."),
        (SettingKey.MODEL, "two words", "A model name is one word, like `llama3.2` or `qwen3:8b`."),
        (
            SettingKey.SYSTEM_PROMPT,
            " ",
            "The system prompt must not be empty (use `system clear` instead).",
        ),
    ],
)
def test_refusals_say_exactly_the_rule(key: SettingKey, raw: object, message: str) -> None:
    with pytest.raises(InputRejected) as refused:
        parse_value(key, raw)
    assert refused.value.user_message == message


def test_a_context_length_ignores_underscores_wherever_they_are() -> None:
    # Python's int() alone refuses a doubled or trailing underscore; the setting does not.
    assert parse_value(SettingKey.CONTEXT_LENGTH, "16__384_") == 16384
