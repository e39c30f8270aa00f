"""``ollabot run`` and ``ollabot chat``: run adapters until a signal, then shut down cleanly.

On SIGINT or SIGTERM the adapters are cancelled, the engine lets in-flight replies finish for a
grace period and marks the rest, and the store is closed. In the terminal chat, Ctrl-C first stops
the reply being written; pressed again (or with no reply running) it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from adapters.console import console_chat, rich_terminal, run_console
from bot.config import BotConfig
from bot.conversation.engine import Engine
from bot.errors import ConfigError, OllamaError
from ollabot_app.wiring import adapter_statuses, open_engine

__all__ = ["run_bot", "run_chat"]

logger = logging.getLogger(__name__)

Interrupt = Callable[[], Awaitable[bool]]


async def run_bot(
    config: BotConfig, *, source: str, err: TextIO | None = None, plain: bool = False
) -> None:
    """Start every configured adapter; the terminal chat when none is.

    ``err`` is standard error as it is at the call when ``None`` (not at import).

    Raises:
        ConfigError: an adapter's table is invalid or its secret is missing.
    """
    err = err or sys.stderr
    configured = [s for s in adapter_statuses(config, source=source) if s.configured]
    problems = [s.problem for s in configured if s.problem]
    if problems:
        raise ConfigError("; ".join(problems), key=configured[0].name)
    if not configured:
        err.write(
            "No adapter is configured (no [discord] or [matrix] table in the config); "
            "starting the terminal chat.\n"
        )
        await run_chat(config, err=err, plain=plain)
        return
    async with open_engine(config) as engine:
        await _warn_if_ollama_down(engine, err)
        tasks = [
            asyncio.create_task(status.start(engine), name=f"adapter-{status.name}")
            for status in configured
            if status.start is not None
        ]
        names = ", ".join(s.name for s in configured)
        err.write(f"ollabot is running ({names}). Stop it with Ctrl-C or SIGTERM.\n")
        ended = await _until_signal(
            tasks, interrupt=None, engine=engine, grace=config.limits.shutdown_grace, err=err
        )
        if ended:
            # An adapter returned by itself: without it the bot is not doing its job.
            err.write(f"The {ended} adapter stopped; shutting down.\n")
        logger.info("shutting down", extra={"adapters": names})


async def run_chat(config: BotConfig, *, err: TextIO | None = None, plain: bool = False) -> None:
    """The terminal chat on standard input and output.

    Args:
        config: The bot configuration.
        err: Where start-up warnings go (standard error as it is at the call when ``None``).
        plain: Plain text even on a colour terminal (``--plain``).
    """
    err = err or sys.stderr
    async with open_engine(config) as engine:
        await _warn_if_ollama_down(engine, err)
        rich = rich_terminal(sys.stdin, sys.stdout, env=os.environ, plain=plain)
        chat = console_chat(engine, stdin=sys.stdin, stdout=sys.stdout, stderr=err, rich=rich)
        # The prompt's history lives beside the database, in the bot's data directory.
        history = config.storage.path.parent / "console_history"
        task = asyncio.create_task(
            run_console(engine, chat=chat, history=history), name="adapter-console"
        )
        await _until_signal(
            [task],
            interrupt=chat.interrupt,
            engine=engine,
            grace=config.limits.shutdown_grace,
            err=err,
        )


async def _warn_if_ollama_down(engine: Engine, err: TextIO) -> None:
    """Say at once when Ollama is unreachable; the bot still starts (Ollama may come later)."""
    try:
        await engine.model.version()
    except OllamaError as exc:
        err.write(f"warning: {exc.user_message} Replies fail until it is reachable.\n")


async def _until_signal(
    tasks: list[asyncio.Task[Any]],
    *,
    interrupt: Interrupt | None,
    engine: Engine | None = None,
    grace: float = 0.0,
    err: TextIO | None = None,
) -> str | None:
    """Wait until a task ends or SIGINT/SIGTERM asks to stop; shut down; cancel the rest.

    On the first signal the engine takes no new turns (a new message is told the bot is
    restarting) and the replies being written get up to ``grace`` seconds to finish while the
    adapters keep running. A second signal ends the wait at once. Then the adapters are
    cancelled: a reply still being written is marked interrupted.

    Returns:
        The name of the task that ended by itself (``adapter-`` prefix removed), or ``None``
        when a signal asked to stop.

    Raises:
        Exception: the error of a task that failed, after the others were cancelled.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()
    pending_interrupts: set[asyncio.Task[None]] = set()

    async def on_interrupt() -> None:
        # Ctrl-C in the terminal chat stops the reply first; with none running, it leaves.
        if interrupt is None or not await interrupt():
            stop.set()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            force.set()  # a second signal while shutting down: stop waiting for replies
        elif signum is signal.SIGINT:
            task = asyncio.create_task(on_interrupt())
            pending_interrupts.add(task)
            task.add_done_callback(pending_interrupts.discard)
        else:
            stop.set()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            # Not available on Windows or outside the main thread; Ctrl-C then raises instead.
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    stopper = asyncio.create_task(stop.wait(), name="wait-for-signal")
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done and engine is not None:
            await _drain(engine, grace, force, err)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        for task in [*tasks, stopper, *pending_interrupts]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, *pending_interrupts, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error
    if stopper in done:
        return None
    return next(t.get_name().removeprefix("adapter-") for t in tasks if t in done)


async def _drain(engine: Engine, grace: float, force: asyncio.Event, err: TextIO | None) -> None:
    """Take no new turns; wait up to ``grace`` for the replies being written, or a 2nd signal."""
    engine.begin_shutdown(grace)
    busy = engine.replies_in_progress
    if err is not None:
        err.write(
            f"Shutting down: new messages are told the bot is restarting; {busy} "
            f"repl{'y' if busy == 1 else 'ies'} in progress may finish within {grace:g} s "
            "(Ctrl-C or SIGTERM again to stop at once).\n"
        )
    drained = asyncio.create_task(engine.drain())
    forced = asyncio.create_task(force.wait())
    try:
        await asyncio.wait({drained, forced}, return_when=asyncio.FIRST_COMPLETED)
        if force.is_set():
            engine.end_grace()
    finally:
        for task in (drained, forced):
            task.cancel()
        await asyncio.gather(drained, forced, return_exceptions=True)
    left = engine.replies_in_progress
    if left and err is not None:
        err.write(
            f"{left} repl{'y is' if left == 1 else 'ies are'} cut short, marked interrupted.\n"
        )
