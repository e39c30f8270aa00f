"""The command runner's answers, word for word, through the engine (real SQLite, fake Ollama).

Each command's title, text, ``ok`` and ``ephemeral`` are what adapters show; the first mutation
run found most of them unchecked (a command could answer anything and every test passed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotConfig
from bot.conversation.commands import (
    CommandContext,
    ContextShow,
    Cot,
    Help,
    ModelList,
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
    ToolsList,
    parse_command,
)
from bot.conversation.engine import Engine
from bot.conversation.results import (
    CommandResult,
    ModelListView,
    PullView,
    SettingsView,
    StatsView,
    ToolsView,
)
from bot.conversation.runner import stop_result
from bot.conversation.stopping import StopReport
from bot.errors import InputRejected
from bot.model.port import short_host
from bot.store.port import Scope, ScopeKind
from bot.turn import Author, SessionKey
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
    # A value is shown whole up to 79 characters, cut from 80.
    assert (await run(MODS, SystemSet("p" * 79))).body == f"This channel now uses `{'p' * 79}`."
    assert (await run(MODS, SystemSet("p" * 80))).body == f"This channel now uses `{'p' * 77}...`."
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
    assert said(await engine.execute(MODS, Reset())) == (
        "Conversation reset",
        "The bot starts afresh in this channel, its reply chains and threads included: the "
        "next message carries no earlier one.",
        True,
        False,
    )
    in_thread = CommandContext(SessionKey(KEY.platform, KEY.room, "t1"), None, MOD)
    assert (await engine.execute(in_thread, Reset())).body == (
        "The bot starts afresh in this thread: the next message carries no earlier one."
    )
    assert said(await engine.execute(MODS, Cot("17 * 23?"))) == (
        "Chain of thought",
        "A chain of thought is answered as a reply in the conversation.",
        False,
        True,
    )
    assert said(await engine.execute(MODS, ContextShow())) == (
        "Context window",
        "8,192 tokens (set at: default)",
        True,
        False,
    )
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
    [entry] = await engine.store.audit_log()
    assert (entry.scope, entry.key, entry.old_value, entry.new_value, entry.allowed) == (
        Scope(KEY.platform, ScopeKind.ROOM, KEY.room),
        "pull",
        None,
        "mistral",
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

    # A host the bot does not know is refused before anything is downloaded.
    fake_ollama.pullable = None
    elsewhere = await engine.execute(MODS, ModelPull("mistral", ("gpu9",)))
    assert isinstance(elsewhere, PullView)
    assert elsewhere.progress is not None
    assert [step.status async for step in elsewhere.progress] == [
        f"error: 'gpu9' is not one of the hosts. Hosts: {short_host(fake_ollama.url)}."
    ]
    assert "mistral:latest" not in fake_ollama.models


@pytest.mark.parametrize(
    ("report", "answer"),
    [
        (StopReport(1, 0), ("Stopped 1 reply", "What was written so far is kept.", True, False)),
        (StopReport(2, 1), ("Stopped 2 replies", "What was written so far is kept.", True, False)),
        (
            StopReport(0, 1),
            (
                "Not yours to stop",
                "Only the replies you asked for can be stopped here, unless you are a moderator "
                "of this place.",
                False,
                True,
            ),
        ),
        (
            StopReport(0, 0),
            ("Nothing to stop", "No reply is being written or waiting here.", True, False),
        ),
    ],
)
def test_stop_says_how_many_replies_it_stopped_or_why_none(
    report: StopReport, answer: tuple[str, str, bool, bool]
) -> None:
    assert said(stop_result(report)) == answer


async def test_model_list_shows_the_installed_models_the_current_one_and_the_host(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    view = await engine.execute(MODS, ModelList())
    assert isinstance(view, ModelListView)
    assert (view.title, view.current, view.ok, view.ephemeral) == (
        "Installed models",
        "llama3.2",
        True,
        False,
    )
    assert sorted(m.name for m in view.models) == ["llama3.2:latest", "qwen3:latest"]
    assert [(h.url, h.up, sorted(h.models)) for h in view.hosts] == [
        (fake_ollama.url, True, ["llama3.2:latest", "qwen3:latest"])
    ]


async def test_tools_list_is_answered_by_the_tool_rules(engine: Engine) -> None:
    view = await engine.execute(MODS, ToolsList())
    assert isinstance(view, ToolsView)
    assert view.title == "Tools here"
    assert ("calculate", True) in [(row.name, row.allowed) for row in view.rows]


async def test_a_failed_command_and_a_refusal_are_logged_for_the_operator(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    alice = CommandContext(KEY, None, ALICE)
    with caplog.at_level(logging.INFO, logger="bot.conversation.runner"):
        failed = await engine.execute(MODS, ModelSet("nope"))
        await engine.execute(alice, ModeSet("creative"))
    failure, refusal = [r for r in caplog.records if r.name == "bot.conversation.runner"]
    assert (failure.levelname, failure.getMessage()) == ("INFO", "command failed")
    said_to_user = "Model 'nope' is not installed. Installed models: llama3.2:latest."
    assert failed.body == said_to_user
    assert (failure.__dict__["command"], failure.__dict__["detail"]) == ("ModelSet", said_to_user)
    assert (refusal.levelname, refusal.getMessage()) == ("WARNING", "refused a non-moderator")
    logged = tuple(refusal.__dict__[field] for field in ("actor", "key", "scope"))
    assert logged == ("u-alice", "mode", "test:room:room-1")
