"""The terminal chat: the third adapter, and the smallest proof of the adapter interface.

Each message typed is a turn for the engine; a line starting with ``/`` is a command (the same
commands as the other platforms: ``/model``, ``/mode``, ``/system``, ...). Replies stream onto
the terminal as they are generated. The person at the terminal owns the chat, so they are its
moderator.

Two ways to read what is typed:

- :meth:`ConsoleChat.run_prompt`, on a terminal: one prompt_toolkit prompt at a time (history,
  completion, a status line); Ctrl-C stops the reply being written, and at the prompt, pressed
  twice, leaves.
- :meth:`ConsoleChat.run`, for piped input (or ``--plain``): lines typed while a reply is being
  written wait for it, in order, except ``/stop``, which stops the reply at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from adapters.console.status import StatusLine
from bot.conversation.commands import HELP_LINES, CommandContext, parse_command
from bot.conversation.results import CommandResult, PullView
from bot.errors import InputRejected, OllabotError
from bot.reply.surface import ReplyStatus, ReplySurface
from bot.turn import Author, SessionKey, Turn
from bot.types import PullProgress

if TYPE_CHECKING:
    from adapters.console.prompt import ModelNames, PromptInput
    from bot.conversation.engine import Engine, ReplyResult

__all__ = ["CONSOLE_KEY", "ConsoleChat", "command_words", "console_help"]

CONSOLE_KEY = SessionKey("console", "local", None)

_QUIT = ("quit", "exit", "q")
# Other spellings parse_command accepts.
_ALIASES = {"models", "pull", "new"}


def _help_entries(*, stop_command: bool) -> list[tuple[str, str]]:
    entries = [
        (usage, what.replace("this channel", "this chat"))
        for usage, what in HELP_LINES
        if stop_command or usage.split()[0] != "stop"
    ]
    entries.append(("quit", "leave (so does Ctrl-D)"))
    return entries


def command_words() -> list[str]:
    """The commands that work in the terminal chat, without the slash."""
    return [usage.split()[0] for usage, _ in _help_entries(stop_command=True)]


def console_help(*, keys: bool) -> str:
    """The commands, spelled the terminal's way (``/`` prefix), plus the terminal's own keys.

    Args:
        keys: The prompt with line editing is in use (Ctrl-C stops a reply; no ``/stop`` can
            be typed while one is written).
    """
    lines = [f"- `/{usage}`: {what}" for usage, what in _help_entries(stop_command=not keys)]
    if keys:
        lines += [
            "",
            "Keys: Ctrl-C stops a reply (at the prompt, twice, leaves); Ctrl-D leaves; "
            "Alt-Enter (or Esc, Enter) starts a new line in a message; Up and Ctrl-R "
            "recall earlier lines; Tab completes commands and model names.",
        ]
    lines += ["", "Any other line is a message to the model; `//text` sends one starting with /."]
    return "\n".join(lines)


class ReplyView(ReplySurface, Protocol):
    """A reply surface that is told when its turn is over."""

    @property
    def status(self) -> ReplyStatus | None:
        """How the reply ended, once the streamer said so."""
        ...

    async def close(self) -> None:
        """The turn is over: leave the reply's final state on screen."""
        ...


class Screen(Protocol):
    """How the chat shows things: plain text or rendered Markdown."""

    def reply_surface(self) -> ReplyView: ...

    def prompt(self) -> None: ...

    def show(self, result: CommandResult) -> None: ...

    def notice(self, text: str) -> None: ...

    def problem(self, text: str) -> None: ...

    async def progress(self, steps: AsyncIterator[PullProgress]) -> None: ...


class ConsoleChat:
    """One terminal conversation with the engine.

    Args:
        engine: The conversation engine.
        screen: Where the chat is shown.
        user: The name of the person at the terminal.
        interactive: Whether a person is typing (not piped input).
    """

    def __init__(
        self, engine: Engine, *, screen: Screen, user: str = "you", interactive: bool = False
    ) -> None:
        self._engine = engine
        self._screen = screen
        self._interactive = interactive
        self._author = Author(id=f"console:{user}", name=user, is_moderator=True)
        self._ctx = CommandContext(
            key=CONSOLE_KEY, server=None, author=self._author, room_word="chat"
        )
        self._turn_task: asyncio.Task[None] | None = None
        self._keys = False
        self._models: ModelNames | None = None
        self.status = StatusLine()

    @property
    def screen(self) -> Screen:
        """Where the chat is shown."""
        return self._screen

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

    # --- a terminal with line editing -----------------------------------------------------------

    async def run_prompt(
        self,
        prompt: PromptInput,
        *,
        models: ModelNames | None = None,
        quiet: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        """Chat through ``prompt`` until ``/quit``, Ctrl-D or Ctrl-C twice at the prompt.

        Args:
            prompt: Reads what is typed.
            models: The model names offered for completion (fetched again after a pull).
            quiet: Stops the terminal echoing keys while a reply is drawn.
        """
        self._keys = True
        self._models = models
        pressed_ctrl_c = False
        while True:
            refresh = asyncio.create_task(self._refresh_status(prompt.redraw))
            try:
                line = await prompt.read()
            except KeyboardInterrupt:
                if pressed_ctrl_c:
                    return
                pressed_ctrl_c = True
                self._screen.notice("Ctrl-C again, Ctrl-D or /quit to leave")
                continue
            except EOFError:
                return
            finally:
                await _cancel(refresh)
            pressed_ctrl_c = False
            # Keys pressed while the bot works are not echoed into what it draws; they wait
            # for the next prompt.
            with quiet() if quiet is not None else contextlib.nullcontext():
                if not await self._handle_line(line):
                    return
                turn_task = self._turn_task
                if turn_task is not None:
                    await asyncio.shield(turn_task)
                    self._turn_task = None

    async def _refresh_status(self, redraw: Callable[[], None]) -> None:
        try:
            settings = await self._engine.settings.effective(CONSOLE_KEY, None)
            self.status.model = settings.model
            self.status.mode = settings.mode.value
            redraw()
            info = await self._engine.model_info(settings.model)
        except OllabotError:
            return  # the line keeps what it knew; the next reply says what is wrong
        self.status.context_length = settings.context_window(info)  # the num_ctx sent
        redraw()

    # --- piped input ----------------------------------------------------------------------------

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
                if not backlog:
                    self._screen.prompt()
                line = backlog.popleft() if backlog else await incoming.get()
                if line is None or not await self._handle_line(line):
                    return
                if self._turn_task is not None:
                    await self._wait_for_turn(incoming, backlog)
        finally:
            # A reply still being written is left alone: the engine's close() lets it finish
            # within its grace period, or marks it interrupted.
            await _cancel(pump_task)

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
                    await _cancel(getter)
            if getter in done:
                line = getter.result()
                if line is not None and line.strip().lower() == "/stop":
                    await self._engine.stop(CONSOLE_KEY)
                else:
                    backlog.append(line)
        self._turn_task = None
        turn_task.result()

    # --- one line -------------------------------------------------------------------------------

    async def _handle_line(self, line: str) -> bool:
        """Act on one line (or a message of several lines); ``False`` means leave."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("//"):
            self._start_turn(text[1:])
            return True
        if not text.startswith("/"):
            self._start_turn(text)
            return True
        head = text[1:].split(maxsplit=1)[0].lower() if text[1:].strip() else ""
        if head in _QUIT:
            return False
        if head == "help":
            self._screen.show(CommandResult("Commands", console_help(keys=self._keys)))
        elif head == "cot" and text[1:].split(maxsplit=1)[1:]:
            # A chain of thought is a reply like any other: streamed, stopped by Ctrl-C.
            self._start_turn(text[1:].split(maxsplit=1)[1], chain=True)
        elif head in command_words() or head in _ALIASES:
            await self._command(text[1:])
        else:
            shown = head if len(head) <= 40 else head[:39] + "\N{HORIZONTAL ELLIPSIS}"
            self._screen.problem(f"Unknown command '/{shown}'. /help lists the commands.")
        return True

    async def _command(self, text: str) -> None:
        try:
            command = parse_command(text)
        except InputRejected as exc:
            self._screen.problem(exc.user_message)
            return
        result = await self._engine.execute(self._ctx, command)
        self._screen.show(result)
        if isinstance(result, PullView) and result.progress is not None:
            await self._screen.progress(result.progress)
            if self._models is not None:
                self._models.forget()

    def _start_turn(self, text: str, *, chain: bool = False) -> None:
        turn = Turn(key=CONSOLE_KEY, author=self._author, text=text, chain=chain)
        self._turn_task = asyncio.create_task(self._reply(turn), name="console-turn")

    async def _reply(self, turn: Turn) -> None:
        surface = self._screen.reply_surface()
        try:
            result = await self._engine.handle_turn(turn, surface, notify=self._notify)
        finally:
            await surface.close()
        self._remember(result, surface.status)

    def _remember(self, result: ReplyResult, status: ReplyStatus | None) -> None:
        """The last reply's speed and the context it filled, for the status line."""
        if status is not None and status.tokens_per_second is not None:
            self.status.tokens_per_second = status.tokens_per_second
        if result.prompt_tokens or result.eval_tokens:
            self.status.context_used = (result.prompt_tokens or 0) + (result.eval_tokens or 0)

    async def _notify(self, text: str) -> None:
        self._screen.notice(text)


async def _cancel(task: asyncio.Task[None] | asyncio.Task[str | None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
