"""Fixtures for the reliability suite (faults, hostile input, load).

Several parts of the suite share this file: add fixtures, do not change the ones here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.runner import REPO, child_env
from tests.discord.conftest import bot, bot_config, engine, fake_discord, make_engine, world
from tests.fakes.fake_discord import FakeDiscord
from tests.matrix.conftest import human, new_human, start_bot, synapse

# Re-exported so that pytest finds the Discord and Matrix fixtures in this directory too.
# (The Matrix ``synapse`` fixture is session-scoped: this directory gets its own Synapse.)
__all__ = [
    "bot",
    "bot_config",
    "engine",
    "fake_discord",
    "human",
    "make_engine",
    "new_human",
    "start_bot",
    "synapse",
    "world",
]


# --- a real bot process (the faults suite) -------------------------------------------------------


@dataclass
class BotProcess:
    """``python -m ollabot_app run`` in a child process; its output (stdout and stderr) kept."""

    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        """Everything the bot wrote so far."""
        return "".join(self.output)

    async def _read(self) -> None:
        # Drained all the time: a full pipe would block the bot.
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    async def wait_for_output(self, text: str, within: float = 30.0) -> None:
        """Wait until the bot wrote ``text`` (polls; not a timing assertion)."""
        async with asyncio.timeout(within):
            while text not in self.log:
                if self.proc.returncode is not None:
                    raise AssertionError(f"the bot exited before writing {text!r}:\n{self.log}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no cleanup runs in the bot."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.wait()

    async def terminate(self) -> int:
        """SIGTERM, the graceful stop; the exit code."""
        if self.proc.returncode is None:
            self.proc.terminate()
        return await self.wait()

    async def wait(self, within: float = 60.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self._reader is not None:
            await self._reader
        return code


SpawnBot = Callable[[Path, Mapping[str, str]], Awaitable[BotProcess]]


async def run_bot_process(
    config: Path, env: Mapping[str, str], *, stdin: int = asyncio.subprocess.DEVNULL
) -> BotProcess:
    """``ollabot --config CONFIG run`` with a clean environment plus ``env``; output is read."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ollabot_app",
        "--config",
        str(config),
        "run",
        cwd=config.parent,
        env=child_env({"PYTHONPATH": str(REPO), **env}),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    child = BotProcess(proc)
    child._reader = asyncio.create_task(child._read())
    return child


@pytest.fixture
async def spawn_bot() -> AsyncIterator[SpawnBot]:
    """Start ``ollabot --config CONFIG run`` with a clean environment plus ``env``.

    Any bot still running at the end of the test is killed.
    """
    started: list[BotProcess] = []

    async def spawn(config: Path, env: Mapping[str, str]) -> BotProcess:
        child = await run_bot_process(config, env)
        started.append(child)
        return child

    yield spawn
    for child in started:
        with contextlib.suppress(ProcessLookupError):
            await child.kill()


def discord_bot_toml(
    directory: Path, fake: FakeDiscord, *, extra: str = "", limits: str = ""
) -> Path:
    """A config file for a bot process on the fake Discord, its database in ``directory``.

    Ollama's address comes from ``OLLAMA_HOST`` in the child's environment. Retries are quick
    so that an outage is reported at once; edits are paced faster than on Discord.
    """
    path = directory / "bot.toml"
    path.write_text(
        f"""
[storage]
path = "{directory / "ollabot.db"}"

[ollama]
retry_attempts = 3
retry_initial_backoff = 0.02
retry_max_backoff = 0.05

[limits]
user_messages_per_minute = 1000
{limits}

[discord]
api_base_url = "{fake.api_base}"
gateway_url = "{fake.gateway_url}"
guild_ready_timeout = 0.05
edits_per_second = 20.0
edit_burst = 5
{extra}
""",
        encoding="utf-8",
    )
    return path
