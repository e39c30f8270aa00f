"""The colour terminal's reply surface, driven by the real streamer into a recording console."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from adapters.console.rich_screen import RichScreen, hard_breaks
from adapters.console.rich_surface import RichSurface, status_text
from bot.conversation.results import CommandResult
from bot.reply.streamer import ReplyStatus, ReplyStreamer
from bot.types import Outcome, StreamChunk


def _console() -> Console:
    return Console(file=io.StringIO(), width=60, color_system="truecolor", record=True)


async def _reply(console: Console, words: list[str], status: ReplyStatus) -> None:
    surface = RichSurface(console, frames_per_second=1000)
    streamer = ReplyStreamer(surface, typing_interval=0)
    await streamer.start()
    for word in words:
        await streamer.feed(StreamChunk(content=word))
    await streamer.finish(status)
    await surface.close()


async def test_the_final_rendering_is_left_with_the_status_line_under_it() -> None:
    console = _console()
    words = ["# Soup\n\n", "Boil **water**.\n\n", "```sh\n", "echo ", "hot\n", "```\n\n", "Eat."]

    await _reply(console, words, ReplyStatus(Outcome.COMPLETE, model="m", tokens_per_second=9.5))

    lines = [line.strip() for line in console.export_text().split("\n") if line.strip()]
    assert lines == ["Soup", "Boil water.", "echo hot", "Eat.", "m · 9.5 tokens/s"]


@pytest.mark.parametrize(
    ("status", "shown", "style"),
    [
        (ReplyStatus(Outcome.STOPPED, model="m"), "⏹ stopped · m", "bold yellow"),
        (ReplyStatus(Outcome.LENGTH, model="m"), "⏹ cut at the length limit · m", "bold yellow"),
        (
            ReplyStatus(Outcome.INTERRUPTED, error="The bot is restarting."),
            "⏹ interrupted: The bot is restarting.",
            "bold yellow",
        ),
        (ReplyStatus(Outcome.ERROR, error="Ollama is down"), "✘ Ollama is down", "bold red"),
        (ReplyStatus(Outcome.COMPLETE, model="m"), "m", "dim"),
    ],
)
def test_outcomes_other_than_a_completion_stand_out(
    status: ReplyStatus, shown: str, style: str
) -> None:
    text = status_text(status)

    assert text.plain == shown
    assert str(text.style) == style


async def test_an_error_before_any_text_shows_only_the_styled_error() -> None:
    console = _console()

    await _reply(console, [], ReplyStatus(Outcome.ERROR, error="Ollama is down"))

    assert console.export_text().strip() == "✘ Ollama is down"


def test_a_command_answer_keeps_its_title_and_body_on_lines_of_their_own() -> None:
    console = _console()
    screen = RichScreen(console)
    calls = '```json\n{\n  "a": 1\n}\n```'

    screen.show(CommandResult("`mode` set", "This chat now uses `precise`."))
    screen.show(CommandResult("Tool calls", f"{calls}\nafter"))

    lines = [line.rstrip() for line in console.export_text().split("\n") if line.strip()]
    assert lines[:2] == ["mode set", "This chat now uses precise."]
    assert lines[2] == "Tool calls"
    # Code is left as written: no trailing spaces added inside the fence, also when a longer
    # fence holds a shorter one.
    assert hard_breaks(calls) == calls
    nested = "````\n```\ninside\n````\nout\nend"
    assert hard_breaks(nested) == "````\n```\ninside\n````\nout  \nend"
    assert lines[-1] == "after"
