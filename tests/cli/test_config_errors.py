"""A bad configuration: one line naming the key and what is wrong, exit 2, no traceback.

Most cases call ``main()`` in this process (an uncaught exception would fail the test just as a
traceback would); one runs the real command in a child process to see exactly what a user sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ollabot_app.cli import main
from tests.cli.runner import run_ollabot, write_config

SECRET = "sekrit-discord-token-0123456789"
MATRIX_SECRET = "sekrit-matrix-password-987"
_ENV_VARS = ("DISCORD_TOKEN", "MATRIX_ACCESS_TOKEN", "MATRIX_PASSWORD", "OLLAMA_HOST")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment with the secrets set (and nothing inherited from the developer's)."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("MATRIX_PASSWORD", MATRIX_SECRET)
    return monkeypatch


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert SECRET not in err
    assert MATRIX_SECRET not in err
    return lines[0]


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
        pytest.param(
            '[[mcp.servers]]\nname = "files"\ncommand = "x"\nenv = { KEY = "NOT_SET_ANYWHERE" }\n',
            "mcp.servers.0.env.KEY: the environment variable NOT_SET_ANYWHERE is not set",
            id="mcp-env-missing",
        ),
        pytest.param(
            '[[mcp.servers]]\nname = "files"\ncommand = "x"\nurl = "http://h/mcp"\n',
            "mcp.servers.0: Value error, give either command (stdio) or url",
            id="mcp-both-transports",
        ),
        pytest.param(
            '[[mcp.servers]]\nname = "a.b"\nurl = "http://h/mcp"\n',
            "mcp.servers.0.name:",
            id="mcp-dotted-name",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key_with_exit_2(
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: str,
    expected: str,
) -> None:
    config = write_config(tmp_path, body)

    code = main(["--config", str(config), "run"])

    line = _one_error_line(capsys)
    assert code == 2
    assert line.startswith("ollabot: configuration error:")
    assert expected in line


def test_missing_config_file_named_explicitly_is_an_error(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(tmp_path / "nowhere.toml"), "check"])

    assert code == 2
    assert "nowhere.toml: no such file" in _one_error_line(capsys)


def test_configured_discord_without_its_token_is_a_config_error(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("DISCORD_TOKEN")
    config = write_config(tmp_path, "[discord]\n")

    code = main(["--config", str(config), "run"])

    assert code == 2
    assert "DISCORD_TOKEN" in _one_error_line(capsys)


def test_matrix_without_credentials_names_both_variables(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("MATRIX_PASSWORD")
    body = '[matrix]\nhomeserver = "http://127.0.0.1:9"\nuser_id = "@bot:example.org"\n'
    config = write_config(tmp_path, body)

    code = main(["--config", str(config), "run"])

    assert code == 2
    assert "MATRIX_ACCESS_TOKEN or MATRIX_PASSWORD" in _one_error_line(capsys)


def test_unusable_database_path_names_it(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = tmp_path / "bot.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "a-file" / "bot.db"}"\n')

    code = main(["--config", str(config), "chat"])

    line = _one_error_line(capsys)
    assert code == 1
    assert str(tmp_path / "a-file") in line
    assert "storage.path is" in line


async def test_the_real_command_prints_no_traceback_and_no_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[defaults]\nmodle = "llama3.2"\n')

    result = await run_ollabot(
        "--config", str(config), "run", cwd=tmp_path, env={"DISCORD_TOKEN": SECRET}
    )

    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "defaults.modle: unknown key" in result.stderr
    assert "Traceback" not in result.output
    assert SECRET not in result.output
