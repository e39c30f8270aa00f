"""The terminal chat as a person sees it: a real pseudo-terminal, keystrokes in, the screen read
back through a terminal emulator (pyte), the real engine against the fake Ollama."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from tests.cli.runner import write_config
from tests.console.terminal import Terminal
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


def _user_texts(body: dict[str, object]) -> list[str]:
    messages = body["messages"]
    assert isinstance(messages, list)
    return [m["content"] for m in messages if m["role"] == "user"]


def _bottom(screen: str) -> str:
    """The last line on screen: the status line."""
    return screen.split("\n")[-1].strip()


def _prompt_after(text: str, times: int = 1) -> Callable[[str], bool]:
    """``text`` is on screen ``times`` times and an empty prompt was drawn below the last (keys
    now reach the prompt; typed earlier, the terminal would echo them itself)."""

    def test(screen: str) -> bool:
        lines = screen.split("\n")
        found = [i for i, line in enumerate(lines) if text in line]
        return len(found) >= times and any(line.rstrip() == ">" for line in lines[found[-1] + 1 :])

    return test


def _prompt_shows(typed: str) -> Callable[[str], bool]:
    """The prompt's line (the last one starting with ">") reads ``> typed``."""

    def test(screen: str) -> bool:
        prompts = [line for line in screen.split("\n") if line.startswith(">")]
        return bool(prompts) and prompts[-1].rstrip() == f"> {typed}".rstrip()

    return test


async def test_reply_is_rendered_markdown_pull_shows_a_bar_and_ctrl_c_stops_a_reply(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path, "[defaults]\ncontext_length = 4096\n")
    # Spaced out a little so that the reply is drawn over several frames while it streams.
    fake_ollama.script(
        Reply(tokens=_words(ANSWER), token_delay=0.01),
        Reply(tokens=["never"], gate=asyncio.Event()),  # hangs until it is stopped
    )
    env = {"OLLAMA_HOST": fake_ollama.url}
    term = Terminal("--config", str(config), "chat", cwd=tmp_path, env=env)
    try:
        await asyncio.to_thread(term.wait_for, _prompt_shows(""))
        term.type("how do I cook?" + ENTER)
        screen = await asyncio.to_thread(term.wait_for, "tokens/s")
        # The status line at the bottom: model, mode, context used of its length, speed.
        toolbar = await asyncio.to_thread(
            term.wait_for, lambda s: "/4,096" in _bottom(s) and "tokens/s" in _bottom(s)
        )
        term.type("/model pull phi3" + ENTER)
        pulled = await asyncio.to_thread(term.wait_for, "success")
        term.type("tell me a long story" + ENTER)
        await fake_ollama.wait_for_requests(2, within=30)
        term.type("\x03")  # Ctrl-C while the reply is written: stops it, the chat goes on
        stopped = await asyncio.to_thread(term.wait_for, "stopped")
        await asyncio.to_thread(term.wait_for, _prompt_shows(""))
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
    bottom = _bottom(toolbar)
    assert bottom.startswith("llama3.2 \u00b7 balanced \u00b7 context ")
    used = int(re.search(r"context ([\d,]+)/4,096", bottom).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert used > 0
    assert "2.0/2.0 MB" in pulled  # a progress bar, not lines of text
    assert "\u2501" in pulled
    assert "\u23f9 stopped" in stopped
    assert len(fake_ollama.requests) == 2


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
        first.type("two lines:\x1b\rsecond line" + ENTER)  # Alt-Enter (Esc, Enter): a new line
        await asyncio.to_thread(first.wait_for, "second line\nllama3.2")
        first.type("\x04")  # Ctrl-D leaves (pressed as the reply ends: it waits for the prompt)
        assert await asyncio.to_thread(first.wait_exit) == 0
    finally:
        first.close()

    second = Terminal("--config", str(config), "chat", cwd=tmp_path, env=env)
    try:
        await asyncio.to_thread(second.wait_for, _prompt_shows(""))
        second.type(UP)  # the last message of the first run, both its lines
        recalled = await asyncio.to_thread(second.wait_for, "second line")
        second.type("\x03")  # Ctrl-C at the prompt: clears the line, says how to leave
        hint = await asyncio.to_thread(second.wait_for, _prompt_after("Ctrl-C again"))
        second.type("\x12light")  # Ctrl-R: search what was typed, in earlier runs too
        await asyncio.to_thread(second.wait_for, "the lighthouse")
        second.type(ENTER)  # takes the line found
        await asyncio.to_thread(second.wait_for, _prompt_shows("remember the lighthouse"))
        second.type(ENTER)
        await asyncio.to_thread(second.wait_for, "echo: remember the lighthouse")
        await asyncio.to_thread(second.wait_for, _prompt_shows(""))
        second.type("\x03")
        await asyncio.to_thread(second.wait_for, _prompt_after("Ctrl-C again", times=2))
        second.type("\x03")  # pressed again: leaves
        code = await asyncio.to_thread(second.wait_exit)
    finally:
        second.close()

    assert "/model" in menu
    assert "/mode" in menu
    assert "This chat now uses llama3.2:latest." in chosen
    assert "Ctrl-D" in hint
    assert "> two lines:" in recalled
    assert code == 0
    assert _user_texts(fake_ollama.requests[1])[-1] == "two lines:\nsecond line"
    assert _user_texts(fake_ollama.requests[2])[-1] == "remember the lighthouse"
