"""What a command answers: :class:`CommandResult` and its typed views, each also Markdown.

The engine returns one of these for every :data:`bot.conversation.commands.Command`; an adapter
renders the typed ones its own way (a Discord embed, a Matrix HTML table, a terminal progress
bar) and falls back on :meth:`CommandResult.markdown` for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from bot.model.port import HostStatus, short_host
from bot.model.toolbox import ToolCallRecord
from bot.prompts import ChainResult
from bot.store.port import ChannelStats
from bot.types import ModelInfo, PullProgress

__all__ = [
    "ChainView",
    "CommandResult",
    "ModelListView",
    "PullView",
    "Refusal",
    "SettingRow",
    "SettingsView",
    "StatsView",
    "ToolCallsView",
    "ToolRow",
    "ToolsView",
    "call_outcome",
    "code_block",
    "render_progress_bar",
]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command produced. ``ok`` is false for refusals and errors."""

    title: str
    body: str = ""
    ok: bool = True
    ephemeral: bool = False

    def as_markdown(self) -> str:
        icon = "" if self.ok else "⚠️ "
        if not self.body:
            return f"{icon}**{self.title}**"
        return f"{icon}**{self.title}**\n{self.body}"


@dataclass(frozen=True, slots=True)
class Refusal(CommandResult):
    """The author may not do this; ``body`` says why."""

    ok: bool = False
    ephemeral: bool = True


@dataclass(frozen=True, slots=True)
class SettingRow:
    key: str
    value: str
    source: str


@dataclass(frozen=True, slots=True)
class SettingsView(CommandResult):
    rows: Sequence[SettingRow] = ()

    def as_markdown(self) -> str:
        lines = [f"**{self.title}**"]
        lines += [f"- `{r.key}`: {r.value} _(from {r.source})_" for r in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ModelListView(CommandResult):
    """The installed models; with several Ollama hosts, where each is and each host's state."""

    models: Sequence[ModelInfo] = ()
    current: str = ""
    hosts: Sequence[HostStatus] = ()

    def as_markdown(self) -> str:
        if not self.models:
            return f"**{self.title}**\nNo models are installed. Pull one with `model pull <name>`."
        several = len(self.hosts) > 1
        lines = [f"**{self.title}**"]
        for m in self.models:
            marker = " ← current" if m.name == self.current else ""
            caps = ", ".join(sorted(m.capabilities - {"completion"}))
            extra = f" ({caps})" if caps else ""
            where = ""
            if several:
                on = [short_host(h.url) for h in self.hosts if m.name in h.models]
                where = f" on {', '.join(on)}" if on else ""
            lines.append(f"- `{m.name}`{extra}{where}{marker}")
        if several:
            lines.append("**Hosts**")
            lines.extend(_host_line(h) for h in self.hosts)
        return "\n".join(lines)


def _host_line(host: HostStatus) -> str:
    name = f"`{short_host(host.url)}`"
    if not host.up:
        return f"- {name} down: {host.detail or 'not reachable'}"
    busy = f"{host.in_flight}/{host.cap}" if host.cap is not None else str(host.in_flight)
    loaded = ", ".join(host.loaded) or "none"
    count = f"{len(host.models)} model{'' if len(host.models) == 1 else 's'}"
    return f"- {name} up, {count}, {busy} generating, loaded: {loaded}"


@dataclass(frozen=True, slots=True)
class StatsView(CommandResult):
    stats: ChannelStats | None = None

    def as_markdown(self) -> str:
        s = self.stats
        if s is None:
            return f"**{self.title}**"
        speed = f"{s.mean_tokens_per_second:.1f}" if s.mean_tokens_per_second else "n/a"
        return (
            f"**{self.title}**\n- messages: {s.messages:,}\n- prompt tokens: {s.prompt_tokens:,}"
            f"\n- generated tokens: {s.eval_tokens:,}\n- mean speed: {speed} tokens/s"
        )


@dataclass(frozen=True, slots=True)
class ChainView(CommandResult):
    chain: ChainResult | None = None

    def as_markdown(self) -> str:
        c = self.chain
        if c is None:
            return f"**{self.title}**"
        steps = "\n".join(f"{i}. {s}" for i, s in enumerate(c.steps, 1))
        reasoning = steps or c.reasoning
        return f"**Reasoning**\n{reasoning}\n\n**Solution**\n{c.solution}"


@dataclass(frozen=True, slots=True)
class ToolRow:
    """One line of ``tools list``: a tool, what it does, and whether it is allowed here."""

    name: str
    description: str
    allowed: bool
    source: str = "default"


@dataclass(frozen=True, slots=True)
class ToolsView(CommandResult):
    rows: Sequence[ToolRow] = ()
    servers_down: Sequence[tuple[str, str]] = ()

    def as_markdown(self) -> str:
        lines = [f"**{self.title}**"]
        for row in self.rows:
            verdict = "allowed" if row.allowed else "not allowed"
            first = row.description.strip().splitlines()[0] if row.description.strip() else ""
            about = f": {_short(first, 100)}" if first else ""
            lines.append(f"- `{row.name}`{about} — {verdict}")
        for server, status in self.servers_down:
            lines.append(f"- `{server}.*`: the server is {_short(status, 100)}")
        if len(lines) == 1:
            lines.append("No tools are available.")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ToolCallsView(CommandResult):
    """The full calls and results of a reply (untrusted text: each inside a code block)."""

    calls: Sequence[ToolCallRecord] = ()

    def as_markdown(self) -> str:
        if not self.calls:
            return f"**{self.title}**\nNo tool calls yet in this conversation."
        lines = [f"**{self.title}**"]
        for call in self.calls:
            lines.append(f"{call.name} → {call_outcome(call)}")
            lines.append(code_block(json.dumps(dict(call.arguments), indent=2), "json"))
            lines.append(code_block(call.result))
        return "\n".join(lines)

    def as_text(self) -> str:
        """Plain text, for an attached file."""
        parts = []
        for call in self.calls:
            arguments = json.dumps(dict(call.arguments), indent=2, ensure_ascii=False)
            parts.append(
                f"{call.name} -> {call_outcome(call)}\narguments:\n{arguments}\n"
                f"result:\n{call.result}\n"
            )
        return "\n".join(parts)


def call_outcome(call: ToolCallRecord) -> str:
    """``ok, 0.4 s`` or ``error, 0.1 s``."""
    return f"{'ok' if call.ok else 'error'}, {call.seconds:.1f} s"


def code_block(text: str, language: str = "") -> str:
    """``text`` in a fenced block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class PullView(CommandResult):
    """A pull in progress: iterate ``progress`` (it never raises; a failure is its last status)."""

    model: str = ""
    progress: AsyncIterator[PullProgress] | None = field(default=None, compare=False)


def render_progress_bar(progress: PullProgress, width: int = 20) -> str:
    """``pulling 3f2a…  [#######-------------]  35%  1.2/3.4 GB`` (status only when no total)."""
    fraction = progress.fraction
    if fraction is None:
        return progress.status
    filled = round(fraction * width)
    bar = "█" * filled + "░" * (width - filled)
    done = (progress.completed or 0) / 1e9
    total = (progress.total or 0) / 1e9
    return f"{progress.status}  [{bar}] {fraction:4.0%}  {done:.2f}/{total:.2f} GB"
