"""The terminal chat on a colour terminal: rendered Markdown, a real progress bar, styled notes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from adapters.console.rich_surface import RichSurface
from bot.conversation.results import CommandResult
from bot.types import PullProgress

__all__ = ["RichScreen", "hard_breaks"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def hard_breaks(markdown: str) -> str:
    """``markdown`` with each line break kept, as Discord and Matrix show a command's answer.

    Command answers put their title and body on lines of their own (``**Title**\nbody``); in
    CommonMark a single newline is a space, so the terminal would run them into one line. Lines
    inside fenced code are left as they are.
    """
    lines = markdown.split("\n")
    fence = ""
    for i, line in enumerate(lines[:-1]):
        marker = _FENCE.match(line)
        if marker and not fence:
            fence = marker.group(1)
        elif marker and marker.group(1).startswith(fence) and not line.strip(" `~"):
            fence = ""  # a closing fence: at least as long as the opening one, nothing after it
        elif not fence and line.strip():
            lines[i] = line.rstrip() + "  "
    return "\n".join(lines)


class RichScreen:
    """Writes the chat to a terminal through rich.

    Args:
        console: The rich console on standard output.
    """

    def __init__(self, console: Console) -> None:
        self._console = console

    @property
    def console(self) -> Console:
        return self._console

    def reply_surface(self) -> RichSurface:
        """A surface for the next reply."""
        return RichSurface(self._console)

    def prompt(self) -> None:
        """Nothing: prompt_toolkit draws the prompt."""

    def show(self, result: CommandResult) -> None:
        """A command's answer, rendered; a refusal or failure in red."""
        markdown = hard_breaks(result.as_markdown())
        self._console.print(Markdown(markdown, style="" if result.ok else "red"))

    def notice(self, text: str) -> None:
        """Something the bot says about the chat (a queue notice, a hint)."""
        self._console.print(Text(f"({text})", style="dim"))

    def problem(self, text: str) -> None:
        """A line that could not be acted on (an unknown command, bad input)."""
        self._console.print(Text(f"\N{WARNING SIGN} {text}", style="yellow"))

    async def progress(self, steps: AsyncIterator[PullProgress]) -> None:
        """A model pull: a bar per layer (size, speed, time left), then how it ended."""
        bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
        )
        layers: dict[str, TaskID] = {}
        last = ""
        with bars:
            async for step in steps:
                if step.total:
                    key = step.digest or step.status
                    if key not in layers:
                        layers[key] = bars.add_task(step.status, total=step.total)
                    bars.update(layers[key], completed=step.completed or 0)
                elif step.status.startswith("error"):
                    bars.console.print(Text(step.status, style="bold red"))
                else:
                    last = step.status  # "pulling manifest", "verifying ...", "success"
        if last:
            self._console.print(Text(last, style="green" if last == "success" else "dim"))
