"""A Markdown reply that grows while it streams, drawn in a terminal without flicker.

Redrawing the whole reply on every frame would scroll and flicker once it is taller than the
screen, and rich's live display cannot redraw what has scrolled away. So the reply is cut at its
top-level Markdown blocks (paragraphs, headings, lists, code blocks, tables): a block followed by
another one is finished, printed once and left in the scrollback; only the last block, the one
still growing, is redrawn in place, cropped to its last lines while it is taller than the screen.
The reply's text only grows at its end while it streams (see
:attr:`bot.reply.surface.ReplySurface`'s ``append_only``), so a finished block never changes.

The thinking block the streamer puts first (a ``> 💭`` quote) is drawn dimmed, as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass

from markdown_it import MarkdownIt
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from bot.reply.layout import THINKING_MARK

__all__ = ["MarkdownLines", "StreamingMarkdown", "block_starts", "render_block"]

# The same Markdown flavour rich renders (rich.markdown.Markdown enables these two).
_PARSER = MarkdownIt("commonmark").enable("strikethrough").enable("table")

CODE_THEME = "monokai"


def block_starts(text: str) -> list[int]:
    """The line where each top-level block of ``text`` starts, in order.

    Every block but the last is finished: text appended later cannot change it (Markdown's
    rare look-backs, a setext underline or a late link definition, aside), so it can be
    printed for good.
    """
    return [
        token.map[0]
        for token in _PARSER.parse(text)
        if token.level == 0 and token.map is not None and token.nesting >= 0
    ]


def _is_thinking(block: str) -> bool:
    return block.startswith(THINKING_MARK.rstrip())


def render_block(markdown: str) -> RenderableType:
    """One block of a reply: the thinking quote dimmed, anything else rendered as Markdown."""
    if _is_thinking(markdown):
        lines = [line.removeprefix(">").removeprefix(" ") for line in markdown.split("\n")]
        return Text("\n".join(lines), style="dim italic")
    return Markdown(markdown, code_theme=CODE_THEME)


def _blank(line: list[Segment]) -> bool:
    """Nothing visible: only spaces, none on a background (a code block's padding shows)."""
    return all(
        not segment.text.strip() and (segment.style is None or segment.style.bgcolor is None)
        for segment in line
    )


@dataclass(frozen=True, slots=True)
class MarkdownLines:
    """Markdown rendered to lines, without the empty lines rich puts around some blocks.

    Attributes:
        markdown: The Markdown text.
        last: Keep only this many last lines (the live part of a reply taller than the screen).
    """

    markdown: str
    last: int | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(render_block(self.markdown), options, pad=False)
        # Blank lines around a block are the caller's to place (one between blocks).
        while lines and _blank(lines[0]):
            lines.pop(0)
        while lines and _blank(lines[-1]):
            lines.pop()
        if self.last is not None and len(lines) > self.last:
            lines = lines[-self.last :]
        for line in lines:
            yield from line
            yield Segment.line()


class StreamingMarkdown:
    """Splits a growing reply into finished blocks (printed once) and the live tail."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._done = 0  # leading lines already handed out as finished blocks

    def update(self, text: str) -> list[str]:
        """Take the reply's newest text; returns the blocks it finished, in order."""
        self._lines = text.split("\n")
        starts = block_starts("\n".join(self._lines[self._done :]))
        finished: list[str] = []
        base = self._done
        for start, end in zip(starts, starts[1:], strict=False):
            block = "\n".join(self._lines[base + start : base + end]).strip("\n")
            if block.strip():
                finished.append(block)
            self._done = base + end
        return finished

    @property
    def tail(self) -> str:
        """The text after the finished blocks: the block still growing."""
        return "\n".join(self._lines[self._done :]).strip("\n")
