"""Platform-free commands: what a user can ask the bot to do besides chatting.

Adapters turn their own syntax (Discord slash commands, a Matrix ``!ollabot`` prefix, a terminal
``/``) into one of the :data:`Command` values; :meth:`bot.conversation.engine.Engine.execute` runs
it and returns a typed :class:`CommandResult` that the adapter renders its own way (every result
also renders itself as Markdown).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bot.errors import InputRejected
from bot.store.port import ScopeKind
from bot.turn import Author, SessionKey


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Where a command was issued and by whom.

    Attributes:
        room_word: What the platform calls a conversation's room in answers ("This channel
            now uses ..."): "channel" on Discord, "chat" in the terminal.
    """

    key: SessionKey
    server: str | None
    author: Author
    room_word: str = "channel"


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelShow:
    pass


@dataclass(frozen=True, slots=True)
class ModelSet:
    name: str
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class ModelList:
    pass


@dataclass(frozen=True, slots=True)
class ModelPull:
    """Pull ``name`` to the Ollama hosts named in ``hosts`` (all of them when empty)."""

    name: str
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModeShow:
    pass


@dataclass(frozen=True, slots=True)
class ModeSet:
    mode: str
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class SystemShow:
    pass


@dataclass(frozen=True, slots=True)
class SystemSet:
    text: str
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class SystemClear:
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class ThinkSet:
    on: bool
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class ContextShow:
    pass


@dataclass(frozen=True, slots=True)
class ContextSet:
    """Set the context window in tokens; ``None`` clears it (the wider scope's value applies)."""

    tokens: int | str | None
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class Cot:
    task: str


@dataclass(frozen=True, slots=True)
class SettingsShow:
    pass


@dataclass(frozen=True, slots=True)
class Stats:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    """The list of commands; ``extra`` lists first the ones only this platform has (Discord's
    ``ask`` and ``chat``), as ``(usage, what it does)``."""

    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolsList:
    pass


@dataclass(frozen=True, slots=True)
class ToolsAllow:
    """Allow a tool (``calculate``, ``server.tool``) or a server's tools (``server.*``)."""

    name: str
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class ToolsDeny:
    name: str
    scope: ScopeKind | None = None


@dataclass(frozen=True, slots=True)
class ToolsCalls:
    """The full calls and results of the last reply here that used tools."""


Command = (
    ModelShow
    | ModelSet
    | ModelList
    | ModelPull
    | ModeShow
    | ModeSet
    | SystemShow
    | SystemSet
    | SystemClear
    | ThinkSet
    | ContextShow
    | ContextSet
    | Cot
    | SettingsShow
    | Stats
    | Reset
    | Stop
    | Help
    | ToolsList
    | ToolsAllow
    | ToolsDeny
    | ToolsCalls
)

# The commands every platform has (``parse_command`` reads each of them).
HELP_LINES: tuple[tuple[str, str], ...] = (
    (
        "model show | set <name> | list | pull <name> [host ...]",
        "which model answers (set/pull: moderators)",
    ),
    ("mode show | set <balanced|precise|creative|code>", "answer style (set: moderators)"),
    ("system show | set <text> | clear", "the system prompt (set/clear: moderators)"),
    ("think on | off", "let thinking models think first (moderators)"),
    ("context show | set <tokens> | clear", "the model's context window (set/clear: moderators)"),
    ("cot <task>", "chain of thought: reasoning steps, then the solution"),
    ("tools list | calls", "the tools the model may use here; the last reply's tool calls"),
    ("tools allow | deny <server.tool|server.*>", "choose the tools used here (moderators)"),
    ("settings", "every setting in force here and where it comes from"),
    ("stats", "messages, tokens and speed in this channel"),
    ("reset", "forget this conversation and start afresh"),
    ("stop", "stop the reply being written"),
    ("help", "this list"),
)

USAGE = "Commands: " + "; ".join(usage for usage, _ in HELP_LINES) + "."

_SCOPES = {"server": ScopeKind.SERVER, "room": ScopeKind.ROOM, "channel": ScopeKind.ROOM}
_SCOPES["thread"] = ScopeKind.THREAD
_SCOPES["space"] = ScopeKind.SERVER
_SCOPES["guild"] = ScopeKind.SERVER


def _take_scope(words: list[str]) -> tuple[list[str], ScopeKind | None]:
    """Strip a trailing ``--scope X`` / ``scope=X`` from the words."""
    for i, word in enumerate(words):
        value: str | None = None
        if word in {"--scope", "-s"} and i + 1 < len(words):
            value = words[i + 1]
            rest = words[:i] + words[i + 2 :]
        elif word.startswith(("--scope=", "scope=")):
            value = word.split("=", 1)[1]
            rest = words[:i] + words[i + 1 :]
        if value is not None:
            kind = _SCOPES.get(value.lower())
            if kind is None:
                raise InputRejected(f"Unknown scope '{value}': use server, room or thread.")
            return rest, kind
    return words, None


def parse_command(text: str) -> Command:
    """Parse a command's text (without the platform prefix), e.g. ``"model set llama3.2"``.

    Raises:
        InputRejected: with the usage when the text is not a command.
    """
    stripped = text.strip()
    if not stripped:
        raise InputRejected(USAGE)
    head, _, rest = stripped.partition(" ")
    head = head.lower().lstrip("/!")
    rest = rest.strip()
    if head in {"cot", "system"}:
        return _parse_free_text(head, rest)
    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.split()
    words, scope = _take_scope(words)
    sub = words[0].lower() if words else "show"
    args = words[1:]

    if head in {"model", "models"}:
        if head == "models" or sub == "list":
            return ModelList()
        if sub == "show":
            return ModelShow()
        if sub == "set" and len(args) == 1:
            return ModelSet(args[0], scope)
        if sub == "pull" and args:
            return ModelPull(args[0], tuple(args[1:]))
        raise InputRejected(
            "Usage: model show | model set <name> | model list | model pull <name> [host ...]"
        )
    if head == "pull" and words:
        return ModelPull(words[0], tuple(words[1:]))
    if head == "mode":
        if sub == "show":
            return ModeShow()
        if sub == "set" and len(args) == 1:
            return ModeSet(args[0].lower(), scope)
        if len(words) == 1:
            return ModeSet(sub, scope)
        raise InputRejected("Usage: mode show | mode set <balanced|precise|creative|code>")
    if head == "context":
        if sub == "show" and not args:
            return ContextShow()
        if sub == "set" and len(args) == 1:
            return ContextSet(args[0], scope)
        if sub == "clear" and not args:
            return ContextSet(None, scope)
        raise InputRejected("Usage: context show | context set <tokens> | context clear")
    if head == "tools":
        return _parse_tools(sub, args, scope)
    if head == "think":
        if sub in {"on", "off"} and not args:
            return ThinkSet(sub == "on", scope)
        raise InputRejected("Usage: think on | think off")
    simple: dict[str, Command] = {
        "settings": SettingsShow(),
        "stats": Stats(),
        "reset": Reset(),
        "new": Reset(),
        "stop": Stop(),
        "help": Help(),
    }
    if head in simple and not args:
        return simple[head]
    # The word is echoed cut short: a 60,000-character "command" must still get an answer
    # small enough to send.
    shown = head if len(head) <= 40 else head[:39] + "…"
    raise InputRejected(f"Unknown command '{shown}'. {USAGE}")


def _parse_tools(sub: str, args: list[str], scope: ScopeKind | None) -> Command:
    if sub in {"show", "list"} and not args:
        return ToolsList()
    if sub == "calls" and not args:
        return ToolsCalls()
    if sub in {"allow", "deny"} and len(args) == 1:
        return ToolsAllow(args[0], scope) if sub == "allow" else ToolsDeny(args[0], scope)
    raise InputRejected(
        "Usage: tools list | tools calls | tools allow <server.tool|server.*> | "
        "tools deny <server.tool|server.*>"
    )


def _parse_free_text(head: str, rest: str) -> Command:
    if head == "cot":
        if not rest:
            raise InputRejected("Usage: cot <task>")
        return Cot(rest)
    sub, _, text = rest.partition(" ")
    sub = sub.lower() or "show"
    if sub == "show" and not text:
        return SystemShow()
    if sub == "clear":
        words, scope = _take_scope(text.split())
        if words:
            raise InputRejected("Usage: system clear")
        return SystemClear(scope)
    if sub == "set" and text.strip():
        return SystemSet(text.strip())
    raise InputRejected("Usage: system show | system set <text> | system clear")
