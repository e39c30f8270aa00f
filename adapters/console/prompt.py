"""What a person types in the terminal chat, through prompt_toolkit.

Line editing (Emacs keys), history kept across runs in a file, Ctrl-R to search it, Alt-Enter
(or Esc then Enter) for a new line inside a message, Tab completion of ``/`` commands and, after
``/model set``, of the installed models, and a status line at the bottom of the screen.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.styles import Style

__all__ = ["ChatCompleter", "ModelNames", "PromptInput"]

_MODEL_SET = re.compile(r"/models?\s+set\s+(\S*)$", re.IGNORECASE)
_STYLE = Style.from_dict(
    {
        "prompt": "bold ansicyan",
        "bottom-toolbar": "noreverse bg:ansibrightblack fg:ansiwhite",
    }
)


class ModelNames:
    """The installed model names for completion, fetched when asked and kept for a while.

    Args:
        fetch: Returns the names (empty when Ollama cannot be reached).
        ttl: Seconds a fetched list is reused.
    """

    def __init__(self, fetch: Callable[[], Awaitable[list[str]]], *, ttl: float = 30.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._names: list[str] = []
        self._at: float | None = None

    async def get(self) -> list[str]:
        """The names, fetched again when the last list is older than the time to live."""
        now = time.monotonic()
        if self._at is None or now - self._at > self._ttl:
            self._names = await self._fetch()
            self._at = now
        return self._names

    def forget(self) -> None:
        """Fetch again next time (a model was pulled)."""
        self._at = None


class ChatCompleter(Completer):
    """Completes ``/`` commands at the start of a line and model names after ``/model set``.

    Args:
        commands: The command words, without the slash.
        models: Where the installed model names come from.
    """

    def __init__(self, commands: Sequence[str], models: ModelNames) -> None:
        self._commands = sorted(commands)
        self._models = models

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        """The command words (model names need a fetch: see :meth:`get_completions_async`)."""
        yield from self._command_completions(document.text_before_cursor)

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        """Command words, or the installed models after ``/model set``."""
        text = document.text_before_cursor
        match = _MODEL_SET.match(text)
        if match is None:
            for completion in self._command_completions(text):
                yield completion
            return
        prefix = match.group(1)
        for name in await self._models.get():
            if name.startswith(prefix):
                yield Completion(name, start_position=-len(prefix))

    def _command_completions(self, text: str) -> Iterable[Completion]:
        if not text.startswith("/") or any(c.isspace() for c in text):
            return
        for word in self._commands:
            if f"/{word}".startswith(text):
                yield Completion(f"/{word}", start_position=-len(text))


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _new_line(event: KeyPressEvent) -> None:
        """Alt-Enter (sent as Esc, Enter): a new line inside the message."""
        event.current_buffer.insert_text("\n")

    return bindings


class PromptInput:
    """Reads one message or command at a time.

    Args:
        history: The file that keeps what was typed, across runs.
        completer: Completion of commands and model names.
        toolbar: The status line's text, asked for on every redraw.
    """

    def __init__(self, *, history: Path, completer: Completer, toolbar: Callable[[], str]) -> None:
        history.parent.mkdir(parents=True, exist_ok=True)
        self._toolbar = toolbar
        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(history),
            completer=completer,
            complete_while_typing=True,
            key_bindings=_key_bindings(),
            bottom_toolbar=self._bottom_toolbar,
            prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ",
            style=_STYLE,
        )

    async def read(self) -> str:
        """The next message or command.

        Raises:
            KeyboardInterrupt: Ctrl-C was pressed at the prompt.
            EOFError: Ctrl-D was pressed on an empty line.
        """
        # handle_sigint=False: the tty is raw while the prompt is up, so Ctrl-C arrives as a
        # key; prompt_toolkit's own SIGINT handler would replace (and then remove) the one the
        # chat installs to stop a reply.
        return await self._session.prompt_async(
            FormattedText([("class:prompt", "> ")]), handle_sigint=False
        )

    def redraw(self) -> None:
        """Redraw the prompt (the status line changed)."""
        app = self._session.app
        if app.is_running:
            app.invalidate()

    def _bottom_toolbar(self) -> FormattedText:
        return FormattedText([("class:bottom-toolbar", f" {self._toolbar()} ")])
