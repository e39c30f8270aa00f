"""``ollabot check`` and ``ollabot models`` against the fake Ollama, and with Ollama down."""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
from pathlib import Path

import pytest
from nio.crypto import OlmAccount
from nio.store import DefaultStore

from ollabot_app.cli import main
from tests.cli.runner import closed_port_url, run_ollabot, write_config
from tests.fakes.fake_ollama import FakeOllama
from tests.fakes.mcp_launch import FILES_SCRIPT

SECRET = "sekrit-discord-token-0123456789"


async def test_check_reports_ollama_models_and_adapters_without_printing_secrets(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path, "[discord]\n")
    env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": SECRET}

    result = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)

    assert result.code == 0, result.output
    assert f"reachable at {fake_ollama.url}" in result.stdout
    assert "llama3.2:latest" in result.stdout
    assert "[ok] default model: llama3.2 is installed" in result.stdout
    assert "[ok] discord: ready (DISCORD_TOKEN is set)" in result.stdout
    assert "[--] matrix: not configured" in result.stdout
    assert SECRET not in result.output
    assert "Traceback" not in result.output


async def test_check_fails_when_an_adapter_misses_its_secret(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    body = '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    config = write_config(tmp_path, body)

    result = await run_ollabot(
        "--config", str(config), "check", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )

    assert result.code == 1
    assert "[!!] matrix: matrix: set MATRIX_ACCESS_TOKEN or MATRIX_PASSWORD" in result.stdout


async def test_check_fails_when_the_default_model_is_not_installed(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path, '[defaults]\nmodel = "qwen3"\n')

    result = await run_ollabot(
        "--config", str(config), "check", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )

    assert result.code == 1
    assert "qwen3 is not installed: ollama pull qwen3" in result.stdout


async def test_models_lists_installed_models(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3:8b", capabilities=["completion", "tools", "thinking"])
    config = write_config(tmp_path)

    result = await run_ollabot(
        "--config", str(config), "models", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )

    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["llama3.2:latest", "qwen3:8b"]
    assert "thinking, tools" in lines[1]


@pytest.mark.parametrize("command", ["check", "models"])
async def test_ollama_down_names_the_host_and_how_to_change_it(
    tmp_path: Path, command: str
) -> None:
    host = closed_port_url()
    config = write_config(tmp_path)

    result = await run_ollabot(
        "--config", str(config), command, cwd=tmp_path, env={"OLLAMA_HOST": host}
    )

    assert result.code == 1
    assert f"Cannot reach Ollama at {host}" in result.output
    assert "OLLAMA_HOST" in result.output
    assert "ollama.host" in result.output
    assert "Traceback" not in result.output


async def test_ollama_host_from_the_config_file_is_used(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path, f'[ollama]\nhost = "{fake_ollama.url}"\n')

    result = await run_ollabot("--config", str(config), "models", cwd=tmp_path)

    assert result.code == 0, result.output
    assert "llama3.2:latest" in result.stdout


async def test_check_reports_matrix_encryption_device_and_crypto_store(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    body = '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    config = write_config(tmp_path, body)
    env = {"OLLAMA_HOST": fake_ollama.url, "MATRIX_ACCESS_TOKEN": SECRET}
    store = tmp_path / "ollabot-matrix-crypto"  # beside the default database, ollabot.db

    before = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    # What the bot leaves after its first login: nio's store with the device's olm account.
    store.mkdir()
    crypto = DefaultStore("@bot:example.org", "BOTDEVICE", str(store))
    crypto.save_account(OlmAccount())
    after = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    (store / "@bot:example.org_BOTDEVICE.db").write_bytes(b"not a database" * 100)
    broken = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)

    assert before.code == 0, before.output
    assert "[ok] matrix encryption: available; no device yet" in before.stdout
    assert after.code == 0, after.output
    assert "[ok] matrix encryption: available; device BOTDEVICE; crypto store" in after.stdout
    assert "is readable" in after.stdout
    assert broken.code == 1
    assert "[!!] matrix encryption: device BOTDEVICE: crypto store" in broken.stdout
    assert "not readable" in broken.stdout
    assert SECRET not in before.output + after.output + broken.output


async def test_check_shows_the_database_size(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    config = write_config(tmp_path)
    env = {"OLLAMA_HOST": fake_ollama.url}
    before = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    assert "is writable (no database yet)" in before.stdout
    (tmp_path / "ollabot.db").write_bytes(b"\0" * 2_500_000)
    (tmp_path / "ollabot.db-wal").write_bytes(b"\0" * 500_000)
    after = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)
    assert "is writable (database 3.0 MB)" in after.stdout


async def test_check_starts_each_mcp_server_and_says_which_is_down(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    body = (
        f'[[mcp.servers]]\nname = "files"\ncommand = {json.dumps(sys.executable)}\n'
        f"args = [{json.dumps(str(FILES_SCRIPT))}]\n"
        'env = { API_KEY = "FILES_API_KEY" }\n\n'
        f'[[mcp.servers]]\nname = "gone"\nurl = "http://user:pw@{closed_port_url()[7:]}/mcp"\n'
    )
    config = write_config(tmp_path, body)
    env = {"OLLAMA_HOST": fake_ollama.url, "FILES_API_KEY": SECRET}

    result = await run_ollabot("--config", str(config), "check", cwd=tmp_path, env=env)

    assert result.code == 1, result.output
    assert re.search(r"\[ok\] mcp files: up \(stdio .*python[^)]*\), \d+ tools", result.stdout)
    assert re.search(
        r"\[!!\] mcp gone: down: .* \(http http://127\.0\.0\.1:\d+/mcp\)", result.stdout
    )
    assert SECRET not in result.output
    assert "pw@" not in result.output
    assert "Traceback" not in result.output
    # The report says which server is down and why: the supervisor's restart warnings would only
    # repeat it, as JSON lines between the report's lines.
    assert "restarting" not in result.stderr, result.stderr


def test_check_in_process_writes_to_standard_output_as_it_is_when_called(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() imports the command modules lazily, often while a test has replaced sys.stdout: an
    # output stream bound at import (a default argument) outlives that test and is closed later
    # (a clean clone's CI run failed with "I/O operation on closed file" in `migrate`).
    import ollabot_app.check as check_module

    stale = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stale)
    importlib.reload(check_module)
    monkeypatch.undo()
    stale.close()
    for name in ("DISCORD_TOKEN", "MATRIX_ACCESS_TOKEN", "MATRIX_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OLLAMA_HOST", closed_port_url())

    code = main(["--config", str(write_config(tmp_path)), "check"])

    out, _ = capsys.readouterr()
    assert code == 1
    assert out.startswith("[ok] config: ")
    assert "[!!] ollama: Cannot reach Ollama" in out
