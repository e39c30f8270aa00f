"""The engine's side of tools: building the MCP hub, showing calls, the ``tools`` commands.

- :func:`hub_specs` turns ``[[mcp.servers]]`` into what :class:`bot.model.mcp.McpHub` starts.
- :class:`CallLines` shows each call in the reply as it runs and after: one compact line,
  ``🔧 `files.read_file(path="notes.md")` → ok, 0.4 s``, arguments and errors inside code spans
  (they are untrusted text), never the whole result.
- :class:`ToolCommands` runs ``tools list``, ``tools calls``, ``tools allow`` and ``tools deny``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Sequence

from bot.config import BotConfig
from bot.conversation.commands import CommandContext, ToolsAllow, ToolsCalls, ToolsDeny, ToolsList
from bot.conversation.permissions import SCOPE_WORDS, settings_refusal
from bot.conversation.results import (
    CommandResult,
    SettingRow,
    ToolCallsView,
    ToolRow,
    ToolsView,
    call_outcome,
)
from bot.conversation.settings import target_scope
from bot.conversation.tool_rules import TOOLS_KEY, check_pattern, load_rules
from bot.model.mcp import McpServerSpec
from bot.model.toolbox import ToolBox, ToolCallRecord
from bot.reply.streamer import ReplyStreamer
from bot.store.port import ScopeKind, Store
from bot.turn import SessionKey

__all__ = ["CallLines", "LastCalls", "ToolCommands", "hub_specs"]

logger = logging.getLogger(__name__)

LINE_ARGS_CHARS = 80
LINE_ERROR_CHARS = 120


def hub_specs(config: BotConfig) -> list[McpServerSpec]:
    """The configured MCP servers, with their ``env`` values from the bot's environment."""
    values = config.secrets.mcp_env
    return [
        McpServerSpec(
            name=server.name,
            command=server.command,
            args=server.args,
            env={var: values[name].get_secret_value() for var, name in server.env.items()},
            url=server.url,
            timeout=server.timeout,
        )
        for server in config.mcp.servers
    ]


def _span(text: str, limit: int) -> str:
    """``text`` as one inline code span: one line, no backticks, at most ``limit`` characters."""
    flat = " ".join(text.split()).replace("`", "'")
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat}`"


def call_text(record: ToolCallRecord) -> str:
    """``files.read_file(path="notes.md")``: the call as the model made it."""
    args = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in record.arguments.items()
    )
    return f"{record.name}({args})"


class CallLines:
    """Shows a reply's tool calls in it, one line each (see the module docstring)."""

    def __init__(self, streamer: ReplyStreamer) -> None:
        self._streamer = streamer

    def __call__(self, record: ToolCallRecord) -> None:
        if record.ok is None:
            self._streamer.push_note(
                "\N{WRENCH} " + _span(call_text(record), LINE_ARGS_CHARS + len(record.name)),
                paragraph=True,
            )
            return
        if record.ok:
            self._streamer.push_note(f" → {call_outcome(record)}")
        else:
            error = _span(record.result, LINE_ERROR_CHARS)
            self._streamer.push_note(f" → error: {error}, {record.seconds:.1f} s")


class LastCalls:
    """The tool calls of the last reply that used tools, per conversation (the newest few).

    Also kept per room: a reply chain in a channel is its own conversation, but ``tools calls``
    issued in the channel should find it.
    """

    def __init__(self, keep: int = 256) -> None:
        self._keep = keep
        self._calls: OrderedDict[SessionKey, tuple[ToolCallRecord, ...]] = OrderedDict()

    def remember(self, key: SessionKey, calls: Sequence[ToolCallRecord]) -> None:
        if not calls:
            return
        for where in {key, SessionKey(key.platform, key.room)}:
            self._calls[where] = tuple(calls)
            self._calls.move_to_end(where)
        while len(self._calls) > self._keep:
            self._calls.popitem(last=False)

    def get(self, key: SessionKey) -> tuple[ToolCallRecord, ...]:
        return self._calls.get(key, ())


ToolCommand = ToolsList | ToolsAllow | ToolsDeny | ToolsCalls


class ToolCommands:
    """Runs the ``tools`` commands.

    Args:
        store: Settings and the audit log.
        toolbox: The tools available now.
        builtins_default: Whether built-ins are allowed where no rule names them.
        last_calls: The calls shown by ``tools calls``.
    """

    def __init__(
        self, store: Store, toolbox: ToolBox, *, builtins_default: bool, last_calls: LastCalls
    ) -> None:
        self._store = store
        self._toolbox = toolbox
        self._builtins_default = builtins_default
        self._last_calls = last_calls

    async def run(self, ctx: CommandContext, command: ToolCommand) -> CommandResult:
        match command:
            case ToolsList():
                return await self._list(ctx)
            case ToolsCalls():
                calls = self._last_calls.get(ctx.key)
                return ToolCallsView("Tool calls of the last reply here", calls=calls)
            case ToolsAllow(name=name, scope=scope):
                return await self._change(ctx, name, scope, allow=True)
            case ToolsDeny(name=name, scope=scope):
                return await self._change(ctx, name, scope, allow=False)
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    async def settings_row(self, ctx: CommandContext) -> SettingRow:
        """The ``tools`` line of ``settings``: the rules in force here, widest scope first."""
        rules = await load_rules(self._store, ctx.key, ctx.server, builtins=self._builtins_default)
        said = [
            f"`{name}` {'allowed' if allowed else 'denied'} ({kind.value})"
            for kind, layer in reversed(rules.layers)
            for name, allowed in layer.items()
        ]
        default = "built-ins only" if self._builtins_default else "none"
        source = rules.layers[0][0].value if rules.layers else "default"
        return SettingRow(TOOLS_KEY, "; ".join(said) or default, source)

    async def _list(self, ctx: CommandContext) -> ToolsView:
        rules = await load_rules(self._store, ctx.key, ctx.server, builtins=self._builtins_default)
        rows = []
        for entry in self._toolbox.entries():
            allowed, source = rules.decide(entry.qualified, entry.server)
            rows.append(ToolRow(entry.qualified, entry.description, allowed, source))
        hub = self._toolbox.hub
        down = []
        if hub is not None:
            down = [(name, hub.status(name)) for name in hub.server_names]
            down = [(name, status) for name, status in down if status != "up"]
        return ToolsView("Tools here", rows=rows, servers_down=down)

    async def _change(
        self, ctx: CommandContext, name: str, scope_kind: ScopeKind | None, *, allow: bool
    ) -> CommandResult:
        scope = target_scope(ctx.key, ctx.server, scope_kind)
        where = ctx.room_word if scope.kind is ScopeKind.ROOM else SCOPE_WORDS[scope.kind]
        current = (await self._store.get_settings(scope)).get(TOOLS_KEY)
        old = dict(current) if isinstance(current, dict) else {}
        refusal = settings_refusal(ctx.author, scope.kind, TOOLS_KEY, where)
        if refusal is not None:
            # Audited before the name is checked, so that every attempt is on record.
            await self._store.audit(
                scope,
                TOOLS_KEY,
                old or None,
                {**old, name[:200]: allow},
                actor_id=ctx.author.id,
                actor_name=ctx.author.name,
                allowed=False,
            )
            logger.warning(
                "refused a non-moderator",
                extra={"actor": ctx.author.id, "key": TOOLS_KEY, "scope": str(scope)},
            )
            return refusal
        builtins = [e.qualified for e in self._toolbox.entries() if e.server is None]
        pattern = check_pattern(name, builtins=builtins, servers=self._toolbox.servers)
        new = {**old, pattern: allow}
        await self._store.set_setting(scope, TOOLS_KEY, new)
        await self._store.audit(
            scope,
            TOOLS_KEY,
            old or None,
            new,
            actor_id=ctx.author.id,
            actor_name=ctx.author.name,
            allowed=True,
        )
        verb = "allowed" if allow else "denied"
        return CommandResult(f"`{pattern}` {verb}", f"In this {where}, from the next message on.")
