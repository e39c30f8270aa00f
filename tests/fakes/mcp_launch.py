"""Start the tests' real MCP servers: ``mcp_files.py`` (stdio) and ``mcp_search.py`` (HTTP)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
FILES_SCRIPT = HERE / "mcp_files.py"
SEARCH_SCRIPT = HERE / "mcp_search.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SearchServer:
    """A running ``mcp_search.py``; ``url`` is its MCP endpoint."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start_again(self) -> None:
        """Start a new process on the same port (after :meth:`stop`)."""
        self.proc = _spawn(self.port)


def _spawn(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(SEARCH_SCRIPT), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mcp_search.py exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("mcp_search.py did not start listening")


@contextmanager
def search_server() -> Iterator[SearchServer]:
    """``mcp_search.py`` on a free loopback port, stopped on exit."""
    port = free_port()
    server = SearchServer(port, _spawn(port))
    try:
        yield server
    finally:
        server.stop()
