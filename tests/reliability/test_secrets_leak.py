"""Tokens and passwords never appear in anything the bot writes.

The real bot process (``python -m ollabot_app run``) runs with DEBUG logging and message bodies
logged, a Discord-shaped ``DISCORD_TOKEN`` against the fake Discord and real Matrix credentials
against Synapse. It answers on both platforms, fails once (Ollama down), and is stopped. Then
everything it wrote is searched for every secret: standard output, standard error, and every file
in its working directory (the SQLite database and its WAL included). ``ollabot check`` and a
start with a token Discord refuses are searched the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import CHILD_TIMEOUT, CliResult, child_env, run_ollabot, write_config
from tests.fakes.fake_discord import PERM_MANAGE_CHANNELS, FakeDiscord
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.mcp_launch import FILES_SCRIPT
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import Human, eventually, unique

pytestmark = pytest.mark.synapse

# Shaped like a real bot token (base64 user id . timestamp . HMAC), so that it is recognisable.
DISCORD_TOKEN = "MTE5NzQ0NTYwNzM2NjUwMjQwMA.GLeAkC.CanaryDiscordHmacPart0123456789abcdefXYZ"
MATRIX_PASSWORD = "canary-matrix-password-7f3e91c2"
MCP_SECRET = "canary-mcp-server-key-94d0e1b7"
# Anything the bot might print as a Synapse access token (its own login's included).
SYNAPSE_TOKEN = re.compile(rb"sy[tr]_[A-Za-z0-9_-]{8,}")


@dataclass
class Run:
    """A bot process whose output goes to files: a DEBUG run outgrows a pipe nobody reads."""

    proc: asyncio.subprocess.Process
    out: Path
    err: Path
    result: CliResult | None = None


def _output_files(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(exist_ok=True)
    return directory / "stdout.txt", directory / "stderr.txt"


@asynccontextmanager
async def running_ollabot(
    *args: str, workdir: Path, logs: Path, env: dict[str, str]
) -> AsyncIterator[Run]:
    """``python -m ollabot_app ARGS`` in ``workdir``; SIGTERM on exit, then ``run.result``."""
    out, err = _output_files(logs)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ollabot_app", *args,
            cwd=workdir, env=child_env(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout, stderr=stderr,
        )  # fmt: skip
    run = Run(proc, out, err)
    try:
        yield run
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), CHILD_TIMEOUT)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        run.result = CliResult(code, out.read_text(), err.read_text())


def fragments(secret: str) -> list[str]:
    """The secret and its distinctive pieces: a cut or partly redacted secret is a leak too."""
    pieces = [secret, *(p for p in re.split(r"[._]", secret) if len(p) >= 8)]
    if len(secret) >= 24:
        pieces.append(secret[len(secret) // 3 : 2 * len(secret) // 3])
    return pieces


def written_files(directory: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def assert_nothing_leaks(secrets: list[str], output: str, directory: Path | None = None) -> None:
    """No secret (or piece of one), and no Synapse token at all, in the output or the files."""
    places: list[tuple[str, bytes]] = [("output", output.encode())]
    if directory is not None:
        places += [(str(p), data) for p, data in written_files(directory)]
    leaks = [
        (where, piece)
        for where, data in places
        for secret in secrets
        for piece in fragments(secret)
        if piece.encode() in data
    ]
    leaks += [(where, m.decode()) for where, data in places for m in SYNAPSE_TOKEN.findall(data)]
    assert leaks == []


def no_traceback(result: CliResult) -> bool:
    return not any(line.startswith("Traceback") for line in result.output.splitlines())


async def test_a_debug_run_on_discord_and_matrix_writes_no_secret_anywhere(
    tmp_path: Path, fake_ollama: FakeOllama, synapse: SynapseServer, human: Human
) -> None:
    logs = tmp_path / "output"  # inside tmp_path: searched with everything else
    bot_id, access_token = synapse.register(unique("leakbot"), password=MATRIX_PASSWORD)
    synapse.lift_ratelimit(bot_id)
    room_id = await human.create_room(invite=(bot_id,))
    async with FakeDiscord() as fake:
        fake.valid_token = DISCORD_TOKEN  # the bot must really send it, to Discord only
        guild = fake.add_guild("test server")
        general = fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        fake.add_member(guild, alice)
        body = (
            '[logging]\nlevel = "DEBUG"\nlog_bodies = true\n\n'
            f'[discord]\napi_base_url = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n'
            "guild_ready_timeout = 0.05\n\n"
            f'[matrix]\nhomeserver = "{synapse.url}"\nuser_id = "{bot_id}"\n'
            "sync_timeout_ms = 1000\n"
        )
        config = write_config(tmp_path, body)
        env = {
            "OLLAMA_HOST": fake_ollama.url,
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "MATRIX_ACCESS_TOKEN": access_token,
            "MATRIX_PASSWORD": MATRIX_PASSWORD,  # set but unused (the token wins): still secret
        }
        args = ("--config", str(config), "run")
        async with running_ollabot(*args, workdir=tmp_path, logs=logs, env=env) as run:
            await fake.wait_connected(within=30)
            await human.wait_joined(room_id, bot_id)
            mention = f"<@{fake.bot_user.id}>"

            async def ask_both(text: str, expected: str) -> None:
                await fake.post_message(
                    alice, general, f"{mention} {text}", mentions=[fake.bot_user]
                )
                asked = await human.send(room_id, text, mention=bot_id)
                await fake.wait_for(
                    lambda: any(expected in m.content for m in fake.bot_messages_in(general.id)),
                    within=30,
                )
                await eventually(lambda: matrix_reply_contains(human, room_id, asked, expected))

            await ask_both("hello", "echo: hello")
            await fake_ollama.stop()  # an error on both platforms
            await ask_both("are you there?", "Ollama")
            await fake_ollama.start()
            await ask_both("back?", "echo: back?")

    result = run.result
    assert result is not None
    assert result.code == 0, result.output
    assert no_traceback(result)
    assert '"level": "DEBUG"' in result.stderr  # DEBUG records really were written
    assert (tmp_path / "ollabot.db").exists()
    secrets = [DISCORD_TOKEN, access_token, MATRIX_PASSWORD]
    assert_nothing_leaks(secrets, result.output, tmp_path)


async def test_an_mcp_servers_env_secret_reaches_the_server_and_nothing_else(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    # The value of FILES_API_KEY goes to the stdio MCP server as API_KEY; the server proves it
    # got it by answering its SHA-256. A DEBUG run that lists, calls and logs bodies must not
    # write the value anywhere.
    fake_ollama.add_model("llama3.2", capabilities=["completion", "tools"])
    fake_ollama.script(
        Reply(tool_calls=[{"name": "files__key_digest", "arguments": {}}]),
        Reply.text("The key is in place."),
    )
    async with FakeDiscord() as fake:
        fake.valid_token = DISCORD_TOKEN
        guild = fake.add_guild("test server")
        general = fake.add_channel(guild, "general")
        mod = fake.add_user("mod")
        fake.add_member(guild, mod, [fake.add_role(guild, "Mods", PERM_MANAGE_CHANNELS)])
        body = (
            '[logging]\nlevel = "DEBUG"\nlog_bodies = true\n\n'
            f'[discord]\napi_base_url = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n'
            "guild_ready_timeout = 0.05\n\n"
            f'[[mcp.servers]]\nname = "files"\ncommand = {json.dumps(sys.executable)}\n'
            f"args = [{json.dumps(str(FILES_SCRIPT))}]\n"
            'env = { API_KEY = "FILES_API_KEY" }\n'
        )
        config = write_config(tmp_path, body)
        env = {
            "OLLAMA_HOST": fake_ollama.url,
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "FILES_API_KEY": MCP_SECRET,
        }
        args = ("--config", str(config), "run")
        logs = tmp_path / "output"
        async with running_ollabot(*args, workdir=tmp_path, logs=logs, env=env) as run:
            await fake.wait_connected(within=30)
            allowed = await fake.send_slash(
                mod, general, "tools", subcommand="allow", options={"tool": "files.*"}
            )
            await fake.wait_for(lambda: allowed.original_id, within=30)

            async def server_listed() -> bool:
                # The server starts in the background: wait until its tools are offered.
                listed = await fake.send_slash(mod, general, "tools", subcommand="list")
                msg = await fake.wait_for(
                    lambda: listed.original_id and fake.messages[listed.original_id], within=30
                )
                return "`files.key_digest`" in msg.content

            await eventually(server_listed, within=60)
            await fake.post_message(
                mod, general, f"<@{fake.bot_user.id}> key?", mentions=[fake.bot_user]
            )
            await fake.wait_for(
                lambda: any(
                    "The key is in place." in m.content for m in fake.bot_messages_in(general.id)
                ),
                within=60,
            )

    digest = hashlib.sha256(MCP_SECRET.encode()).hexdigest()
    tool_results = [
        m["content"] for m in fake_ollama.requests[-1]["messages"] if m["role"] == "tool"
    ]
    assert tool_results == [digest]  # the server had the value
    result = run.result
    assert result is not None
    assert result.code == 0, result.output
    assert no_traceback(result)
    assert '"level": "DEBUG"' in result.stderr
    assert_nothing_leaks([MCP_SECRET, DISCORD_TOKEN], result.output, tmp_path)


async def matrix_reply_contains(human: Human, room_id: str, event_id: str, text: str) -> bool:
    for event in await human.events(room_id):
        content: dict[str, Any] = event["content"]
        relates = content.get("m.relates_to", {})
        answers = relates.get("m.in_reply_to", {}).get("event_id") == event_id
        if answers and text in await human.visible_text(room_id, event["event_id"]):
            return True
    return False


async def test_a_password_login_writes_neither_the_password_nor_the_token_it_got(
    tmp_path: Path, fake_ollama: FakeOllama, synapse: SynapseServer, human: Human
) -> None:
    bot_id, _ = synapse.register(unique("leakbot"), password=MATRIX_PASSWORD)
    synapse.lift_ratelimit(bot_id)
    room_id = await human.create_room(invite=(bot_id,))
    body = (
        '[logging]\nlevel = "DEBUG"\nlog_bodies = true\n\n'
        f'[matrix]\nhomeserver = "{synapse.url}"\nuser_id = "{bot_id}"\nsync_timeout_ms = 1000\n'
    )
    config = write_config(tmp_path, body)
    env = {"OLLAMA_HOST": fake_ollama.url, "MATRIX_PASSWORD": MATRIX_PASSWORD}
    args = ("--config", str(config), "run")
    async with running_ollabot(*args, workdir=tmp_path, logs=tmp_path / "output", env=env) as run:
        await human.wait_joined(room_id, bot_id)
        asked = await human.send(room_id, "hi", mention=bot_id)
        await eventually(lambda: matrix_reply_contains(human, room_id, asked, "echo: hi"))

    result = run.result
    assert result is not None
    assert result.code == 0, result.output
    assert '"level": "DEBUG"' in result.stderr
    # The access token the login returned is unknown here: SYNAPSE_TOKEN finds any of them.
    assert_nothing_leaks([MATRIX_PASSWORD], result.output, tmp_path)


async def test_check_with_every_secret_set_prints_none_of_them(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    body = (
        '[logging]\nlevel = "DEBUG"\n\n[discord]\n\n'
        '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    )
    config = write_config(tmp_path, body)
    access_token = "syt_Y2FuYXJ5_CanaryMatrixAccessToken_1a2b3c"
    env = {
        "OLLAMA_HOST": fake_ollama.url,
        "DISCORD_TOKEN": DISCORD_TOKEN,
        "MATRIX_ACCESS_TOKEN": access_token,
        "MATRIX_PASSWORD": MATRIX_PASSWORD,
    }
    result = await run_ollabot(
        "--config", str(config), "--log-level", "DEBUG", "check", cwd=tmp_path, env=env
    )

    assert result.code == 0, result.output
    assert "[ok] discord: ready (DISCORD_TOKEN is set)" in result.stdout
    assert "MATRIX_ACCESS_TOKEN is set" in result.stdout
    assert no_traceback(result)
    assert_nothing_leaks([DISCORD_TOKEN, access_token, MATRIX_PASSWORD], result.output, tmp_path)


async def test_a_token_discord_refuses_is_named_in_the_error_without_its_value(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    async with FakeDiscord() as fake:
        fake.valid_token = "the-real-token-is-something-else"
        body = (
            '[logging]\nlevel = "DEBUG"\n\n'
            f'[discord]\napi_base_url = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n'
        )
        config = write_config(tmp_path, body)
        env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": DISCORD_TOKEN}
        result = await run_ollabot("--config", str(config), "run", cwd=tmp_path, env=env)

    assert result.code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last == "ollabot: configuration error: Discord refused the bot token (DISCORD_TOKEN)."
    assert no_traceback(result)
    assert_nothing_leaks([DISCORD_TOKEN], result.output, tmp_path)


def test_the_search_finds_a_whole_cut_or_synapse_shaped_secret(tmp_path: Path) -> None:
    # The searches above prove something only if they can find a leak.
    (tmp_path / "bot.db").write_bytes(b"...." + DISCORD_TOKEN[:40].encode() + b"....")
    for output, directory in [
        (f"token={DISCORD_TOKEN}", None),
        (f"cut: {DISCORD_TOKEN[5:50]}", None),
        ("whoami with syt_bGVha2JvdA_AbCdEfGhIjKlMnOp_0a1b2c", None),
        ("", tmp_path),
    ]:
        with pytest.raises(AssertionError):
            assert_nothing_leaks([DISCORD_TOKEN], output, directory)
