"""Starting the terminal chat on the process's standard input and output.

On a terminal that can show colour, the chat uses prompt_toolkit for input and rich for output.
Anywhere else (piped input or output, ``NO_COLOR``, ``TERM=dumb``, or ``--plain``) it is plain
text, and standard output carries exactly what the model wrote.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from adapters.console.chat import ConsoleChat, Screen, command_words
from adapters.console.lines import read_lines
from adapters.console.plain import PlainScreen
from adapters.console.prompt import ChatCompleter, ModelNames, PromptInput
from adapters.console.rich_screen import RichScreen

if TYPE_CHECKING:
    from bot.conversation.engine import Engine

__all__ = ["GREETING", "console_chat", "rich_terminal", "run_console"]

GREETING = "ollabot terminal chat. Type a message, /help for commands, /quit to leave."
HISTORY_FILE = "console_history"


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No passwd entry (some containers run as an arbitrary uid).
        return "you"


def rich_terminal(
    stdin: TextIO, stdout: TextIO, *, env: Mapping[str, str], plain: bool = False
) -> bool:
    """Whether to draw the chat with colour, line editing and rendered Markdown.

    Args:
        stdin: Standard input.
        stdout: Standard output.
        env: The process environment (``NO_COLOR``, ``TERM``).
        plain: ``--plain`` was given.
    """
    if plain or not (stdin.isatty() and stdout.isatty()):
        return False
    if env.get("NO_COLOR"):  # https://no-color.org: set and not empty
        return False
    return env.get("TERM", "") != "dumb"


def console_chat(
    engine: Engine,
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO | None = None,
    rich: bool = False,
) -> ConsoleChat:
    """A chat on these streams, drawn with rich when ``rich``, else as plain text."""
    interactive = stdin.isatty() and stdout.isatty()
    screen: Screen
    if rich:
        screen = RichScreen(Console(file=stdout, highlight=False))
    else:
        screen = PlainScreen(stdout, stderr or sys.stderr, interactive=interactive)
    return ConsoleChat(engine, screen=screen, user=_user_name(), interactive=interactive)


async def run_console(
    engine: Engine,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    chat: ConsoleChat | None = None,
    history: Path | None = None,
) -> None:
    """Chat on standard input and output until ``/quit`` or end of input.

    Args:
        engine: The conversation engine.
        stdin: Input stream; ``sys.stdin`` by default.
        stdout: Output stream; ``sys.stdout`` by default.
        chat: A chat made beforehand with :func:`console_chat` (so the caller can
            :meth:`~ConsoleChat.interrupt` it on Ctrl-C); a plain one is made when ``None``.
        history: The file that keeps what was typed across runs (the prompt's history);
            ``console_history`` in the working directory when ``None``.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    chat = chat or console_chat(engine, stdin=stdin, stdout=stdout)
    screen = chat.screen
    if isinstance(screen, RichScreen):
        screen.console.print(GREETING, style="bold")
        models = ModelNames(engine.model_names)
        prompt = PromptInput(
            history=history or Path(HISTORY_FILE),
            completer=ChatCompleter(command_words(), models),
            toolbar=chat.status.render,
        )
        await chat.run_prompt(prompt, models=models, quiet=lambda: _no_echo(stdin))
        return
    if chat.interactive:
        stdout.write(GREETING + "\n")
        stdout.flush()
    await chat.run(read_lines(stdin))


@contextlib.contextmanager
def _no_echo(stream: TextIO) -> Iterator[None]:
    """While the bot works, keys are not echoed into what it draws: they wait for the prompt.

    Canonical mode is off too, so that every key (Ctrl-D included, which the terminal would
    otherwise turn into an end of file nobody reads) reaches the next prompt as typed. Ctrl-C
    still sends SIGINT, which stops the reply.
    """
    try:
        import termios  # POSIX only: elsewhere keys are simply echoed
    except ImportError:
        yield
        return
    try:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        yield
        return
    quiet = list(saved)
    quiet[3] = saved[3] & ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)
