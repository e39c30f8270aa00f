"""The command runner's answers, word for word, through the engine (real SQLite, fake Ollama).

Each command's title, text, ``ok`` and ``ephemeral`` are what adapters show; the first mutation
run found most of them unchecked (a command could answer anything and every test passed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.conversation.commands import (
    CommandContext,
    Help,
    ModelPull,
    ModelSet,
    ModelShow,
    ModeSet,
    ModeShow,
    Reset,
    SettingsShow,
    Stats,
    Stop,
    SystemClear,
    SystemSet,
    SystemShow,
    ThinkSet,
    parse_command,
)
from bot.conversation.engine import Engine
from bot.conversation.results import CommandResult, PullView, SettingsView, StatsView
from bot.errors import InputRejected
from bot.store.port import Scope, ScopeKind
from bot.turn import Author
from tests.conversation.test_engine import KEY, MOD, make_config, make_engine
from tests.fakes.fake_ollama import FakeOllama

ALICE = Author("u-alice", "Alice")
MODS = CommandContext(KEY, None, MOD)


@pytest.fixture
async def engine(fake_ollama: FakeOllama, tmp_path: Path) -> AsyncIterator[Engine]:
    config: BotConfig = make_config(fake_ollama, tmp_path / "bot.db")
    async with make_engine(config) as eng:
        yield eng


def said(result: CommandResult) -> tuple[str, str, bool, bool]:
    return (result.title, result.body, result.ok, result.ephemeral)


async def test_show_and_set_commands_answer_in_so_many_words(engine: Engine) -> None:
    run = engine.execute
    modes = "balanced, precise, creative, code"
    assert said(await run(MODS, ModeShow())) == (
        "Mode",
        f"`balanced` (modes: {modes})",
        True,
        False,
    )
    assert said(await run(MODS, ModelShow())) == (
        "Model",
        "`llama3.2` (set at: default)",
        True,
        False,
    )
    assert said(await run(MODS, SystemShow())) == ("System prompt", "Be brief.", True, False)

    assert said(await run(MODS, ModeSet("precise"))) == (
        "`mode` set",
        "This channel now uses `precise`.",
        True,
        False,
    )
    assert (await run(MODS, ModeShow())).body == f"`precise` (modes: {modes})"
    assert said(await run(MODS, ModelSet("llama3.2"))) == (
        "`model` set",
        "This channel now uses `llama3.2`.",
        True,
        False,
    )
    assert (await run(MODS, ModelShow())).body == "`llama3.2` (set at: room)"
    assert (await run(MODS, ThinkSet(True))).body == "This channel now uses on."
    assert (await run(MODS, ThinkSet(False))).body == "This channel now uses off."
    assert (await run(MODS, SystemSet("Be kind."))).body == "This channel now uses `Be kind.`."
    assert (await run(MODS, SystemShow())).body == "Be kind."
    assert said(await run(MODS, SystemClear())) == (
        "`system_prompt` cleared",
        "This channel uses the inherited value.",
        True,
        False,
    )
    assert (await run(MODS, SystemShow())).body == "Be brief."
    terminal = CommandContext(KEY, None, MOD, room_word="chat")
    assert (await run(terminal, ModeSet("code"))).body == "This chat now uses `code`."


async def test_settings_show_every_value_and_where_it_comes_from(engine: Engine) -> None:
    long_prompt = "p" * 100
    await engine.execute(MODS, SystemSet(long_prompt))
    await engine.execute(MODS, ThinkSet(True))
    view = await engine.execute(MODS, SettingsShow())
    assert isinstance(view, SettingsView)
    assert view.title == "Settings in force here"
    rows = {row.key: (row.value, row.source) for row in view.rows}
    assert rows["model"] == ("`llama3.2`", "default")
    assert rows["mode"] == ("`balanced`", "default")
    assert rows["system_prompt"] == (f"`{'p' * 77}...`", "room")
    assert rows["temperature"] == ("(not set)", "default")
    assert rows["think"] == ("on", "room")
    assert rows["show_thinking"] == ("off", "default")


async def test_conversation_commands_answer_in_so_many_words(engine: Engine) -> None:
    stats = await engine.execute(MODS, Stats())
    assert isinstance(stats, StatsView)
    assert stats.title == "Statistics for this channel"
    reset = await engine.execute(MODS, Reset())
    assert (reset.title, reset.ok, reset.ephemeral) == ("Conversation reset", True, False)
    assert reset.body.startswith("The bot starts afresh in this channel")
    assert said(await engine.execute(MODS, Stop())) == (
        "Nothing to stop",
        "No reply is being written or waiting here.",
        True,
        False,
    )
    help_ = await engine.execute(MODS, Help())
    assert (help_.title, help_.ok, help_.ephemeral) == ("Commands", True, True)
    assert help_.body.splitlines()[0].startswith("- `")


async def test_help_lists_what_every_platform_parses_and_the_platform_s_own_commands_first(
    engine: Engine,
) -> None:
    everywhere = (await engine.execute(MODS, Help())).body.splitlines()
    # Matrix's prefix and the terminal's slash go through parse_command, which has no ask or
    # chat (Discord's slash commands): the shared list must not offer them.
    assert not any(line.startswith(("- `ask", "- `chat")) for line in everywhere)
    with pytest.raises(InputRejected) as refused:
        parse_command("ask something")
    assert "ask <prompt>" not in refused.value.user_message

    own = (("ask <prompt>", "answer once, here"),)
    lines = (await engine.execute(MODS, Help(own))).body.splitlines()
    assert lines == ["- `ask <prompt>`: answer once, here", *everywhere]


async def test_a_failed_command_is_said_privately_and_a_refusal_audits_the_value_in_force(
    engine: Engine,
) -> None:
    failed = await engine.execute(MODS, ModelSet("nope"))
    assert (failed.title, failed.ok, failed.ephemeral) == ("Could not do that", False, True)
    assert "nope" in failed.body
    await engine.execute(MODS, ModeSet("precise"))
    refused = await engine.execute(CommandContext(KEY, None, ALICE), ModeSet("creative"))
    assert not refused.ok
    [entry] = [e for e in await engine.store.audit_log() if not e.allowed]
    assert entry.scope == Scope(KEY.platform, ScopeKind.ROOM, KEY.room)
    assert (entry.key, entry.old_value, entry.new_value) == ("mode", "precise", "creative")
    assert (entry.actor_id, entry.actor_name) == ("u-alice", "Alice")


async def test_refused_text_is_audited_whole_up_to_200_characters_then_cut(engine: Engine) -> None:
    alice = CommandContext(KEY, None, ALICE)
    await engine.execute(alice, SystemSet("a" * 200))
    other = CommandContext(KEY, None, Author("u-bob", "Bob"))
    await engine.execute(other, SystemSet("b" * 201))
    by_actor = {e.actor_id: e.new_value for e in await engine.store.audit_log() if not e.allowed}
    assert by_actor["u-alice"] == "a" * 200
    assert by_actor["u-bob"] == "b" * 199 + "…"


async def test_pull_answers_a_refusal_and_a_failure_in_so_many_words(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    refused = await engine.execute(CommandContext(KEY, None, ALICE), ModelPull("mistral"))
    assert said(refused)[:3] == (
        "Only moderators can pull models",
        "Pulling downloads gigabytes onto the bot's machine. Nothing was pulled.",
        False,
    )
    fake_ollama.pullable = {"mistral"}
    view = await engine.execute(MODS, ModelPull("nonesuch"))
    assert isinstance(view, PullView)
    assert (view.title, view.model) == ("Pulling `nonesuch`", "nonesuch")
    assert view.progress is not None
    statuses = [step.status async for step in view.progress]
    assert statuses[-1].startswith("error: ")
    assert "does not exist" in statuses[-1]
