"""A bad configuration: one line naming the key and what is wrong, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.runner import run_ollabot, write_config

SECRET = "sekrit-discord-token-0123456789"
MATRIX_SECRET = "sekrit-matrix-password-987"
SECRETS = {"DISCORD_TOKEN": SECRET, "MATRIX_PASSWORD": MATRIX_SECRET}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            '[defaults]\nmodle = "llama3.2"\n', "defaults.modle: unknown key", id="unknown"
        ),
        pytest.param(
            '[limits]\nmax_concurrent_generations = "lots"\n',
            "limits.max_concurrent_generations: Input should be a valid integer",
            id="bad-type",
        ),
        pytest.param('[defaults]\nmode = "loud"\n', "defaults.mode:", id="bad-enum"),
        pytest.param("[ollama\nhost = 1\n", "not valid TOML", id="bad-toml"),
        pytest.param('[matrix]\nuser_id = "@bot:example.org"\n', "matrix.homeserver:", id="matrix"),
        pytest.param("[discord]\nallow_dms = 3\n", "discord.allow_dms:", id="discord"),
    ],
)
async def test_bad_config_is_one_line_naming_the_key_with_exit_2(
    tmp_path: Path, body: str, expected: str
) -> None:
    config = write_config(tmp_path, body)

    result = await run_ollabot("--config", str(config), "run", cwd=tmp_path, env=SECRETS)

    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ollabot: configuration error:")
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert SECRET not in result.output
    assert MATRIX_SECRET not in result.output


async def test_missing_config_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    result = await run_ollabot("--config", "nowhere.toml", "check", cwd=tmp_path)

    assert result.code == 2
    assert "nowhere.toml: no such file" in result.stderr
    assert "Traceback" not in result.output


async def test_configured_adapter_without_its_secret_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[discord]\n")

    result = await run_ollabot("--config", str(config), "run", cwd=tmp_path)

    assert result.code == 2
    assert "DISCORD_TOKEN" in result.stderr
    assert "Traceback" not in result.output


async def test_matrix_without_credentials_names_both_variables(tmp_path: Path) -> None:
    body = '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    config = write_config(tmp_path, body)

    result = await run_ollabot("--config", str(config), "run", cwd=tmp_path)

    assert result.code == 2
    assert "MATRIX_ACCESS_TOKEN or MATRIX_PASSWORD" in result.stderr
    assert "Traceback" not in result.output


async def test_unusable_database_path_names_it_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = tmp_path / "bot.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "a-file" / "bot.db"}"\n')

    result = await run_ollabot("--config", str(config), "chat", cwd=tmp_path, stdin="hi\n")

    assert result.code == 1
    assert "storage.path is" in result.stderr
    assert str(tmp_path / "a-file") in result.stderr
    assert "Traceback" not in result.output
