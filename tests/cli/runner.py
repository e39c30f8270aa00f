"""Running the real ``ollabot`` command line in a child process, as a user would.

The child gets a minimal environment (no secrets or hosts leak in from the developer's shell),
the repository on ``PYTHONPATH``, and runs in a temporary directory so that the default
``config/bot.toml`` and database never come from the checkout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A safety net against a hung child, not a timing assertion.
CHILD_TIMEOUT = 60.0


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for the child: PATH, HOME, PYTHONPATH, and ``extra``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(extra or {})
    return env


def write_config(directory: Path, body: str = "") -> Path:
    """A config file whose database lives in ``directory``, plus ``body`` (more TOML)."""
    path = directory / "bot.toml"
    db = directory / "ollabot.db"
    path.write_text(f'[storage]\npath = "{db}"\n\n{body}', encoding="utf-8")
    return path


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def start_ollabot(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m ollabot_app ARGS`` with pipes on stdin, stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ollabot_app",
        *args,
        cwd=cwd,
        env=child_env(env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, stdin: str = "") -> CliResult:
    """Write ``stdin``, close it, and collect the exit code and output."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), CHILD_TIMEOUT)
    except TimeoutError:
        proc.send_signal(signal.SIGKILL)
        out, err = await proc.communicate()
        raise AssertionError(f"ollabot hung; stdout={out!r} stderr={err!r}") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def run_ollabot(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: str = ""
) -> CliResult:
    """Run ``python -m ollabot_app ARGS`` to completion."""
    return await finish(await start_ollabot(*args, cwd=cwd, env=env), stdin)


async def read_until(stream: asyncio.StreamReader, marker: str) -> str:
    """Read from a child's output until ``marker`` appears; everything read so far."""
    seen = b""
    while marker.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(4096), CHILD_TIMEOUT)
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}: {seen.decode()!r}")
        seen += chunk
    return seen.decode()
