"""The terminal chat as a person sees it: a real pseudo-terminal, keystrokes in, the screen read
back through a terminal emulator (pyte), the real engine against the fake Ollama."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.runner import write_config
from tests.console.terminal import ROWS, Terminal
from tests.fakes.fake_ollama import FakeOllama, Reply

ANSWER = (
    "Here is **the recipe** you asked for:\n\n"
    "```python\n"
    "def cook(pots):\n"
    "    for pot in pots:\n"
    "        stir(pot)\n"
    "```\n\n"
    "- one *pot*\n"
    "- two `pans`\n\n"
    "Enjoy."
)
UP = "\x1b[A"
ENTER = "\r"


def _words(text: str) -> list[str]:
    """The text as a model streams it: one word (and the blanks after it) at a time."""
    return re.findall(r"\s*\S+\s*", text)


def _prompt_shows(typed: str) -> Callable[[str], bool]:
    """The prompt's line (the last one starting with ">") reads ``> typed``."""

    def test(screen: str) -> bool:
        prompts = [line for line in screen.split("\n") if line.startswith(">")]
        return bool(prompts) and prompts[-1].rstrip() == f"> {typed}".rstrip()

    return test


async def test_reply_is_rendered_markdown_and_the_status_line_shows_the_chat(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    fake_ollama.script(Reply(tokens=_words(ANSWER)))
    term = Terminal(
        "--config", str(config), "chat", cwd=tmp_path, env={"OLLAMA_HOST": fake_ollama.url}
    )
    try:
        await asyncio.to_thread(term.wait_for, _prompt_shows(""))
        term.type("how do I cook?" + ENTER)
        screen = await asyncio.to_thread(term.wait_for, "tokens/s")
        # The status line at the bottom names the model and the mode.
        toolbar = await asyncio.to_thread(term.wait_for, lambda s: "balanced" in s.split("\n")[-1])
        term.type("/quit" + ENTER)
        code = await asyncio.to_thread(term.wait_exit)
    finally:
        term.close()

    assert code == 0
    assert "def cook(pots):" in screen
    assert "    for pot in pots:" in screen
    assert "the recipe" in screen
    assert "Enjoy." in screen
    # Rendered, not raw: no Markdown markers left on screen.
    assert "**" not in screen
    assert "```" not in screen
    assert "`pans`" not in screen
    assert "\u2022 one pot" in screen  # a bullet list
    # A word inside the code block is not followed by blank lines (the fence fix).
    lines = screen.split("\n")
    row = next(i for i, line in enumerate(lines) if "def cook(pots):" in line)
    assert "for pot in pots:" in lines[row + 1]
    bottom = toolbar.split("\n")[ROWS - 1 if len(toolbar.split("\n")) >= ROWS else -1]
    assert "llama3.2" in bottom
    assert "context" in bottom


async def test_completion_history_across_runs_and_ctrl_c_twice_leaves(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    env = {"OLLAMA_HOST": fake_ollama.url}

    first = Terminal("--config", str(config), "chat", cwd=tmp_path, env=env)
    try:
        await asyncio.to_thread(first.wait_for, _prompt_shows(""))
        first.type("/mo\t")
        menu = await asyncio.to_thread(first.wait_for, "/model")
        first.type("\x15")  # Ctrl-U: clear the line
        first.type("/model set \t")
        await asyncio.to_thread(first.wait_for, "llama3.2:latest")  # offered in the menu
        first.type("\t")  # Tab again takes the first offer
        await asyncio.to_thread(first.wait_for, _prompt_shows("/model set llama3.2:latest"))
        first.type(ENTER)
        chosen = await asyncio.to_thread(first.wait_for, "now uses")
        first.type("remember the lighthouse" + ENTER)
        await asyncio.to_thread(first.wait_for, "echo: remember the lighthouse")
        first.type("\x04")  # Ctrl-D leaves
        assert await asyncio.to_thread(first.wait_exit) == 0
    finally:
        first.close()

    second = Terminal("--config", str(config), "chat", cwd=tmp_path, env=env)
    try:
        await asyncio.to_thread(second.wait_for, _prompt_shows(""))
        second.type(UP)
        await asyncio.to_thread(second.wait_for, _prompt_shows("remember the lighthouse"))
        second.type(UP)
        await asyncio.to_thread(second.wait_for, _prompt_shows("/model set llama3.2:latest"))
        second.type("\x03")  # Ctrl-C at the prompt: clears the line, says how to leave
        hint = await asyncio.to_thread(second.wait_for, "Ctrl-C again")
        second.type("\x03")  # pressed again: leaves
        code = await asyncio.to_thread(second.wait_exit)
    finally:
        second.close()

    assert "/model" in menu
    assert "/mode" in menu
    assert "This chat now uses llama3.2:latest." in chosen
    assert "Ctrl-D" in hint
    assert code == 0
