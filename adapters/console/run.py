"""Starting the terminal chat on the process's standard input and output."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, TextIO

from adapters.console.chat import ConsoleChat
from adapters.console.lines import read_lines

if TYPE_CHECKING:
    from bot.conversation.engine import Engine

__all__ = ["console_chat", "run_console"]

GREETING = "ollabot terminal chat. Type a message, /help for commands, /quit to leave."


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers run as an arbitrary uid).
        return "you"


def console_chat(engine: Engine, *, stdin: TextIO, stdout: TextIO) -> ConsoleChat:
    """A chat on these streams; interactive (prompt, in-place progress bar) when both are ttys."""
    interactive = stdin.isatty() and stdout.isatty()
    return ConsoleChat(engine, out=stdout, user=_user_name(), interactive=interactive)


async def run_console(
    engine: Engine,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    chat: ConsoleChat | None = None,
) -> None:
    """Chat on standard input and output until ``/quit`` or end of input.

    Args:
        engine: The conversation engine.
        stdin: Input stream; ``sys.stdin`` by default.
        stdout: Output stream; ``sys.stdout`` by default.
        chat: A chat made beforehand with :func:`console_chat` (so the caller can
            :meth:`~ConsoleChat.interrupt` it on Ctrl-C); one is made when ``None``.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    chat = chat or console_chat(engine, stdin=stdin, stdout=stdout)
    if chat.interactive:
        stdout.write(GREETING + "\n")
        stdout.flush()
    await chat.run(read_lines(stdin))
