"""The terminal chat on a real pseudo-terminal: prompt, streamed reply, in-place progress bar."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import sys
from pathlib import Path

from tests.cli.runner import CHILD_TIMEOUT, child_env, write_config
from tests.fakes.fake_ollama import FakeOllama


def _read_until(master: int, marker: bytes, seen: bytearray) -> None:
    """Blocking: read the pty into ``seen`` until ``marker`` shows up or the child hangs up."""
    while marker not in seen:
        ready, _, _ = select.select([master], [], [], CHILD_TIMEOUT)
        if not ready:
            raise AssertionError(f"no {marker!r} in {bytes(seen)!r}")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every slave end is closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}: {bytes(seen)!r}")
        seen += chunk


async def test_chat_on_a_pty_prompts_streams_and_redraws_the_pull_bar(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    config = write_config(tmp_path)
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ollabot_app",
            "--config",
            str(config),
            "chat",
            cwd=tmp_path,
            env=child_env({"OLLAMA_HOST": fake_ollama.url, "TERM": "dumb"}),
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        seen = bytearray()

        await asyncio.to_thread(_read_until, master, b"> ", seen)
        os.write(master, b"hello from a terminal\n")
        await asyncio.to_thread(_read_until, master, b"tokens/s]", seen)
        os.write(master, b"/model pull phi3\n")
        await asyncio.to_thread(_read_until, master, b"success", seen)
        os.write(master, b"/quit\n")
        code = await asyncio.wait_for(proc.wait(), CHILD_TIMEOUT)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)

    text = seen.decode()
    assert code == 0
    assert text.startswith("ollabot terminal chat.")
    assert "echo: hello from a terminal" in text
    # On a terminal the bar is redrawn in place (carriage returns), not printed line by line.
    assert "\r" + "pulling " in text
    assert "100%" in text
    assert "Traceback" not in text
