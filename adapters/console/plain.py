"""The terminal chat as plain text: through a pipe, with ``--plain``, ``NO_COLOR`` or ``TERM=dumb``.

Standard output carries exactly what the model wrote (a line break after each reply) and what
commands answer; how a reply ended and the bot's notices go to standard error, so a script gets
the answer and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TextIO

from adapters.console.surface import ConsoleSurface
from bot.conversation.results import CommandResult, render_progress_bar
from bot.types import PullProgress

__all__ = ["PlainScreen", "plain_text"]

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC_NOTE = re.compile(r"(?<!\w)_(\(.+?\))_(?!\w)")


def plain_text(markdown: str) -> str:
    """A command's Markdown as plain text: no ``**`` around titles, no ``_`` around notes."""
    return _ITALIC_NOTE.sub(r"\1", _BOLD.sub(r"\1", markdown))


class PlainScreen:
    """Writes the chat to text streams.

    Args:
        out: Standard output.
        err: Standard error.
        interactive: A person is at a terminal: show a prompt, redraw the pull bar in place.
    """

    def __init__(self, out: TextIO, err: TextIO, *, interactive: bool) -> None:
        self._out = out
        self._err = err
        self._interactive = interactive

    def reply_surface(self) -> PlainReply:
        """A surface for the next reply."""
        return PlainReply(self._out, self._err, interactive=self._interactive)

    def prompt(self) -> None:
        """Ask for the next line (only when a person is typing)."""
        if self._interactive:
            self._write(self._out, "> ")

    def show(self, result: CommandResult) -> None:
        """A command's answer."""
        self._write(self._out, plain_text(result.as_markdown()) + "\n")

    def notice(self, text: str) -> None:
        """Something the bot says about the chat (a queue notice, a hint)."""
        self._write(self._err, f"({text})\n")

    def problem(self, text: str) -> None:
        """A line that could not be acted on (an unknown command, bad input)."""
        self._write(self._out, f"\N{WARNING SIGN} {text}\n")

    async def progress(self, steps: AsyncIterator[PullProgress]) -> None:
        """A model pull: one line per step, or one bar redrawn in place on a terminal."""
        last = ""
        async for step in steps:
            bar = render_progress_bar(step)
            if bar == last:
                continue
            if self._interactive:
                # Pad so that a shorter line fully covers the longer one before it.
                self._write(self._out, "\r" + bar.ljust(len(last)))
            else:
                self._write(self._out, bar + "\n")
            last = bar
        if self._interactive and last:
            self._write(self._out, "\n")

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()


class PlainReply(ConsoleSurface):
    """A reply on a plain screen: a blank line after it when a person reads it."""

    def __init__(self, out: TextIO, err: TextIO, *, interactive: bool) -> None:
        super().__init__(out, err)
        self._interactive = interactive

    async def close(self) -> None:
        """End the reply (see :meth:`ConsoleSurface.finish`)."""
        self.finish()
        if self._interactive and self.wrote_anything:
            self._out.write("\n")
            self._out.flush()
