"""A shutdown keeps its promise (issue 10, point 3), with the real ``ollabot run`` process.

On SIGTERM the bot takes no new turns (who writes is told the bot is restarting), lets the
replies being written finish within ``limits.shutdown_grace``, then marks the rest
interrupted, closes the database and exits 0; a second signal stops the wait at once. Each
platform is driven as its users would: the fake Discord, a real Synapse, a terminal's pipes.
The fake Ollama holds a reply open until the test releases it, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from tests.discord.conftest import World
from tests.discord.helpers import is_finished, without_footer
from tests.fakes.fake_ollama import FakeOllama, Reply
from tests.fakes.synapse import SynapseServer
from tests.matrix.conftest import Human, unique
from tests.matrix.conftest import eventually as until
from tests.reliability.conftest import BotProcess, SpawnBot, discord_bot_toml, run_bot_process
from tests.reliability.test_faults_process import eventually, mention

RESTARTING = "The bot is restarting; send your message again in a minute."
CUT = "The bot is restarting; this reply was cut short."


SpawnTerminal = Callable[[Path, Mapping[str, str]], Awaitable[BotProcess]]


@pytest.fixture
async def spawn_terminal() -> AsyncIterator[SpawnTerminal]:
    """``ollabot --config CONFIG run`` with no adapter configured: the terminal chat on pipes."""
    started: list[BotProcess] = []

    async def spawn(config: Path, env: Mapping[str, str]) -> BotProcess:
        child = await run_bot_process(config, env, stdin=asyncio.subprocess.PIPE)
        started.append(child)
        return child

    yield spawn
    for child in started:
        with contextlib.suppress(ProcessLookupError):
            await child.kill()


def held_reply(release: asyncio.Event | None = None) -> Reply:
    """Two words shown, then the stream waits for ``release`` (or for the bot to hang up)."""
    return Reply(tokens=["long ", "answer ", "done"], hold_after=2, release=release)


async def discord_bot(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path, grace: float
) -> BotProcess:
    config = discord_bot_toml(tmp_path, world.fake, limits=f"shutdown_grace = {grace}")
    bot = await spawn_bot(config, {"OLLAMA_HOST": fake_ollama.url, "DISCORD_TOKEN": "t0k3n"})
    await world.fake.wait_connected(within=30)
    return bot


async def reply_started(world: World, fake_ollama: FakeOllama) -> int:
    """Ask the bot something; the id of its reply once the first words are shown."""
    await mention(world, "tell me")
    fake = world.fake
    first = await eventually(
        lambda: next(
            (m for m in fake.bot_messages_in(world.general.id) if "long" in m.content), None
        )
    )
    await fake_ollama.wait_for_requests(1)
    return first.id


async def test_discord_sigterm_lets_the_reply_finish_and_tells_newcomers_it_restarts(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    fake = world.fake
    release = asyncio.Event()
    fake_ollama.script(held_reply(release))
    bot = await discord_bot(world, fake_ollama, spawn_bot, tmp_path, grace=60)
    reply = await reply_started(world, fake_ollama)

    bot.proc.send_signal(signal.SIGTERM)
    await bot.wait_for_output("Shutting down")
    late = await mention(world, "are you there?")
    notice = await eventually(
        lambda: next(
            (m for m in fake.bot_messages_in(world.general.id) if m.reference_id == late.id), None
        )
    )
    await eventually(lambda: is_finished(fake.messages[notice.id]))
    assert RESTARTING in fake.messages[notice.id].content
    release.set()

    assert await bot.wait() == 0
    shown = fake.messages[reply].content
    assert without_footer(shown) == "long answer done"
    assert "interrupted" not in shown
    assert len(fake_ollama.requests) == 1  # the late message never reached the model


async def test_discord_reply_still_running_after_the_grace_is_marked_interrupted(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    fake_ollama.script(held_reply())  # never released: the grace runs out
    bot = await discord_bot(world, fake_ollama, spawn_bot, tmp_path, grace=0.5)
    reply = await reply_started(world, fake_ollama)

    assert await bot.terminate() == 0
    shown = world.fake.messages[reply].content
    assert shown.startswith("long answer")
    assert CUT in shown
    assert "cut short, marked interrupted" in bot.log


async def test_discord_second_signal_stops_waiting_at_once(
    world: World, fake_ollama: FakeOllama, spawn_bot: SpawnBot, tmp_path: Path
) -> None:
    fake_ollama.script(held_reply())
    bot = await discord_bot(world, fake_ollama, spawn_bot, tmp_path, grace=3600)
    reply = await reply_started(world, fake_ollama)

    bot.proc.send_signal(signal.SIGTERM)
    await bot.wait_for_output("Shutting down")
    bot.proc.send_signal(signal.SIGINT)
    assert await bot.wait() == 0  # well within the hour of grace
    assert CUT in world.fake.messages[reply].content


async def test_matrix_sigterm_lets_the_reply_finish_and_tells_newcomers_it_restarts(
    synapse: SynapseServer,
    human: Human,
    fake_ollama: FakeOllama,
    spawn_bot: SpawnBot,
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    fake_ollama.script(held_reply(release))
    user_id, token = synapse.register(unique("ollabot"))
    synapse.lift_ratelimit(user_id)
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "ollabot.db"}"\n\n'
        "[limits]\nshutdown_grace = 60\n\n"
        f'[matrix]\nhomeserver = "{synapse.url}"\nuser_id = "{user_id}"\n'
        "sync_timeout_ms = 1000\n",
        encoding="utf-8",
    )
    bot = await spawn_bot(config, {"OLLAMA_HOST": fake_ollama.url, "MATRIX_ACCESS_TOKEN": token})
    room = await human.create_room(invite=(user_id,))
    await human.wait_joined(room, user_id)
    asked = await human.send(room, "tell me", mention=user_id)
    [reply, *_] = await until(lambda: human.replies_to(room, user_id, asked))
    await fake_ollama.wait_for_requests(1)

    bot.proc.send_signal(signal.SIGTERM)
    await bot.wait_for_output("Shutting down")
    late = await human.send(room, "are you there?", mention=user_id)
    [notice, *_] = await until(lambda: human.replies_to(room, user_id, late))

    async def told() -> bool:
        return RESTARTING in await human.visible_text(room, notice["event_id"])

    await until(told)
    release.set()
    assert await bot.wait() == 0
    assert await human.visible_text(room, reply["event_id"]) == "long answer done"
    assert len(fake_ollama.requests) == 1


async def test_terminal_sigterm_lets_the_reply_finish_then_exits(
    fake_ollama: FakeOllama, spawn_terminal: SpawnTerminal, tmp_path: Path
) -> None:
    release = asyncio.Event()
    fake_ollama.script(held_reply(release))
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[storage]\npath = "{tmp_path / "ollabot.db"}"\n\n[limits]\nshutdown_grace = 60\n',
        encoding="utf-8",
    )
    bot: BotProcess = await spawn_terminal(config, {"OLLAMA_HOST": fake_ollama.url})
    assert bot.proc.stdin is not None
    bot.proc.stdin.write(b"tell me\n")
    await bot.proc.stdin.drain()
    # The terminal prints whole lines: the reply is under way once the model holds it open.
    await eventually(lambda: fake_ollama.streams_held)

    bot.proc.send_signal(signal.SIGTERM)
    await bot.wait_for_output("Shutting down")
    release.set()
    assert await bot.wait() == 0
    # stdout and stderr share the pipe: the shutdown notice lands inside the streamed reply.
    assert "long answer " in bot.log
    assert "done\n[llama3.2" in bot.log  # the whole reply, and its footer: complete
    assert "interrupted" not in bot.log
