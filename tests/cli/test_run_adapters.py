"""``ollabot run`` wires the configured adapters to one engine and shuts down on SIGTERM.

Discord is the configured adapter here, pointed at the wire-level fake Discord through its own
``api_base_url`` / ``gateway_url`` settings, so the child process runs the real discord.py
client against it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.cli.runner import finish, start_ollabot, write_config
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_ollama import FakeOllama

TOKEN = "sekrit-discord-token-0123456789"


async def test_run_starts_discord_answers_and_stops_cleanly_on_sigterm(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    async with FakeDiscord() as fake:
        guild = fake.add_guild("test server")
        general = fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        fake.add_member(guild, alice)
        body = (
            "[discord]\n"
            f'api_base_url = "{fake.api_base}"\n'
            f'gateway_url = "{fake.gateway_url}"\n'
            "guild_ready_timeout = 0.05\n"
        )
        config = write_config(tmp_path, body)
        env = {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": TOKEN}
        proc = await start_ollabot("--config", str(config), "run", cwd=tmp_path, env=env)
        try:
            await fake.wait_connected(within=30)
            mention = f"<@{fake.bot_user.id}>"
            await fake.post_message(alice, general, f"{mention} hello", mentions=[fake.bot_user])

            def answered() -> bool:
                return any("echo: hello" in m.content for m in fake.messages.values())

            await fake.wait_for(answered, within=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            result = await finish(proc)

    assert result.code == 0, result.output
    assert "running (discord)" in result.stderr
    # No uncaught traceback. (A record logged with exc_info is one JSON line, not checked here:
    # discord.py logs one when it is closed before it dispatched "ready".)
    assert not any(line.startswith("Traceback") for line in result.output.splitlines())
    assert TOKEN not in result.output
