"""Which tools a conversation may use: per-scope allow and deny rules, through the cascade.

Each scope (server, room, thread) stores under the ``tools`` setting a mapping from a tool name
(``calculate``, ``files.read_file``) or a server pattern (``files.*``) to allowed or not. For a
tool, the narrowest scope that has a rule for it decides; within one scope the exact name goes
before the server pattern. With no rule anywhere, a built-in is allowed when
``defaults.tools`` is on, and a tool from an MCP server is not: no MCP tool is offered anywhere
until a moderator allows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.conversation.settings import scopes_for
from bot.errors import InputRejected
from bot.store.port import ScopeKind, Store
from bot.turn import SessionKey

__all__ = ["TOOLS_KEY", "ToolRules", "check_pattern", "load_rules"]

TOOLS_KEY = "tools"
"""The setting that holds a scope's tool rules."""


@dataclass(frozen=True, slots=True)
class ToolRules:
    """The tool rules in force for one conversation.

    Attributes:
        layers: Each scope's rules, narrowest scope first.
        builtins: Whether built-ins are allowed where no rule names them.
    """

    layers: Sequence[tuple[ScopeKind, Mapping[str, bool]]]
    builtins: bool = True

    def decide(self, qualified: str, server: str | None) -> tuple[bool, str]:
        """Whether the tool is allowed here, and where that comes from (a scope or default)."""
        for kind, rules in self.layers:
            if qualified in rules:
                return bool(rules[qualified]), kind.value
            if server is not None and f"{server}.*" in rules:
                return bool(rules[f"{server}.*"]), kind.value
        return (self.builtins if server is None else False), "default"

    def allows(self, qualified: str, server: str | None) -> bool:
        return self.decide(qualified, server)[0]


async def load_rules(
    store: Store, key: SessionKey, server_id: str | None, *, builtins: bool
) -> ToolRules:
    """The rules for the conversation ``key`` (in the server ``server_id``, if any)."""
    layers: list[tuple[ScopeKind, Mapping[str, bool]]] = []
    for scope in reversed(scopes_for(key, server_id)):
        stored = (await store.get_settings(scope)).get(TOOLS_KEY)
        if isinstance(stored, dict):
            layers.append((scope.kind, {str(k): bool(v) for k, v in stored.items()}))
    return ToolRules(tuple(layers), builtins=builtins)


def check_pattern(name: str, *, builtins: Sequence[str], servers: Sequence[str]) -> str:
    """Normalise a tool name or pattern a moderator typed, or refuse it.

    Accepted: a built-in's name, ``server.tool`` or ``server.*`` for a configured server (the
    tool need not be listed now: its server may be restarting).

    Raises:
        InputRejected: Saying what is accepted.
    """
    text = name.strip()
    server, dot, tool = text.partition(".")
    if not dot:
        if text in builtins:
            return text
        known = ", ".join(f"`{b}`" for b in builtins) or "none"
        raise InputRejected(
            f"Unknown tool '{text[:60]}'. Name a built-in ({known}) or a server's tool as "
            "`server.tool` or `server.*`."
        )
    if server not in servers:
        known = ", ".join(f"`{s}`" for s in servers) or "none are configured"
        raise InputRejected(f"There is no tool server '{server[:60]}' (servers: {known}).")
    if not tool or len(tool) > 128 or any(c.isspace() for c in tool):
        raise InputRejected("Name a tool as `server.tool`, or all of a server's as `server.*`.")
    return text
