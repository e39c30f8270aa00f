"""The command runner at every scope: who may set what where, what is stored and audited.

Real engine, real SQLite, the fake Ollama. The second mutation run of the runner found these
unchecked: a setting asked for the server stored at the room, show commands that ignored the
server's settings, a channel moderator refused in their own channel, refusals coalesced across
scopes, commands not rate-limited (or stop rate-limited), and a model's metadata kept after the
model was removed or pulled again.
"""

from __future__ import annotations

from pathlib import Path

from bot.conversation.commands import (
    CommandContext,
    ContextSet,
    ContextShow,
    ModelList,
    ModelPull,
    ModelSet,
    ModelShow,
    ModeSet,
    ModeShow,
    SettingsShow,
    Stop,
    SystemClear,
    SystemSet,
    SystemShow,
    ThinkSet,
)
from bot.conversation.engine import Engine
from bot.conversation.results import CommandResult, ModelListView, PullView, SettingsView
from bot.store.port import Scope, ScopeKind
from bot.turn import Author, SessionKey
from tests.conversation.test_engine import ALICE, KEY, MOD, make_config, make_engine
from tests.fakes.fake_ollama import FakeOllama

SERVER = ScopeKind.SERVER
THREAD_KEY = SessionKey(KEY.platform, KEY.room, "t1")
AT_SERVER = Scope(KEY.platform, ScopeKind.SERVER, "srv")
AT_ROOM = Scope(KEY.platform, ScopeKind.ROOM, KEY.room)
AT_THREAD = Scope(KEY.platform, ScopeKind.THREAD, f"{KEY.room}/t1")
CHANNEL_MOD = Author("u-cmod", "Cam", moderates=frozenset({ScopeKind.ROOM}))
THREAD_MOD = Author("u-tmod", "Tess", moderates=frozenset({ScopeKind.THREAD}))


def said(result: CommandResult) -> tuple[str, str, bool, bool]:
    return (result.title, result.body, result.ok, result.ephemeral)


def ok(body: str, title: str = "") -> tuple[str, str, bool, bool]:
    return (title, body, True, False)


def refused(what: str, where: str) -> tuple[str, str, bool, bool]:
    return (
        "Only moderators can change that",
        f"Changing `{what}` for this {where} needs a moderator of the {where}. "
        "Nothing was changed.",
        False,
        True,
    )


async def test_settings_set_at_the_server_are_stored_there_and_shown_in_its_rooms(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    run, here = engine.execute, CommandContext(KEY, "srv", MOD)
    answers = [
        said(await run(here, command))
        for command in (
            ModelSet("qwen3", SERVER),
            ModeSet("code", SERVER),
            SystemSet("Server rules.", SERVER),
            ThinkSet(True, SERVER),
            ContextSet("4096", SERVER),
        )
    ]
    assert answers == [
        ("`model` set", "This server now uses `qwen3`.", True, False),
        ("`mode` set", "This server now uses `code`.", True, False),
        ("`system_prompt` set", "This server now uses `Server rules.`.", True, False),
        ("`think` set", "This server now uses on.", True, False),
        ("`context_length` set", "This server now uses `4096`.", True, False),
    ]
    assert await engine.store.get_settings(AT_SERVER) == {
        "model": "qwen3",
        "mode": "code",
        "system_prompt": "Server rules.",
        "think": True,
        "context_length": 4096,
    }
    assert await engine.store.get_settings(AT_ROOM) == {}

    # Every show command in a room of that server reads them, and says where they come from.
    assert (await run(here, ModelShow())).body == "`qwen3` (set at: server)"
    assert (await run(here, ModeShow())).body.startswith("`code` (modes: ")
    assert (await run(here, SystemShow())).body == "Server rules."
    assert (await run(here, ContextShow())).body == "4,096 tokens (set at: server)"
    listing = await run(here, ModelList())
    assert isinstance(listing, ModelListView)
    assert listing.current == "qwen3"
    view = await run(here, SettingsShow())
    assert isinstance(view, SettingsView)
    rows = {row.key: (row.value, row.source) for row in view.rows}
    assert [rows[k] for k in ("model", "mode", "system_prompt", "think", "context_length")] == [
        ("`qwen3`", "server"),
        ("`code`", "server"),
        ("`Server rules.`", "server"),
        ("on", "server"),
        ("`4096`", "server"),
    ]
    assert rows["temperature"] == ("(not set)", "default")

    assert said(await run(here, SystemClear(SERVER))) == (
        "`system_prompt` cleared",
        "This server uses the inherited value.",
        True,
        False,
    )
    assert (await run(here, SystemShow())).body == "Be brief."
    audited = [(e.key, e.old_value, e.new_value) for e in await engine.store.audit_log()]
    assert sorted(audited, key=str) == sorted(
        [
            ("model", None, "qwen3"),
            ("mode", None, "code"),
            ("system_prompt", None, "Server rules."),
            ("think", None, True),
            ("context_length", None, 4096),
            ("system_prompt", "Server rules.", None),
        ],
        key=str,
    )


async def test_who_may_change_a_setting_and_where_the_answer_says_it_applies(
    engine: Engine,
) -> None:
    in_room = CommandContext(KEY, "srv", CHANNEL_MOD)
    in_thread = CommandContext(THREAD_KEY, "srv", THREAD_MOD)
    terminal = CommandContext(KEY, None, ALICE, room_word="chat")
    cases = [
        (in_room, ModeSet("code"), ok("This channel now uses `code`.", "`mode` set")),
        (in_room, ModeSet("code", SERVER), refused("mode", "server")),
        (in_thread, ModeSet("precise"), ok("This thread now uses `precise`.", "`mode` set")),
        (in_thread, ThinkSet(True, ScopeKind.ROOM), refused("think", "channel")),
        (terminal, SystemSet("Obey."), refused("system_prompt", "chat")),
        (terminal, ContextSet("100"), refused("context_length", "chat")),
    ]
    for ctx, command, answer in cases:
        assert said(await engine.execute(ctx, command)) == answer, command
    assert await engine.store.get_settings(AT_ROOM) == {"mode": "code"}
    assert await engine.store.get_settings(AT_THREAD) == {"mode": "precise"}
    assert await engine.store.get_settings(AT_SERVER) == {}


async def test_a_refusal_is_audited_once_per_person_scope_and_key(engine: Engine) -> None:
    alice = CommandContext(KEY, "srv", ALICE)
    for command in (
        ModeSet("code"),
        ModeSet("creative"),
        ModeSet("code", SERVER),
        SystemSet("Obey."),
        ModeSet("code"),
    ):
        assert not (await engine.execute(alice, command)).ok
    bob = CommandContext(KEY, "srv", Author("u-bob", "Bob"))
    await engine.execute(bob, ModeSet("precise"))
    audited = [
        (e.actor_id, str(e.scope), e.key, e.new_value) for e in await engine.store.audit_log()
    ]
    assert sorted(audited) == [
        ("u-alice", "test:room:room-1", "mode", "code"),
        ("u-alice", "test:room:room-1", "system_prompt", "Obey."),
        ("u-alice", "test:server:srv", "mode", "code"),
        ("u-bob", "test:room:room-1", "mode", "precise"),
    ]


async def test_commands_are_rate_limited_per_person_but_stop_never_is(
    fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    config = make_config(fake_ollama, tmp_path / "bot.db", limits={"user_commands_per_minute": 1})
    alice = CommandContext(KEY, None, ALICE)
    async with make_engine(config) as engine:
        assert (await engine.execute(alice, ModeShow())).ok
        again = await engine.execute(alice, ModeShow())
        stop = await engine.execute(alice, Stop())
        bob = await engine.execute(CommandContext(KEY, None, MOD), ModeShow())
    assert said(again) == (
        "Could not do that",
        "You are sending commands faster than 1 a minute. Try again in 60 s.",
        False,
        True,
    )
    assert said(stop) == (
        "Nothing to stop",
        "No reply is being written or waiting here.",
        True,
        False,
    )
    assert bob.ok


async def test_model_set_asks_the_server_again_for_a_model_it_named_before(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3")
    moderator = CommandContext(KEY, "srv", MOD)
    assert (await engine.execute(moderator, ModelSet("qwen3"))).ok
    fake_ollama.remove_model("qwen3")
    gone = await engine.execute(moderator, ModelSet("qwen3", SERVER))
    assert said(gone) == (
        "Could not do that",
        "Model 'qwen3' is not installed. Installed models: llama3.2:latest.",
        False,
        True,
    )
    assert await engine.store.get_settings(AT_SERVER) == {}


async def test_the_window_cap_is_shown_on_its_row_only_and_a_pull_refreshes_it(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("mistral", context_length=2048)
    await engine.execute(CommandContext(KEY, None, MOD), ModelSet("mistral"))
    capped = "8,192 tokens (capped at `mistral`'s maximum: 2,048) (set at: default)"
    assert (await engine.execute(CommandContext(KEY, None, ALICE), ContextShow())).body == capped
    view = await engine.execute(CommandContext(KEY, None, ALICE), SettingsShow())
    assert isinstance(view, SettingsView)
    rows = {row.key: (row.value, row.source) for row in view.rows}
    assert rows["context_length"] == ("`8192` (capped at `mistral`'s maximum: 2,048)", "default")
    assert rows["model"] == ("`mistral`", "room")
    assert rows["mode"] == ("`balanced`", "default")

    # Pulled again, the model now takes 8,192 tokens: the runner forgets what it knew.
    pull = await engine.execute(CommandContext(KEY, None, MOD), ModelPull("mistral"))
    assert isinstance(pull, PullView)
    assert pull.progress is not None
    assert [step.status async for step in pull.progress][-1] == "success"
    shown = await engine.execute(CommandContext(KEY, None, ALICE), ContextShow())
    assert shown.body == "8,192 tokens (set at: default)"


async def test_the_window_is_shown_without_a_cap_while_the_model_cannot_be_asked(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.remove_model("llama3.2")
    shown = await engine.execute(CommandContext(KEY, None, ALICE), ContextShow())
    assert said(shown) == ("Context window", "8,192 tokens (set at: default)", True, False)
