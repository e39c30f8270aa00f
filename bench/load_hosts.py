"""The fake Ollama servers of a load run (``bench/load.py --ollama-hosts N``).

With one host the bot finds it through ``OLLAMA_HOST``, as before. With several, the bot's config
lists them in ``ollama.hosts`` (each capped at the fakes' own parallel slots with
``max_parallel_per_host``), and one of them can be killed halfway through the run: every stream it
is serving is cut at once and it refuses connections from then on, as a crashed Ollama does. The
report then says how many streams the kill cut and how many replies the bot marked interrupted;
the target is that no message is lost and that only those replies are interrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from tests.fakes.fake_ollama import FakeOllama, Reply


class OllamaHosts:
    """``count`` fake Ollama servers, each with ``parallel`` generation slots.

    Args:
        count: How many hosts.
        parallel: Each host's generation slots (``max_parallel``, like ``OLLAMA_NUM_PARALLEL``).
    """

    def __init__(self, count: int, *, parallel: int) -> None:
        if count < 1:
            raise ValueError("at least one Ollama host")
        self.fakes = [FakeOllama() for _ in range(count)]
        self.parallel = parallel
        self.killed_at: float | None = None  # seconds from the run's start
        self.cut_streams = 0
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> OllamaHosts:
        for fake in self.fakes:
            await self._stack.enter_async_context(fake)
            fake.max_parallel = self.parallel
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def several(self) -> bool:
        return len(self.fakes) > 1

    def serve(self, reply_for: Callable[[Mapping[str, Any]], Reply]) -> None:
        """Answer every chat request with ``reply_for(body)``."""
        for fake in self.fakes:
            fake.default_reply = reply_for

    def env(self) -> dict[str, str]:
        """The bot's environment: ``OLLAMA_HOST`` for one host (several go in the config)."""
        return {} if self.several else {"OLLAMA_HOST": self.fakes[0].url}

    def config_lines(self) -> list[str]:
        """The bot's ``[ollama]`` table for several hosts (none for one)."""
        if not self.several:
            return []
        urls = ", ".join(f'"{fake.url}"' for fake in self.fakes)
        return ["[ollama]", f"hosts = [{urls}]", f"max_parallel_per_host = {self.parallel}"]

    @property
    def streams_started(self) -> int:
        return sum(fake.streams_started for fake in self.fakes)

    @property
    def max_waiting(self) -> int:
        return max(fake.max_waiting_streams for fake in self.fakes)

    async def kill_last_after(self, delay: float, origin: float) -> None:
        """Kill the last host ``delay`` seconds from now (``origin``: the run's monotonic start)."""
        await asyncio.sleep(delay)
        victim = self.fakes[-1]
        self.killed_at = time.monotonic() - origin
        await victim.kill()
        self.cut_streams = victim.killed_streams
        print(f"  killed Ollama host {victim.url} at t={self.killed_at:.0f} s: "
              f"{self.cut_streams} streams cut", flush=True)  # fmt: skip

    def shape(self) -> str:
        """For a chart's title: the hosts and the kill."""
        if not self.several:
            return ""
        killed = "" if self.killed_at is None else f", one killed at t={self.killed_at:.0f} s"
        return f" on {len(self.fakes)} Ollama hosts{killed}"

    def key_numbers(self, outcomes: Mapping[str, int]) -> dict[str, Any]:
        """The hosts' numbers for the side-by-side table."""
        return {
            "Ollama hosts": len(self.fakes),
            "host killed at": "-" if self.killed_at is None else f"t={self.killed_at:.0f} s",
            "streams cut by the kill": self.cut_streams,
            "replies marked interrupted": outcomes.get("interrupted", 0),
        }

    def report_lines(self, outcomes: Mapping[str, int], before: list[int]) -> list[str]:
        """Per host: streams served in the run; the kill and what it cut."""
        served = ", ".join(
            f"{fake.url.split('//')[1]} {fake.streams_started - b}"
            for fake, b in zip(self.fakes, before, strict=True)
        )
        lines = [f"Ollama hosts: {len(self.fakes)}, streams served per host: {served}"]
        if self.killed_at is not None:
            interrupted = outcomes.get("interrupted", 0)
            verdict = "only those" if interrupted <= self.cut_streams else "MORE than those"
            lines.append(
                f"host {self.fakes[-1].url.split('//')[1]} killed at t={self.killed_at:.0f} s "
                f"with {self.cut_streams} streams running; replies the bot marked interrupted: "
                f"{interrupted} ({verdict})"
            )
        return lines
