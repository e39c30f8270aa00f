"""Showing one streamed reply in a terminal as rendered Markdown, redrawn in place.

The streamer edits the reply as often as tokens come; the screen is redrawn at a steady frame
rate instead (a dozen times a second), from the newest text, through rich's live display. Only
the block still growing is redrawn (see :mod:`adapters.console.markdown_stream`), so nothing
flickers or scrolls twice, and when the reply ends its last block is printed for good and the
live area is gone: what stays on screen is the final rendering, then a status line that says
how the reply ended (dim when it completed, yellow when it was stopped, cut or interrupted, red
for an error).
"""

from __future__ import annotations

import asyncio
import contextlib
from itertools import count

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from adapters.console.markdown_stream import MarkdownLines, StreamingMarkdown
from adapters.console.surface import (
    CONSOLE_MAX_CHARS,
    ImmediatePacer,
    plain_footer,
    without_footer,
)
from bot.reply.surface import ReplyStatus
from bot.types import Outcome

__all__ = ["FRAMES_PER_SECOND", "RichSurface", "status_text"]

FRAMES_PER_SECOND = 12.0


def status_text(status: ReplyStatus) -> Text:
    """How the reply ended, styled so that anything but a plain completion stands out."""
    model = status.model or ""
    if status.outcome is Outcome.COMPLETE:
        speed = (
            f" · {status.tokens_per_second:.1f} tokens/s"
            if status.tokens_per_second is not None
            else ""
        )
        return Text(f"{model}{speed}", style="dim")
    if status.outcome is Outcome.ERROR:
        return Text(f"\N{HEAVY BALLOT X} {status.error or 'the reply failed'}", style="bold red")
    words = {
        Outcome.STOPPED: "stopped",
        Outcome.INTERRUPTED: "interrupted",
        Outcome.LENGTH: "cut at the length limit",
    }
    what = words.get(status.outcome, status.outcome.value)
    detail = f": {status.error}" if status.error else ""
    where = f" · {model}" if model else ""
    return Text(f"\N{BLACK SQUARE FOR STOP} {what}{detail}{where}", style="bold yellow")


class RichSurface:
    """A :class:`bot.reply.surface.ReplySurface` that draws Markdown on a terminal.

    Call :meth:`close` when the turn is over (it prints the final rendering).

    Args:
        console: The rich console on the terminal.
        frames_per_second: How often the live area is redrawn while text comes.
    """

    append_only = True
    """The live text only grows at its end: finished blocks are printed once, for good."""

    def __init__(self, console: Console, *, frames_per_second: float = FRAMES_PER_SECOND) -> None:
        self._console = console
        self._frame = 1.0 / frames_per_second
        self._pacer = ImmediatePacer()
        self._ids = count(1)
        self._messages: dict[str, str] = {}
        self._blocks = StreamingMarkdown()
        self._printed = False
        self._footer = ""
        self._status: ReplyStatus | None = None
        self._live: Live | None = None
        self._frames: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def max_chars(self) -> int:
        return CONSOLE_MAX_CHARS

    @property
    def pacer(self) -> ImmediatePacer:
        return self._pacer

    @property
    def status(self) -> ReplyStatus | None:
        """How the reply ended, once the streamer said so."""
        return self._status

    async def send(self, text: str) -> str:
        message_id = str(next(self._ids))
        self._messages[message_id] = without_footer(text, self._footer)
        self._start()
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        self._messages[message_id] = without_footer(text, self._footer)

    def render_status(self, status: ReplyStatus) -> str:
        self._status = status
        self._footer = plain_footer(status)
        return self._footer

    async def typing(self) -> None:
        """A spinner in the live area until the first words arrive."""
        self._start()

    async def close(self) -> None:
        """Stop redrawing; leave the final rendering and the status line on screen."""
        if self._closed:
            return
        self._closed = True
        if self._frames is not None:
            self._frames.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._frames
        if self._live is not None:
            self._print_finished()
            self._live.update(Text(""), refresh=True)
            self._live.stop()  # transient: the live area is cleared
        tail = self._blocks.tail
        if tail.strip():
            self._print(MarkdownLines(tail))
        if self._status is not None:
            self._console.print(status_text(self._status))

    # --- drawing -----------------------------------------------------------------------------

    def _text(self) -> str:
        return "\n".join(self._messages.values())

    def _start(self) -> None:
        if self._live is not None or self._closed:
            return
        self._live = Live(
            Spinner("dots", style="dim"),
            console=self._console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start(refresh=True)
        self._frames = asyncio.create_task(self._draw_frames(), name="console-frames")

    async def _draw_frames(self) -> None:
        assert self._live is not None
        while True:
            await asyncio.sleep(self._frame)
            self._print_finished()
            tail = self._blocks.tail
            if not tail.strip():
                self._live.refresh()  # the spinner turns
                continue
            room = max(3, self._console.size.height - 4)
            live: RenderableType = MarkdownLines(tail, last=room)
            if self._printed:
                live = Group(Text(""), live)
            self._live.update(live, refresh=True)

    def _print_finished(self) -> None:
        for block in self._blocks.update(self._text()):
            self._print(MarkdownLines(block))

    def _print(self, renderable: RenderableType) -> None:
        if self._printed:
            self._console.print()
        self._console.print(renderable)
        self._printed = True
