"""A streaming reply split into finished Markdown blocks and the block still growing."""

from __future__ import annotations

import io
import re

from rich.console import Console

from adapters.console.markdown_stream import MarkdownLines, StreamingMarkdown
from bot.reply.layout import THINKING_MARK

REPLY = (
    "# Plan\n\n"
    "First **stir**.\n\n"
    "```python\nfor pot in pots:\n\n    stir(pot)\n```\n\n"
    "- one\n- two\n\n"
    "Done."
)


def _console() -> Console:
    return Console(file=io.StringIO(), width=60, color_system="truecolor", record=True)


def test_blocks_are_handed_out_once_each_when_the_next_one_starts() -> None:
    blocks = StreamingMarkdown()
    finished: list[str] = []
    text = ""
    for word in re.findall(r"\s*\S+\s*", REPLY):
        text += word
        finished += blocks.update(text)

    assert finished == [
        "# Plan",
        "First **stir**.",
        # A blank line inside a code block does not end it.
        "```python\nfor pot in pots:\n\n    stir(pot)\n```",
        "- one\n- two",
    ]
    assert blocks.tail == "Done."


def test_rendered_lines_have_no_markdown_markers() -> None:
    console = _console()

    console.print(MarkdownLines("Some **bold** and `code`.\n\n- item"))

    shown = console.export_text()
    assert "Some bold and code." in shown
    assert "**" not in shown
    assert "`" not in shown
    assert not shown.startswith("\n")


def test_thinking_is_dimmed_and_the_answer_is_not() -> None:
    console = _console()

    def dimmed(markdown: str) -> dict[str, bool]:
        lines = console.render_lines(MarkdownLines(markdown), pad=False)
        return {
            segment.text.strip(): bool(segment.style and segment.style.dim)
            for line in lines
            for segment in line
            if segment.text.strip()
        }

    thinking = dimmed(f"{THINKING_MARK}the user wants\n> a greeting")
    answer = dimmed("Hello!")

    assert thinking
    assert all(thinking.values())
    assert any("a greeting" in text for text in thinking)
    assert not any(text.startswith(">") for text in thinking)
    assert answer == {"Hello!": False}


def test_a_tall_live_block_shows_its_last_lines() -> None:
    console = _console()
    code = "```\n" + "\n".join(f"line {n}" for n in range(30)) + "\n```"

    console.print(MarkdownLines(code, last=5))

    shown = console.export_text()
    assert "line 29" in shown
    assert "line 20" not in shown
    assert len(shown.rstrip("\n").split("\n")) == 5
