"""Reading standard input line by line without blocking the event loop.

A daemon thread does the blocking reads and hands each line to the loop. This works the same
whether stdin is a terminal, a pipe or a file, and unlike ``connect_read_pipe`` it never switches
the terminal to non-blocking mode (which, on a pty, would also make stdout non-blocking because
both share one open file description).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import TextIO

__all__ = ["read_lines"]


async def read_lines(stream: TextIO) -> AsyncIterator[str]:
    """Yield the lines of ``stream`` (without the line ending) until end of file.

    Args:
        stream: A text stream opened for reading, usually ``sys.stdin``; it must have a file
            descriptor.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    fd = stream.fileno()
    decoder = codecs.getincrementaldecoder(stream.encoding or "utf-8")(errors="replace")

    def deliver(item: str | None) -> None:
        # RuntimeError: the loop is closed, the chat is over and nobody waits for this line.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        # os.read rather than stream.readline: a daemon thread blocked inside the buffered
        # reader holds its lock, and the interpreter aborts if it must take that lock at exit.
        pending = ""
        try:
            while chunk := os.read(fd, 65536):
                pending += decoder.decode(chunk)
                *complete, pending = pending.split("\n")
                for line in complete:
                    deliver(line.rstrip("\r"))
            pending += decoder.decode(b"", final=True)
            if pending:
                deliver(pending.rstrip("\r"))
        except OSError:
            # stdin was closed under us: the same as the end of input.
            pass
        finally:
            deliver(None)

    # A daemon thread, because a read blocked on a terminal must not keep the process alive.
    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while True:
        line = await queue.get()
        if line is None:
            return
        yield line
