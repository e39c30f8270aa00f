"""The terminal chat on a colour terminal: rendered Markdown, a real progress bar, styled notes."""

from __future__ import annotations

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
from bot.conversation.commands import CommandResult
from bot.types import PullProgress

__all__ = ["RichScreen"]


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
        self._console.print(Markdown(result.as_markdown(), style="" if result.ok else "red"))

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
