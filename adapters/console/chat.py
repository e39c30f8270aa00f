"""The terminal chat: the third adapter, and the smallest proof of the adapter interface.

Each line typed is a turn for the engine; a line starting with ``/`` is a command (the same
commands as the other platforms: ``/model``, ``/mode``, ``/system``, ...). Replies stream onto
the terminal as they are generated. The person at the terminal owns the session, so they are its
moderator.

Lines typed while a reply is being written wait for it, in order, except ``/stop``, which stops
the reply at once.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TextIO

from adapters.console.surface import ConsoleSurface
from bot.conversation.commands import (
    HELP_LINES,
    CommandContext,
    CommandResult,
    PullView,
    Reset,
    parse_command,
    render_progress_bar,
)
from bot.errors import InputRejected
from bot.turn import Author, SessionKey, Turn

if TYPE_CHECKING:
    from bot.conversation.engine import Engine

__all__ = ["CONSOLE_KEY", "ConsoleChat"]

CONSOLE_KEY = SessionKey("console", "local", None)

_QUIT = {"quit", "exit", "q"}
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def console_help() -> str:
    """The commands, spelled the terminal's way (``/`` prefix), plus the terminal's own."""
    lines = ["**Commands**"]
    lines += [f"- `/{usage}`: {what}" for usage, what in HELP_LINES]
    lines.append("- `/quit`: leave (so does Ctrl-D; Ctrl-C stops a reply, or leaves when idle)")
    lines.append("Any other line is a message to the model; `//text` sends a line starting with /.")
    return "\n".join(lines)


class ConsoleChat:
    """One terminal conversation with the engine.

    Args:
        engine: The conversation engine.
        out: Where replies go (standard output).
        user: The name of the person at the terminal.
        interactive: Whether a person is typing (show a prompt, redraw the progress bar in
            place) or input comes from a pipe (plain lines only).
    """

    def __init__(
        self, engine: Engine, *, out: TextIO, user: str = "you", interactive: bool = False
    ) -> None:
        self._engine = engine
        self._out = out
        self._interactive = interactive
        self._author = Author(id=f"console:{user}", name=user, is_moderator=True)
        self._ctx = CommandContext(key=CONSOLE_KEY, server=None, author=self._author)
        self._turn_task: asyncio.Task[None] | None = None

    @property
    def interactive(self) -> bool:
        """Whether a person is typing at a terminal."""
        return self._interactive

    @property
    def generating(self) -> bool:
        """Whether a reply is being written right now."""
        return self._turn_task is not None and not self._turn_task.done()

    async def interrupt(self) -> bool:
        """Stop the reply being written, if any (Ctrl-C). ``True`` if one was stopped."""
        if not self.generating:
            return False
        return await self._engine.stop(CONSOLE_KEY)

    async def run(self, lines: AsyncIterator[str]) -> None:
        """Chat until ``/quit`` or the end of ``lines``.

        Args:
            lines: What the person types, one line at a time (see
                :func:`adapters.console.lines.read_lines`).
        """
        incoming: asyncio.Queue[str | None] = asyncio.Queue()
        backlog: deque[str | None] = deque()

        async def pump() -> None:
            try:
                async for line in lines:
                    await incoming.put(line)
            finally:
                await incoming.put(None)

        pump_task = asyncio.create_task(pump(), name="console-input")
        try:
            while True:
                self._prompt(backlog)
                line = backlog.popleft() if backlog else await incoming.get()
                if line is None or not await self._handle_line(line):
                    return
                if self._turn_task is not None:
                    await self._wait_for_turn(incoming, backlog)
        finally:
            # A reply still being written is left alone: the engine's close() lets it finish
            # within its grace period, or marks it interrupted.
            await self._cancel(pump_task)

    # --- one line -----------------------------------------------------------------------------

    async def _handle_line(self, line: str) -> bool:
        """Act on one line; ``False`` means leave."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("//"):
            self._start_turn(text[1:])
            return True
        if not text.startswith("/"):
            self._start_turn(text)
            return True
        head, _, rest = text[1:].partition(" ")
        head = head.lower()
        if head in _QUIT:
            return False
        if head == "ask":
            self._start_turn(rest)
        elif head == "cot" and rest.strip():
            self._start_turn(rest, chain=True)  # a reply like any other: /stop, Ctrl-C
        elif head == "chat":
            await self._render(await self._engine.execute(self._ctx, Reset()))
            if rest.strip():
                self._start_turn(rest)
        elif head == "help":
            self._say(self._plain(console_help()))
        else:
            await self._command(text[1:])
        return True

    async def _command(self, text: str) -> None:
        try:
            command = parse_command(text)
        except InputRejected as exc:
            self._say(f"⚠️ {exc.user_message}")
            return
        await self._render(await self._engine.execute(self._ctx, command))

    def _start_turn(self, text: str, *, chain: bool = False) -> None:
        turn = Turn(key=CONSOLE_KEY, author=self._author, text=text, chain=chain)
        self._turn_task = asyncio.create_task(self._reply(turn), name="console-turn")

    async def _reply(self, turn: Turn) -> None:
        surface = ConsoleSurface(self._out)
        try:
            await self._engine.handle_turn(turn, surface, notify=self._notify)
        finally:
            surface.flush_pending()
            if surface.wrote_anything:
                self._write("\n\n" if self._interactive else "\n")

    async def _wait_for_turn(
        self, incoming: asyncio.Queue[str | None], backlog: deque[str | None]
    ) -> None:
        """Let the reply finish, holding typed lines back, except ``/stop``."""
        turn_task = self._turn_task
        assert turn_task is not None
        while not turn_task.done():
            getter = asyncio.create_task(incoming.get())
            try:
                done, _ = await asyncio.wait(
                    {turn_task, getter}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                if not getter.done():
                    await self._cancel(getter)
            if getter in done:
                line = getter.result()
                if line is not None and line.strip().lower() == "/stop":
                    await self._engine.stop(CONSOLE_KEY)
                else:
                    backlog.append(line)
        self._turn_task = None
        turn_task.result()

    # --- output -------------------------------------------------------------------------------

    async def _notify(self, text: str) -> None:
        self._say(f"({text})")

    async def _render(self, result: CommandResult) -> None:
        self._say(self._plain(result.as_markdown()))
        if isinstance(result, PullView) and result.progress is not None:
            await self._show_progress(result)

    async def _show_progress(self, result: PullView) -> None:
        assert result.progress is not None
        last = ""
        async for progress in result.progress:
            bar = render_progress_bar(progress)
            if bar == last:
                continue
            if self._interactive:
                # Redraw in place; pad so a shorter line fully covers the longer one before it.
                self._write("\r" + bar.ljust(len(last)))
            else:
                self._write(bar + "\n")
            last = bar
        if self._interactive and last:
            self._write("\n")

    def _prompt(self, backlog: deque[str | None]) -> None:
        if self._interactive and not backlog:
            self._write("> ")

    def _plain(self, markdown: str) -> str:
        """Markdown bold as terminal bold (or nothing through a pipe)."""
        replacement = "\x1b[1m\\1\x1b[0m" if self._interactive else "\\1"
        return _BOLD.sub(replacement, markdown)

    def _say(self, text: str) -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | asyncio.Task[str | None] | None) -> None:
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
