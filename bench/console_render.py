"""The terminal chat's live Markdown: what drawing a long streamed reply costs, and what it leaves.

One command: ``.venv/bin/python bench/console_render.py`` (2-3 minutes, most of it the
emulator digesting the redraw-all run). A 1,500-word reply
(paragraphs, lists, a table, three 30-line code blocks) streams word by word at 300 words/s
through the real :class:`bot.reply.streamer.ReplyStreamer` onto three surfaces, each writing to
a 100x40 terminal emulated by pyte (with its scrollback):

- ``blocks``: the chat's :class:`adapters.console.rich_surface.RichSurface` (finished blocks
  printed once, the growing block redrawn in place at 12 frames a second);
- ``redraw all``: the obvious alternative, rich's ``Live`` redrawing ``Markdown(whole reply)``
  at the same frame rate (``vertical_overflow="visible"``, so the end stays on screen);
- ``plain``: :class:`adapters.console.surface.ConsoleSurface` (``--plain``), for scale.

Reported per surface: CPU seconds of the process while the reply streams (the emulator's
own parsing subtracted), bytes sent to the
terminal, and what the scrollback holds at the end: the lines of the reply's code blocks should
each appear once; more copies are the flicker a person sees (redrawn text that scrolled away
stays behind, once per frame).
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable
from itertools import count

import pyte
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

from adapters.console.rich_surface import RichSurface
from adapters.console.surface import ConsoleSurface, ImmediatePacer, plain_footer, without_footer
from bot.reply.streamer import ReplyStatus, ReplyStreamer
from bot.types import Outcome, StreamChunk

COLUMNS, ROWS = 100, 40
WORDS_PER_SECOND = 300
FPS = 12.0


def _reply() -> str:
    parts: list[str] = []
    for section in range(3):
        parts.append(f"## Step {section + 1}\n")
        parts.append(
            " ".join(
                f"Sentence {n} of step {section + 1} says **something** useful." for n in range(30)
            )
            + "\n"
        )
        parts.append("\n".join(f"- point {n}: `value_{n}` matters" for n in range(8)) + "\n")
        code = "\n".join(
            f"    total_{section}_{n} = compute(step={section}, line={n})  # line {n}"
            for n in range(30)
        )
        parts.append(f"```python\ndef step_{section}():\n{code}\n```\n")
        parts.append(
            "| key | value |\n|---|---|\n" + "\n".join(f"| k{n} | v{n} |" for n in range(5))
        )
        parts.append("\n")
    return "\n".join(parts)


class _Terminal(io.TextIOBase):
    """A text stream into a pyte terminal with scrollback, counting what it is sent."""

    def __init__(self) -> None:
        self.screen = pyte.HistoryScreen(COLUMNS, ROWS, history=1_000_000)
        self.stream = pyte.Stream(self.screen)
        self.sent = 0
        self.emulator_cpu = 0.0  # the emulator's own parsing, not the bot's drawing

    def write(self, text: str) -> int:
        started = time.process_time()
        self.sent += len(text.encode())
        self.stream.feed(text.replace("\n", "\r\n"))
        self.emulator_cpu += time.process_time() - started
        return len(text)

    def isatty(self) -> bool:
        return True

    def lines(self) -> list[str]:
        """The scrollback, then the screen."""
        history = [
            "".join(line[x].data for x in range(COLUMNS)).rstrip()
            for line in self.screen.history.top
        ]
        return history + [line.rstrip() for line in self.screen.display]


class _RedrawAll:
    """Live(Markdown(whole reply)) at the same frame rate: the approach the chat avoids."""

    append_only = True

    def __init__(self, console: Console) -> None:
        self._live = Live(
            console=console,
            refresh_per_second=FPS,
            vertical_overflow="visible",
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._pacer = ImmediatePacer()
        self._ids = count(1)
        self._footer = ""
        self._live.start()

    @property
    def max_chars(self) -> int:
        return 1_000_000

    @property
    def pacer(self) -> ImmediatePacer:
        return self._pacer

    async def send(self, text: str) -> str:
        await self.edit("1", text)
        return str(next(self._ids))

    async def edit(self, message_id: str, text: str) -> None:
        self._live.update(Markdown(without_footer(text, self._footer)))

    def render_status(self, status: ReplyStatus) -> str:
        self._footer = plain_footer(status)
        return self._footer

    async def typing(self) -> None:
        return None

    async def close(self) -> None:
        self._live.stop()


async def _stream(surface: object, words: list[str]) -> None:
    streamer = ReplyStreamer(surface, typing_interval=0)  # type: ignore[arg-type]
    await streamer.start()
    pause = 1.0 / WORDS_PER_SECOND
    for word in words:
        streamer.push(StreamChunk(content=word))
        await asyncio.sleep(pause)
    await streamer.finish(ReplyStatus(Outcome.COMPLETE, model="bench", tokens_per_second=300.0))


async def _run(
    name: str, make: Callable[[_Terminal], object], words: list[str]
) -> dict[str, object]:
    terminal = _Terminal()
    surface = make(terminal)
    cpu = time.process_time()
    wall = time.monotonic()
    await _stream(surface, words)
    close = getattr(surface, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    elif isinstance(surface, ConsoleSurface):
        surface.finish()
    cpu = time.process_time() - cpu - terminal.emulator_cpu
    wall = time.monotonic() - wall
    lines = terminal.lines()
    code = [line for line in lines if "= compute(step=" in line]
    return {
        "surface": name,
        "wall": wall,
        "cpu": cpu,
        "bytes": terminal.sent,
        "code lines left": len(code),
    }


def _console(terminal: _Terminal) -> Console:
    return Console(
        file=terminal,
        force_terminal=True,
        width=COLUMNS,
        height=ROWS,
        color_system="truecolor",
        highlight=False,
    )


async def main() -> None:
    text = _reply()
    words = re.findall(r"\s*\S+\s*", text)
    expected = sum(1 for line in text.split("\n") if "= compute(step=" in line)
    runs = [
        await _run("blocks (the chat)", lambda t: RichSurface(_console(t)), words),
        await _run("redraw all", lambda t: _RedrawAll(_console(t)), words),
        await _run("plain", lambda t: ConsoleSurface(t), words),
    ]
    print(
        f"{len(words)} words at {WORDS_PER_SECOND}/s, {FPS:.0f} frames/s, "
        f"terminal {COLUMNS}x{ROWS}; code lines in the reply: {expected}\n"
    )
    print("| surface | wall | CPU | CPU / wall | bytes to terminal | code lines in scrollback |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        wall = float(run["wall"])  # type: ignore[arg-type]
        cpu = float(run["cpu"])  # type: ignore[arg-type]
        print(
            f"| {run['surface']} | {wall:.1f} s | {cpu:.2f} s | {cpu / wall:.2f} | "
            f"{run['bytes']:,} | {run['code lines left']:,} (of {expected}) |"
        )
    blocks, redraw = runs[0], runs[1]
    print(
        f"\nblocks / redraw all: CPU {float(blocks['cpu']) / float(redraw['cpu']):.2f}, "  # type: ignore[arg-type]
        f"bytes {int(blocks['bytes']) / int(redraw['bytes']):.2f}"  # type: ignore[call-overload]
    )


if __name__ == "__main__":
    asyncio.run(main())
