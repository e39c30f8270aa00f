"""What became of each message of the load run, the numbers, and the chart (``bench/load.py``).

Every simulated message carries a tag ``q<n>``; the fake Ollama answers it with the words
``r<n>w0 r<n>w1 ... r<n>end``, so any version of a bot message can be matched to the message it
answers and classified: still streaming, complete, a busy refusal, or another error.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BUSY_PHRASES = ("faster than", "already waiting in this conversation")
"""What the engine's :class:`bot.errors.Busy` messages say (per-user rate, per-session queue)."""

_TAG = re.compile(r"\bq(\d+)\b")


def tag_of(text: str) -> int | None:
    """The message number a prompt carries (``q<n>``), if any."""
    match = _TAG.search(text)
    return int(match.group(1)) if match else None


def reply_words(tag: int, tokens: int) -> list[str]:
    """The scripted answer to message ``tag``: ``tokens`` word tokens, the last one ``r<n>end``."""
    return [f"r{tag}w{i} " for i in range(max(0, tokens - 1))] + [f"r{tag}end"]


@dataclass
class Tracked:
    """One simulated message and what the bot showed for it (times in seconds from the start).

    Attributes:
        tag: The message number.
        platform: ``discord`` or ``matrix``.
        place: The channel or room.
        user: Who sent it.
        sent_at: When it was sent.
        event_id: The platform's id of the message (Discord message id, Matrix event id).
        first_text_at: When the first text of the answer became visible.
        resolved_at: When the complete answer, or a busy/error message, became visible.
        outcome: ``answered``, ``busy``, ``error``, or ``None`` while unresolved.
        detail: The text of a busy or error message.
        follow_up: It continues the user's previous conversation (a reply to the bot's answer
            on Discord, a message in the thread on Matrix) instead of starting one.
        root: Matrix: the thread's root event (the conversation's first message).
    """

    tag: int
    platform: str
    place: str
    user: str
    sent_at: float
    event_id: str = ""
    first_text_at: float | None = None
    resolved_at: float | None = None
    outcome: str | None = None
    detail: str = ""
    follow_up: bool = False
    root: str = ""

    def see(self, text: str, at: float) -> None:
        """Record one visible version of the bot's message for this prompt."""
        shows_text = f"r{self.tag}w0" in text or f"r{self.tag}end" in text
        if shows_text and (self.first_text_at is None or at < self.first_text_at):
            self.first_text_at = at
        outcome = classify(text, self.tag)
        if outcome is not None and (self.resolved_at is None or at < self.resolved_at):
            self.outcome, self.resolved_at = outcome, at
            if outcome != "answered":
                self.detail = text.strip()[:160]


def classify(text: str, tag: int) -> str | None:
    """``answered`` / ``busy`` / ``error`` for a final-looking version, ``None`` otherwise."""
    if f"r{tag}end" in text:
        return "answered"
    if "⚠️" in text:
        return "busy" if any(p in text for p in BUSY_PHRASES) else "error"
    return None


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..1) of ``values`` (which must not be empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class BotLog:
    """What the bot's structured log says: engine queue waits and 429s seen."""

    queue_waits: list[float] = field(default_factory=list)
    interactions: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    discord_429_warnings: int = 0
    matrix_limit_exceeded: int = 0
    errors: int = 0


def read_bot_log(path: Path, *, since: float = 0.0) -> BotLog:
    """Parse the bot's JSON log lines from wall-clock time ``since`` on (others are skipped)."""
    log = BotLog()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        try:
            at = datetime.fromisoformat(str(record.get("timestamp"))).timestamp()
        except ValueError:
            at = since
        if at < since:
            continue
        if "M_LIMIT_EXCEEDED" in line:
            log.matrix_limit_exceeded += 1
        if record.get("level") in ("ERROR", "CRITICAL"):
            log.errors += 1
        if record.get("message") == "discord answered 429":
            log.discord_429_warnings += 1
        if record.get("event") == "interaction":
            log.interactions += 1
            outcome = str(record.get("outcome"))
            log.outcomes[outcome] = log.outcomes.get(outcome, 0) + 1
            wait = record.get("queue_wait")
            if isinstance(wait, int | float):
                log.queue_waits.append(float(wait))
    return log


def count_synapse_429s(path: Path) -> int:
    """Requests Synapse answered with 429 (from its access log lines)."""
    if not path.exists():
        return 0
    pattern = re.compile(r"Processed request: .* 429 \"")
    with path.open(encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if pattern.search(line))


def _dist(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
        f"max {max(values):.2f} s (n={len(values)})"
    )


def summary(tracked: list[Tracked]) -> dict[str, Any]:
    """Counts and waits over ``tracked``."""
    answered = [t for t in tracked if t.outcome == "answered"]
    waits = [t.first_text_at - t.sent_at for t in answered if t.first_text_at is not None]
    totals = [t.resolved_at - t.sent_at for t in answered if t.resolved_at is not None]
    return {
        "sent": len(tracked),
        "answered": len(answered),
        "busy": sum(1 for t in tracked if t.outcome == "busy"),
        "error": sum(1 for t in tracked if t.outcome == "error"),
        "lost": sum(1 for t in tracked if t.outcome is None),
        "first_text_waits": waits,
        "complete_times": totals,
    }


def report_lines(
    tracked: list[Tracked], log: BotLog, facts: dict[str, Any], limits: dict[str, Any]
) -> list[str]:
    """The printed report."""
    lines = [
        f"offered: {facts['messages']} messages from {facts['users']} users over "
        f"{facts['minutes']:g} min ({facts['channels']} Discord channels, {facts['rooms']} Matrix "
        f"rooms; Poisson arrivals, seed {facts['seed']}); replies {facts['tokens']} tokens at "
        f"{facts['rate']:g} tokens/s, fake Ollama {facts['parallel']} parallel",
        f"bot limits: {limits}",
        f"sending took {facts['send_span']:.1f} s; all resolved {facts['drain']:.1f} s after the "
        f"last message (deadline {facts['deadline']:g} s)",
    ]
    for name, group in [("all", tracked)] + [
        (p, [t for t in tracked if t.platform == p]) for p in ("discord", "matrix")
    ]:
        s = summary(group)
        follow_ups = sum(1 for t in group if t.follow_up)
        lines.append(
            f"{name:8} sent {s['sent']} ({follow_ups} follow-ups), answered {s['answered']}, "
            f"busy-answered {s['busy']}, error-answered {s['error']}, lost {s['lost']}"
        )
        lines.append(f"{'':8} message -> first visible token: {_dist(s['first_text_waits'])}")
        lines.append(f"{'':8} message -> complete answer visible: {_dist(s['complete_times'])}")
    lines.append(f"engine queue wait (bot log, {log.interactions} interactions in the run): "
                 f"{_dist(log.queue_waits)}")  # fmt: skip
    lines.append(f"interaction outcomes (bot log): {dict(sorted(log.outcomes.items()))}")
    lines.append(
        f"429s received: Discord {facts['discord_429']} (fake's counter; bot logged "
        f"{log.discord_429_warnings}), Matrix {facts['synapse_429']} (Synapse access log; "
        f"M_LIMIT_EXCEEDED in bot log: {log.matrix_limit_exceeded})"
    )
    lines.append(
        f"fake Ollama: {facts['streams']} streams in the run, at most {facts['max_waiting']} "
        "ever waiting for one of its parallel slots"
    )
    notices = facts["notices"]
    lines.append(
        f'queue notices the bot posted ("the bot is busy...", "you are number n..."): '
        f"Discord {notices['discord']}, Matrix {notices['matrix']}"
    )
    lines.append(
        f"bot process memory: RSS at start {facts['rss_start'] / 2**20:.1f} MiB, peak "
        f"{facts['rss_peak'] / 2**20:.1f} MiB (sampled every 0.5 s), at end "
        f"{facts['rss_end'] / 2**20:.1f} MiB"
    )
    cpu, span = facts["cpu"]
    lines.append(
        f"bot process CPU: {cpu:.0f} s over the {span:.0f} s of the run and its drain "
        f"({cpu / span:.0%} of one core)"
    )
    idle = facts.get("idle")
    if idle:
        lines.append(
            f"memory per idle session: {idle['per_session'] / 1024:.1f} KiB (RSS "
            f"{idle['before'] / 2**20:.1f} -> {idle['after'] / 2**20:.1f} MiB after "
            f"{idle['n']} new conversations, answered and left idle)"
        )
    lines.append(f"bot log: {log.errors} ERROR records")
    for t in [t for t in tracked if t.outcome in ("busy", "error")][:3]:
        lines.append(f"example {t.outcome} ({t.platform}): {t.detail!r}")
    return lines


def draw(tracked: list[Tracked], path: Path, *, bucket: float = 10.0, title: str = "") -> None:
    """Queue wait and throughput over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max([t.resolved_at or t.sent_at for t in tracked] + [1.0])
    edges = [i * bucket for i in range(int(end // bucket) + 2)]
    centres = [e + bucket / 2 for e in edges[:-1]]

    def per_bucket(times: list[float]) -> list[float]:
        counts = [0] * (len(edges) - 1)
        for at in times:
            counts[min(len(counts) - 1, int(at // bucket))] += 1
        return [c / bucket for c in counts]

    answered = [t for t in tracked if t.outcome == "answered" and t.first_text_at is not None]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for platform, colour in (("discord", "tab:blue"), ("matrix", "tab:green")):
        group = [t for t in answered if t.platform == platform]
        top.scatter(
            [t.sent_at for t in group],
            [t.first_text_at - t.sent_at for t in group],  # type: ignore[operator]
            s=4,
            alpha=0.4,
            color=colour,
            label=f"{platform} (each message)",
        )
    p50s, p95s, xs = [], [], []
    for lo, centre in zip(edges[:-1], centres, strict=True):
        waits = [t.first_text_at - t.sent_at for t in answered if lo <= t.sent_at < lo + bucket]  # type: ignore[operator]
        if waits:
            xs.append(centre)
            p50s.append(statistics.median(waits))
            p95s.append(percentile(waits, 0.95))
    top.plot(xs, p50s, color="black", label=f"p50 per {bucket:g} s")
    top.plot(xs, p95s, color="tab:red", label=f"p95 per {bucket:g} s")
    top.set_ylabel("message → first visible token (s)")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.step(centres, per_bucket([t.sent_at for t in tracked]), where="mid", label="sent")
    bottom.step(
        centres,
        per_bucket([t.resolved_at for t in answered if t.resolved_at is not None]),
        where="mid",
        label="answered (complete)",
    )
    refused = [t.resolved_at for t in tracked if t.outcome in ("busy", "error") and t.resolved_at]
    if refused:
        bottom.step(centres, per_bucket(refused), where="mid", label="busy/error answers")
    bottom.set_ylabel(f"messages/s (per {bucket:g} s)")
    bottom.set_xlabel("time since the first message (s)")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
