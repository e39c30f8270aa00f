"""The terminal adapter: chat with the bot from standard input and output.

Usage (the ``ollabot chat`` command does this)::

    await run_console(engine)
"""

from __future__ import annotations

from adapters.console.chat import CONSOLE_KEY, ConsoleChat
from adapters.console.lines import read_lines
from adapters.console.run import console_chat, rich_terminal, run_console
from adapters.console.surface import ConsoleSurface, ImmediatePacer

__all__ = [
    "CONSOLE_KEY",
    "ConsoleChat",
    "ConsoleSurface",
    "ImmediatePacer",
    "console_chat",
    "read_lines",
    "rich_terminal",
    "run_console",
]
