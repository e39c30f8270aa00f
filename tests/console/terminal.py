"""A person at a terminal, for tests: ``ollabot chat`` on a real pseudo-terminal, its screen
read back through pyte (a terminal emulator), keystrokes written in.

A thread reads the child's output into the emulated screen; :meth:`Terminal.wait_for` blocks
until the screen shows what a test waits for (call it through ``asyncio.to_thread`` while the
fake Ollama runs on the test's event loop). pyte answers the cursor-position requests
prompt_toolkit sends, as a real terminal does.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pyte

from tests.cli.runner import CHILD_TIMEOUT, child_env

__all__ = ["Terminal"]

COLUMNS, ROWS = 100, 40


def _take_the_terminal() -> None:
    """In the child, in its own session: make the pty its controlling terminal, as a shell
    does, so that Ctrl-C typed on it sends SIGINT."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``python -m ollabot_app ARGS`` on a pseudo-terminal of ``COLUMNS`` x ``ROWS``.

    Args:
        args: The command-line arguments.
        cwd: The working directory.
        env: Extra environment variables (``TERM`` defaults to ``xterm-256color``).
    """

    def __init__(self, *args: str, cwd: Path, env: Mapping[str, str]) -> None:
        self._screen = pyte.Screen(COLUMNS, ROWS)
        self._screen.write_process_input = self._answer
        self._stream = pyte.ByteStream(self._screen)
        self._changed = threading.Condition()
        self._ended = False
        self.raw = bytearray()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self._master = master
        environment = child_env({"TERM": "xterm-256color", **env})
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ollabot_app", *args],
            cwd=cwd,
            env=environment,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_the_terminal,
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _answer(self, data: str) -> None:
        os.write(self._master, data.encode())

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            with self._changed:
                if not chunk:
                    self._ended = True
                    self._changed.notify_all()
                    return
                self.raw += chunk
                self._stream.feed(chunk)
                self._changed.notify_all()

    def text(self) -> str:
        """What the screen shows, line by line, trailing blanks removed."""
        with self._changed:
            return "\n".join(line.rstrip() for line in self._screen.display).rstrip()

    def wait_for(self, condition: str | Callable[[str], bool]) -> str:
        """Block until the screen shows ``condition`` (a text, or a test of the screen's text).

        Returns:
            The screen's text then.

        Raises:
            AssertionError: the child ended, or nothing changed for ``CHILD_TIMEOUT`` seconds.
        """
        test = (lambda screen: condition in screen) if isinstance(condition, str) else condition
        with self._changed:
            while True:
                screen = "\n".join(line.rstrip() for line in self._screen.display).rstrip()
                if test(screen):
                    return screen
                if self._ended:
                    raise AssertionError(f"the chat ended; screen:\n{screen}")
                if not self._changed.wait(CHILD_TIMEOUT):
                    raise AssertionError(f"waited for {condition!r}; screen:\n{screen}")

    def type(self, keys: str | bytes) -> None:
        """Press keys (``"\\r"`` is Enter, ``"\\t"`` Tab, ``"\\x1b[A"`` the up arrow)."""
        os.write(self._master, keys.encode() if isinstance(keys, str) else keys)

    def wait_exit(self) -> int:
        """Wait for the child to exit; its exit code."""
        try:
            return self._proc.wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the chat did not exit; screen:\n{self.text()}") from None
        finally:
            self.close()

    def close(self) -> None:
        """Kill the child if it still runs, and release the terminal (idempotent)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(CHILD_TIMEOUT)
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
