"""Tools from MCP servers in conversations: real SDK servers (stdio and HTTP), the real ollama
client against the fake Ollama emitting ``tool_calls``, real SQLite, a fake surface."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.conversation.commands import (
    CommandContext,
    ModelSet,
    SettingsShow,
    ToolsAllow,
    ToolsCalls,
    ToolsDeny,
    ToolsList,
)
from bot.conversation.engine import Engine
from bot.conversation.results import Refusal, SettingsView, ToolCallsView, ToolsView
from bot.model.ollama import OllamaChatModel
from bot.store.port import Scope, ScopeKind
from bot.store.sqlite import SqliteStore
from bot.turn import Author, SessionKey, Turn
from bot.types import Outcome, Role
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.fake_surface import FakeSurface
from tests.fakes.mcp_files import SHOUT
from tests.fakes.mcp_launch import FILES_SCRIPT, SearchServer, search_server
from tests.matrix.conftest import eventually

KEY = SessionKey("test", "room-1")
ALICE = Author("u-alice", "Alice")
MOD = Author("u-mod", "Mo", is_moderator=True)
FILES_KEY = "canary-mcp-env-value-51c9"


@pytest.fixture(scope="module")
def search() -> Iterator[SearchServer]:
    with search_server() as server:
        yield server


def write_config(tmp_path: Path, fake: FakeOllama, search_url: str, **mcp: Any) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in mcp.items())
    text = f"""
[ollama]
host = "{fake.url}"
retry_attempts = 1
first_token_timeout = 10

[defaults]
model = "qwen3"
system_prompt = "Be brief."

[storage]
path = "{tmp_path / "bot.db"}"

[mcp]
{extra}
[[mcp.servers]]
name = "files"
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(FILES_SCRIPT))}]
env = {{ API_KEY = "FILES_API_KEY", CALLS_LOG = "FILES_CALLS_LOG" }}
timeout = 2

[[mcp.servers]]
name = "search"
url = "{search_url}"
"""
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return path


@pytest.fixture
async def engine(
    fake_ollama: FakeOllama, tmp_path: Path, search: SearchServer
) -> AsyncIterator[Engine]:
    fake_ollama.add_model("qwen3", capabilities=["completion", "tools"])
    path = write_config(tmp_path, fake_ollama, search.url, max_result_chars=500)
    env = {"FILES_API_KEY": FILES_KEY, "FILES_CALLS_LOG": str(tmp_path / "calls.jsonl")}
    config = load_config(path, env=env)
    model = OllamaChatModel(config.ollama.host)
    async with Engine(model, SqliteStore(config.storage.path), config) as eng:
        assert eng.mcp is not None
        await eng.mcp.wait_for(lambda h: all(h.status(n) == "up" for n in h.server_names))
        yield eng


def reached_server(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls.jsonl"
    if not calls.exists():
        return []
    return [json.loads(line)["tool"] for line in calls.read_text().splitlines()]


def offered(request: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools") or []}


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def allow(engine: Engine, name: str, scope: ScopeKind | None = None) -> None:
    result = await engine.execute(CommandContext(KEY, None, MOD), ToolsAllow(name, scope))
    assert result.ok, result.as_markdown()


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


async def ask(engine: Engine, text: str) -> tuple[Any, FakeSurface]:
    surface = FakeSurface()
    result = await engine.handle_turn(Turn(key=KEY, author=ALICE, text=text), surface)
    return result, surface


async def test_no_mcp_tool_is_offered_until_a_moderator_allows_it(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await ask(engine, "hello")
    assert offered(fake_ollama.requests[-1]) == {"current_time", "calculate"}
    await allow(engine, "files.*")
    await ask(engine, "hello again")
    names = offered(fake_ollama.requests[-1])
    assert {"files__read_file", "files__add", "calculate"} <= names
    assert not any(n.startswith("search") for n in names)


async def test_a_call_result_reaches_the_model_and_the_user_sees_one_line(
    engine: Engine, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await allow(engine, "files.read_file")
    fake_ollama.script(call("files__read_file", path="notes.md"), Reply.text("You must buy milk."))
    result, surface = await ask(engine, "what is in my notes?")
    assert result.outcome is Outcome.COMPLETE
    assert tool_messages(fake_ollama.requests[-1]) == ["contents of notes.md: buy milk"]
    shown = surface.texts[-1]
    assert '🔧 `files.read_file(path="notes.md")` → ok, ' in shown
    assert shown.index("🔧") < shown.index("You must buy milk.")
    assert "contents of notes.md" not in shown  # the result is never dumped into the channel
    assert result.text == "You must buy milk."
    session = await engine.store.session_id(KEY)
    stored = [(m.role, m.content) for m in await engine.store.recent_messages(session, 10)]
    assert stored[-1] == (Role.ASSISTANT, "You must buy milk.")
    assert reached_server(tmp_path) == ["read_file"]
    calls = await engine.execute(CommandContext(KEY, None, ALICE), ToolsCalls())
    assert isinstance(calls, ToolCallsView)
    assert "contents of notes.md: buy milk" in calls.as_markdown()


async def test_a_tool_not_allowed_here_is_neither_offered_nor_run(
    engine: Engine, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await allow(engine, "files.*")
    await engine.execute(CommandContext(KEY, None, MOD), ToolsDeny("files.read_file"))
    fake_ollama.script(call("files__read_file", path="secret.md"), Reply.text("I cannot."))
    result, surface = await ask(engine, "read secret.md")
    assert "files__read_file" not in offered(fake_ollama.requests[-2])
    assert "files__add" in offered(fake_ollama.requests[-2])
    (message,) = tool_messages(fake_ollama.requests[-1])
    assert "not available here" in message
    assert result.outcome is Outcome.COMPLETE
    assert result.text == "I cannot."
    assert "→ error: `not available here`" in surface.texts[-1]
    assert reached_server(tmp_path) == []


async def test_a_server_tool_allowed_in_another_room_is_not_callable_here(
    engine: Engine, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    other = SessionKey("test", "room-2")
    await engine.execute(CommandContext(other, None, MOD), ToolsAllow("files.*"))
    fake_ollama.script(call("files__add", a=1, b=2), Reply.text("no"))
    await ask(engine, "add")
    assert not any(n.startswith("files") for n in offered(fake_ollama.requests[-2]))
    assert "not available here" in tool_messages(fake_ollama.requests[-1])[0]
    assert reached_server(tmp_path) == []


async def test_tools_allow_by_a_non_moderator_is_refused_and_audited(engine: Engine) -> None:
    result = await engine.execute(CommandContext(KEY, None, ALICE), ToolsAllow("files.*"))
    assert isinstance(result, Refusal)
    scope = Scope("test", ScopeKind.ROOM, "room-1")
    (entry,) = await engine.store.audit_log(scope)
    assert (entry.key, entry.allowed, entry.actor_id) == ("tools", False, "u-alice")
    assert entry.new_value == {"files.*": True}
    assert "tools" not in await engine.store.get_settings(scope)
    await allow(engine, "files.*")
    latest = (await engine.store.audit_log(scope))[0]
    assert (latest.allowed, latest.old_value, latest.new_value) == (True, None, {"files.*": True})


async def test_tools_list_says_what_is_allowed_here(engine: Engine) -> None:
    await allow(engine, "search.find", ScopeKind.ROOM)
    view = await engine.execute(CommandContext(KEY, None, ALICE), ToolsList())
    assert isinstance(view, ToolsView)
    rows = {row.name: row.allowed for row in view.rows}
    assert rows["search.find"] is True
    assert rows["files.read_file"] is False
    assert rows["calculate"] is True
    text = view.as_markdown()
    assert "- `search.find`: Search the web (a canned answer). — allowed" in text
    assert "- `files.read_file`: Read a text file from the notes folder. — not allowed" in text


async def test_an_unknown_server_cannot_be_allowed(engine: Engine) -> None:
    result = await engine.execute(CommandContext(KEY, None, MOD), ToolsAllow("nope.*"))
    assert not result.ok
    assert "no tool server 'nope'" in result.body


async def test_schema_invalid_arguments_never_reach_the_server(
    engine: Engine, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await allow(engine, "files.add")
    fake_ollama.script(call("files__add", a="two", b=2), Reply.text("Sorry."))
    result, surface = await ask(engine, "add two and two")
    (message,) = tool_messages(fake_ollama.requests[-1])
    assert message.startswith("Error: invalid arguments for files.add: a: 'two' is not of type")
    assert reached_server(tmp_path) == []
    assert result.outcome is Outcome.COMPLETE
    assert "→ error: `a: 'two' is not of type" in surface.texts[-1]


async def test_a_hanging_call_times_out_and_the_reply_goes_on(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await allow(engine, "files.hang")
    fake_ollama.script(call("files__hang"), Reply.text("It did not answer in time."))
    result, surface = await ask(engine, "wait for it")
    assert tool_messages(fake_ollama.requests[-1]) == [
        "Error: files.hang took longer than 2 s and was stopped."
    ]
    assert result.text == "It did not answer in time."
    assert "→ error: `files.hang took longer than 2 s and was stopped.`" in surface.texts[-1]
    assert engine.mcp is not None
    assert engine.mcp.status("files") == "up"


async def test_a_server_that_crashes_mid_call_is_reported_and_restarted(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await allow(engine, "files.*")
    fake_ollama.script(call("files__crash"), Reply.text("The tool failed."))
    result, surface = await ask(engine, "crash it")
    assert result.outcome is Outcome.COMPLETE
    shown = surface.texts[-1]
    assert "→ error: `The tool server 'files' stopped during the call; it is being restarted.`" in (
        shown
    )
    assert engine.mcp is not None
    await engine.mcp.wait_for(lambda h: h.restarts("files") == 1 and h.status("files") == "up")
    fake_ollama.script(call("files__add", a=2, b=2), Reply.text("4"))
    await ask(engine, "add")
    assert tool_messages(fake_ollama.requests[-1]) == ["4"]


async def test_a_long_result_is_cut_before_it_goes_back_to_the_model(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await allow(engine, "files.big")
    fake_ollama.script(call("files__big", size=5000), Reply.text("long"))
    await ask(engine, "big")
    (message,) = tool_messages(fake_ollama.requests[-1])
    assert len(message) <= 500
    assert message.endswith("more characters]")


async def test_http_server_tool_result_reaches_the_model(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await allow(engine, "search.*")
    fake_ollama.script(call("search__find", query="ollama"), Reply.text("Found it."))
    result, _ = await ask(engine, "search")
    assert tool_messages(fake_ollama.requests[-1]) == ["3 results for ollama: ollabot.example"]
    assert result.text == "Found it."


async def test_a_model_without_tools_gets_none(engine: Engine, fake_ollama: FakeOllama) -> None:
    await allow(engine, "files.*")
    fake_ollama.add_model("plain", capabilities=["completion"])
    await engine.execute(CommandContext(KEY, None, MOD), ModelSet("plain"))
    await ask(engine, "hi")
    assert "tools" not in fake_ollama.requests[-1] or not fake_ollama.requests[-1]["tools"]


async def test_stop_ends_a_reply_during_a_tool_call(
    engine: Engine, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    await allow(engine, "files.hang")
    fake_ollama.script(call("files__hang"), Reply.text("never"))
    surface = FakeSurface()
    task = asyncio.create_task(engine.handle_turn(Turn(key=KEY, author=ALICE, text="x"), surface))
    await surface.wait_calls(1)  # the call's line is shown while the call is under way
    assert surface.texts[-1].startswith("🔧 `files.hang()`")
    assert "→" not in surface.texts[-1]

    async def reached() -> bool:
        return "hang" in reached_server(tmp_path)

    await eventually(reached)
    assert await engine.stop(KEY)
    result = await task
    assert result.outcome is Outcome.STOPPED
    assert len(fake_ollama.requests) == 1  # the model was not asked again


async def test_a_result_that_pings_and_injects_is_shown_only_inside_code(
    engine: Engine, fake_ollama: FakeOllama
) -> None:
    await allow(engine, "files.shout")
    fake_ollama.script(call("files__shout"), Reply.text("done"))
    await ask(engine, "shout")
    assert tool_messages(fake_ollama.requests[-1]) == [SHOUT]
    view = await engine.execute(CommandContext(KEY, None, ALICE), ToolsCalls())
    text = view.as_markdown()
    # The whole result sits inside one fenced block whose fence is longer than its backticks.
    assert "\n````\n" + SHOUT + "\n````" in text


async def test_rounds_and_total_tool_time_are_bounded(
    fake_ollama: FakeOllama, tmp_path: Path, search: SearchServer
) -> None:
    fake_ollama.add_model("qwen3", capabilities=["completion", "tools"])
    path = write_config(
        tmp_path, fake_ollama, search.url, max_tool_rounds=1, total_tool_seconds=0.5
    )
    env = {"FILES_API_KEY": FILES_KEY, "FILES_CALLS_LOG": str(tmp_path / "calls.jsonl")}
    config = load_config(path, env=env)
    async with Engine(
        OllamaChatModel(config.ollama.host), SqliteStore(config.storage.path), config
    ) as engine:
        assert engine.mcp is not None
        await engine.mcp.wait_for(lambda h: h.status("files") == "up")
        await allow(engine, "files.*")
        fake_ollama.script(call("files__hang"), Reply.text("Gave up waiting."))
        result, _ = await ask(engine, "wait")
        assert tool_messages(fake_ollama.requests[-1]) == [
            "Error: the time allowed for tools in this reply is used up"
        ]
        assert fake_ollama.requests[-1].get("tools") in (None, [])  # one round: no more tools
        assert result.text == "Gave up waiting."


async def test_settings_show_the_tool_rules_in_force_and_where_they_come_from(
    engine: Engine,
) -> None:
    thread = SessionKey("test", "room-1", "t-1")
    await allow(engine, "files.*", ScopeKind.ROOM)
    await engine.execute(CommandContext(thread, None, MOD), ToolsDeny("files.crash"))
    view = await engine.execute(CommandContext(thread, None, ALICE), SettingsShow())
    assert isinstance(view, SettingsView)
    row = next(r for r in view.rows if r.key == "tools")
    assert row.value == "`files.*` allowed (room); `files.crash` denied (thread)"
    assert row.source == "thread"
