"""Choosing the database, and ``ollabot migrate`` from SQLite to PostgreSQL, as an operator does.

``OLLABOT_DATABASE_URL`` wins over ``storage.url``, either wins over ``storage.path``; the
password in a URL is never printed. The migration runs the real command in a child process
against the session's PostgreSQL server and is checked by reading the target back through the
store.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.config import load_config
from bot.store.port import MessageStatus, NewMessage, Scope, ScopeKind
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SqliteStore
from bot.turn import SessionKey
from bot.types import Role
from ollabot_app.cli import main
from ollabot_app.wiring import instance_name, make_store
from tests.cli.runner import closed_port_url, run_ollabot, write_config

PASSWORD = "pg-secret-never-printed"
KEY = SessionKey("discord", "42", "43")
ROOM = Scope("discord", ScopeKind.ROOM, "42")


def with_password(url: str) -> str:
    # The test server trusts local connections: the password is accepted unused.
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"postgres:{PASSWORD}@{host}"))


def test_the_environment_url_wins_over_the_file_and_either_over_the_sqlite_path(
    tmp_path: Path,
) -> None:
    config_file = write_config(tmp_path, "[discord]\nshard_ids = [1]\nshard_count = 2\n")
    assert load_config(config_file, env={}).storage.database_url is None
    assert isinstance(make_store(load_config(config_file, env={})), SqliteStore)

    with_url = tmp_path / "url.toml"
    with_url.write_text(
        config_file.read_text().replace(
            "[storage]\n", '[storage]\nurl = "postgresql://bot:file@db/ollabot"\n'
        )
    )
    from_file = load_config(with_url, env={})
    assert from_file.storage.database_url == "postgresql://bot:file@db/ollabot"
    assert isinstance(make_store(from_file), PostgresStore)
    assert "file" in from_file.secret_values()
    env = {"OLLABOT_DATABASE_URL": "postgresql://bot:env@db2/ollabot"}
    from_env = load_config(with_url, env=env)
    assert from_env.storage.database_url == "postgresql://bot:env@db2/ollabot"
    assert "env" in from_env.secret_values()
    assert "postgresql://bot:env@db2/ollabot" not in repr(from_env)
    # A process's name in the shared database comes from its shards unless set.
    assert instance_name(from_env) == "discord-shards-1"


async def test_a_storage_url_that_is_not_postgresql_is_refused_naming_the_key(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "[storage]\n", f'[storage]\nurl = "mysql://bot:{PASSWORD}@db/x"\n'
        )
    )
    result = await run_ollabot("--config", str(config), "check", cwd=tmp_path)
    assert result.code == 2
    assert "storage.url: Value error, must be a postgresql:// URL" in result.stderr
    assert PASSWORD not in result.output


async def test_check_reports_the_database_without_its_password(
    tmp_path: Path, postgres_url: str
) -> None:
    config = write_config(tmp_path)
    env = {"OLLABOT_DATABASE_URL": with_password(postgres_url), "OLLAMA_HOST": "127.0.0.1:9"}
    result = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    assert "[ok] storage: PostgreSQL" in result.stdout
    assert "postgresql://postgres:***@" in result.stdout
    assert PASSWORD not in result.output


async def test_check_says_why_the_database_cannot_be_opened_in_an_operator_s_words(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    port = closed_port_url().rsplit(":", 1)[1]
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:{port}/ollabot"
    env = {"OLLABOT_DATABASE_URL": url, "OLLAMA_HOST": "127.0.0.1:9"}
    result = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    assert result.code == 1
    line = next(x for x in result.stdout.splitlines() if "storage" in x)
    assert line.startswith(
        f"[!!] storage: cannot open the database at postgresql://bot:***@127.0.0.1:{port}/ollabot: "
    )
    assert "operator" not in line
    assert PASSWORD not in result.output


async def _filled_sqlite(path: Path) -> int:
    async with SqliteStore(path) as store:
        session = await store.session_id(KEY)
        await store.append(session, NewMessage(Role.USER, "hello", author_id="u1"))
        reply = await store.append(
            session, NewMessage(Role.ASSISTANT, "", status=MessageStatus.STREAMING)
        )
        await store.update_message(
            reply, content="hi there", status=MessageStatus.COMPLETE, refs=["42/m1"]
        )
        await store.reset_session(KEY)  # an old session, kept with its history
        await store.set_setting(ROOM, "model", "qwen3:8b")
        await store.audit(
            ROOM, "model", None, "qwen3:8b", actor_id="m", actor_name="Mo", allowed=True
        )
        await store.audit(ROOM, "mode", None, "x", actor_id="u", actor_name="U", allowed=False)
        await store.set_state("discord:commands:hash", "abc")
        await store.claim_event("discord", "1001")
        return session


async def test_migrate_copies_everything_verifies_counts_and_refuses_a_full_target(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "old.db"
    old_session = await _filled_sqlite(source)
    config = write_config(tmp_path)
    target = with_password(postgres_url)
    args = ("--config", str(config), "migrate", "--from", f"sqlite:{source}", "--to", target)

    result = await run_ollabot(*args, cwd=tmp_path)
    assert result.code == 0, result.output
    assert PASSWORD not in result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Copying {source} into {target.replace(PASSWORD, '***')}"
    counts = {line.split()[0]: line.split()[1:] for line in lines[2:8]}
    assert counts == {
        "sessions": ["2", "2"],
        "messages": ["2", "2"],
        "settings": ["1", "1"],
        "audit": ["2", "2"],
        "state": ["1", "1"],
        "events": ["1", "1"],
    }
    assert lines[-1] == "Done: all 6 tables copied, every count matches."

    async with PostgresStore(postgres_url) as copied:
        history = await copied.recent_messages(old_session, 10)
        assert [(m.role, m.content, m.status) for m in history] == [
            (Role.USER, "hello", MessageStatus.COMPLETE),
            (Role.ASSISTANT, "hi there", MessageStatus.COMPLETE),
        ]
        assert history[0].created_at.tzinfo is not None
        new_session = await copied.session_id(KEY)
        assert new_session > old_session  # the reset's fresh session is the current one
        assert await copied.recent_messages(new_session, 10) == []
        assert await copied.get_settings(ROOM) == {"model": "qwen3:8b"}
        assert [(e.key, e.allowed) for e in await copied.audit_log(ROOM)] == [
            ("mode", False),
            ("model", True),
        ]
        assert await copied.get_state("discord:commands:hash") == "abc"
        assert await copied.claim_event("discord", "1001") is False
        # New rows get ids after the copied ones.
        assert await copied.append(new_session, NewMessage(Role.USER, "next")) > history[-1].id

    # The same command again, run in this process (quicker than a child; same code path).
    async def again(*extra: str) -> tuple[int, str]:
        code = await asyncio.to_thread(main, [*args, *extra])
        out, err = capsys.readouterr()
        assert PASSWORD not in out + err
        return code, err

    code, err = await again()
    assert code == 1
    assert "already holds data" in err
    assert "--force" in err

    # A bot still running on the file (this test process holds it open) is not copied.
    async with SqliteStore(source, instance="still-running"):
        code, err = await again("--force")
    assert code == 1
    assert (
        f"A bot is still running on the SQLite file (instance 'still-running', pid {os.getpid()}"
    ) in err

    code, err = await again("--force")
    assert code == 0, err
    async with PostgresStore(postgres_url) as replaced:
        assert await replaced.count_rows("messages") == 2


async def test_run_refuses_a_second_matrix_sync_of_one_account_on_one_database(
    tmp_path: Path, postgres_url: str
) -> None:
    matrix = '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    config = write_config(tmp_path, matrix)
    env = {
        "OLLABOT_DATABASE_URL": postgres_url,
        "MATRIX_ACCESS_TOKEN": "token",
        "OLLAMA_HOST": "127.0.0.1:9",
    }
    # This test process plays the Matrix process that is already running.
    async with PostgresStore(postgres_url, instance="matrix") as running:
        await running.acquire_lease("matrix-sync:@bot:example.org")
        result = await run_ollabot("--config", str(config), "run", cwd=tmp_path, env=env)
    assert result.code == 2, result.output
    assert (
        "Not starting Matrix: another ollabot process already syncs @bot:example.org against "
        f"this database (instance 'matrix', pid {os.getpid()} on {socket.gethostname()}"
    ) in result.stderr
    assert "one syncing process per account" in result.stderr


async def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://ollabot:{PASSWORD}@127.0.0.1:{port}/ollabot"
    config = write_config(tmp_path, "[discord]\nguild_ready_timeout = 0.05\n")
    env = {"OLLABOT_DATABASE_URL": url, "DISCORD_TOKEN": "t", "OLLAMA_HOST": "127.0.0.1:9"}
    result = await run_ollabot("--config", str(config), "run", cwd=tmp_path, env=env)
    assert result.code == 1
    assert "The bot cannot reach its database" in result.stderr
    assert f"the database is postgresql://ollabot:***@127.0.0.1:{port}/ollabot." in result.stderr
    assert PASSWORD not in result.output
