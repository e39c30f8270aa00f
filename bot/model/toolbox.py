"""Every tool the bot can offer (built-ins and MCP servers' tools), and one reply's use of them.

A :class:`ToolBox` knows the tools available now: the built-in ones and those of the MCP servers
that are up (see :mod:`bot.model.mcp`). Users and moderators name a tool as ``calculate`` (a
built-in) or ``server.tool``; the model gets a name that follows the function-name rules models
are trained on (``[A-Za-z0-9_-]``, at most 64 characters), mapped back one to one.

For one reply, :meth:`ToolBox.session` gives a :class:`ToolSession` (the generation's tool runner)
that offers only the tools the conversation allows, and for each call the model makes:

- refuses a tool that is not offered here (not allowed, or unknown) with an error the model reads;
- validates the arguments against the tool's input schema, so an invalid call never reaches a
  server;
- bounds the time of each call (the server's ``timeout``) and of all calls together;
- cuts the result to ``max_result_chars`` before it goes back to the model;
- reports each call as it starts and ends (:class:`ToolCallRecord`), for the user to see.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import ValidationError

from bot.errors import ToolError
from bot.model.mcp import McpHub
from bot.model.tools import Tool
from bot.types import ToolCall

__all__ = ["ToolBox", "ToolCallRecord", "ToolEntry", "ToolSession", "model_names"]

log = logging.getLogger(__name__)

MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One tool as offered.

    Attributes:
        qualified: How people name it: ``calculate``, or ``server.tool``.
        model_name: The name the model sees and calls.
        description: What it does (one line is shown in ``tools list``).
        parameters: Its JSON input schema.
        server: The MCP server it comes from; ``None`` for a built-in.
    """

    qualified: str
    model_name: str
    description: str
    parameters: Mapping[str, Any] = field(repr=False)
    server: str | None = None

    @property
    def tool(self) -> str:
        """Its name on its server (the qualified name without the server)."""
        return self.qualified if self.server is None else self.qualified[len(self.server) + 1 :]

    def schema(self) -> dict[str, Any]:
        """The tool in Ollama's ``tools`` form."""
        return {
            "type": "function",
            "function": {
                "name": self.model_name,
                "description": self.description,
                "parameters": ollama_parameters(self.parameters),
            },
        }


def ollama_parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An input schema in the shape Ollama reads: local ``$ref`` inlined, and an ``anyOf`` of
    plain types (what SDKs emit for an optional argument) folded into a list of types.

    Ollama (and its Python client) keep only ``type``, ``items``, ``description``, ``enum`` and
    ``properties`` of each argument; without this an optional argument would reach the model as
    an empty ``{}``. The arguments are still validated against the original schema.
    """
    defs = schema.get("$defs") or schema.get("definitions") or {}

    def walk(node: Any, depth: int) -> Any:
        if not isinstance(node, Mapping) or depth > 8:
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
            target = defs.get(ref.rsplit("/", 1)[1])
            if isinstance(target, Mapping):
                node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        out = {
            k: v if k == "properties" else walk(v, depth + 1)
            for k, v in node.items()
            if k not in {"$defs", "$ref"}
        }
        options = out.get("anyOf")
        if "type" not in out and isinstance(options, list):
            kinds = [o.get("type") for o in options if isinstance(o, Mapping)]
            if kinds and all(isinstance(k, str) for k in kinds) and len(kinds) == len(options):
                out.pop("anyOf")
                out["type"] = kinds[0] if len(kinds) == 1 else kinds
                items = [o["items"] for o in options if isinstance(o, Mapping) and "items" in o]
                if items and "items" not in out:
                    out["items"] = items[0]
        if isinstance(out.get("properties"), Mapping):
            out["properties"] = {k: walk(v, depth + 1) for k, v in out["properties"].items()}
        return out

    result = walk(dict(schema), 0)
    result.pop("definitions", None)
    result.setdefault("type", "object")
    return dict(result)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


def model_names(qualified: Iterable[str]) -> dict[str, str]:
    """Model-safe, unique names for ``qualified`` tool names (``server.tool`` -> ``server__tool``).

    Names that need no cleaning are served first, so they keep their natural form; a name that
    is too long, or that would collide with another, gets a short hash of its qualified name, so
    the mapping stays one to one whatever the order.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()

    def natural(q: str) -> str:
        server, dot, tool = q.partition(".")
        return f"{_safe(server)}__{_safe(tool)}" if dot else _safe(q)

    def clean(q: str) -> bool:
        return natural(q).replace("__", ".", 1) == q or natural(q) == q

    for q in sorted(set(qualified), key=lambda q: (not clean(q), q)):
        candidate = natural(q)
        if len(candidate) > MAX_NAME or candidate in taken:
            digest = hashlib.sha256(q.encode()).hexdigest()
            size = 8
            while True:
                candidate = f"{candidate[: MAX_NAME - size - 1]}_{digest[:size]}"
                if candidate not in taken:
                    break
                size += 4
        names[q] = candidate
        taken.add(candidate)
    return names


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One call as the user sees it.

    Attributes:
        name: The qualified tool name (or the name the model used, for an unknown tool).
        arguments: The arguments the model gave.
        ok: ``None`` while running; then whether it succeeded.
        result: What went back to the model (cut to ``max_result_chars``), or the error.
        seconds: How long it took.
    """

    name: str
    arguments: Mapping[str, Any]
    ok: bool | None = None
    result: str = ""
    seconds: float = 0.0


CallListener = Callable[[ToolCallRecord], None]


class ToolBox:
    """The tools the bot can offer now. See the module docstring.

    Args:
        builtins: The built-in tools.
        hub: The MCP servers, or ``None``.
        builtin_timeout: Seconds a built-in call may take.
        max_result_chars: The longest result that goes back to the model.
        max_total_seconds: The longest all the calls of one reply may take together.
    """

    def __init__(
        self,
        builtins: Sequence[Tool[Any]] = (),
        hub: McpHub | None = None,
        *,
        builtin_timeout: float = 10.0,
        max_result_chars: int = 8000,
        max_total_seconds: float = 120.0,
    ) -> None:
        self._builtins = {t.name: t for t in builtins}
        self.hub = hub
        self.builtin_timeout = builtin_timeout
        self.max_result_chars = max_result_chars
        self.max_total_seconds = max_total_seconds
        self._cache: tuple[int, list[ToolEntry]] | None = None

    @property
    def servers(self) -> list[str]:
        """The configured MCP servers, up or not."""
        return self.hub.server_names if self.hub is not None else []

    def entries(self) -> list[ToolEntry]:
        """Every tool available now: the built-ins, then each server's tools."""
        version = self.hub.version if self.hub is not None else 0
        if self._cache is not None and self._cache[0] == version:
            return self._cache[1]
        mcp_tools = self.hub.tools() if self.hub is not None else []
        names = model_names([*self._builtins, *(t.qualified for t in mcp_tools)])
        entries = [
            ToolEntry(
                qualified=b.name,
                model_name=names[b.name],
                description=b.description,
                parameters=b.schema()["function"]["parameters"],
            )
            for b in self._builtins.values()
        ]
        entries += [
            ToolEntry(
                qualified=t.qualified,
                model_name=names[t.qualified],
                description=t.description,
                parameters=t.input_schema,
                server=t.server,
            )
            for t in mcp_tools
        ]
        self._cache = (version, entries)
        return entries

    def session(
        self, allowed: Callable[[ToolEntry], bool], *, on_call: CallListener | None = None
    ) -> ToolSession:
        """The tools of one reply: those ``allowed`` here, as they are now."""
        return ToolSession(self, [e for e in self.entries() if allowed(e)], on_call=on_call)

    async def invoke(self, entry: ToolEntry, arguments: Mapping[str, Any]) -> str:
        """Run a tool whose arguments were validated.

        Raises:
            ToolError: It failed, timed out, or its server is down.
        """
        if entry.server is None:
            builtin = self._builtins[entry.qualified]
            try:
                async with asyncio.timeout(self.builtin_timeout):
                    text = await builtin.invoke(dict(arguments))
            except TimeoutError as err:
                raise ToolError(
                    f"{entry.qualified} took longer than {self.builtin_timeout:g} s "
                    "and was stopped."
                ) from err
            except ValidationError as err:
                raise ToolError(f"bad arguments for {entry.qualified}: {err}") from err
            if text.startswith("Error:"):  # the built-ins report their refusals as text
                raise ToolError(text.removeprefix("Error:").strip())
            return text
        if self.hub is None:  # pragma: no cover - entries with a server come from the hub
            raise ToolError(f"There is no MCP server '{entry.server}'.")
        result = await self.hub.call(entry.server, entry.tool, arguments)
        if result.is_error:
            raise ToolError(result.text or f"{entry.qualified} failed.")
        return result.text


class ToolSession:
    """The tools offered for one reply, and the runner of the model's calls.

    Implements :class:`bot.model.generation.ToolRunnerLike`.
    """

    def __init__(
        self, box: ToolBox, offered: Sequence[ToolEntry], *, on_call: CallListener | None = None
    ) -> None:
        self._box = box
        self._offered = {e.model_name: e for e in offered}
        self._on_call = on_call
        self._spent = 0.0
        self.calls: list[ToolCallRecord] = []

    @property
    def offered(self) -> list[ToolEntry]:
        return list(self._offered.values())

    def __bool__(self) -> bool:
        return bool(self._offered)

    def schemas(self) -> list[dict[str, Any]]:
        """The offered tools in Ollama's form."""
        return [e.schema() for e in self._offered.values()]

    async def run(self, call: ToolCall) -> str:
        """Run one call; the result, or an error text starting with ``Error:``. Never raises
        (except ``CancelledError`` when the reply is stopped)."""
        entry = self._offered.get(call.name)
        arguments = dict(call.arguments)
        if entry is None:
            record = ToolCallRecord(call.name, arguments, ok=False, result="not available here")
            self._report(record)
            log.info("model called a tool not offered here", extra={"tool": call.name[:80]})
            offered = ", ".join(self._offered) or "none"
            return (
                f"Error: the tool '{call.name}' is not available here. Available tools: {offered}."
            )
        started = ToolCallRecord(entry.qualified, arguments)
        self._report(started)
        clock = time.monotonic()
        problem = _invalid(entry, arguments)
        if problem is not None:
            text = f"Error: invalid arguments for {entry.qualified}: {problem}"
            self._report(_ended(started, False, problem, 0.0))
            return text
        room = self._box.max_total_seconds - self._spent
        if room <= 0:
            message = "the time allowed for tools in this reply is used up"
            self._report(_ended(started, False, message, 0.0))
            return f"Error: {message}."
        try:
            async with asyncio.timeout(room):
                text = await self._box.invoke(entry, arguments)
            ok = True
        except TimeoutError:
            ok, text = False, "the time allowed for tools in this reply is used up"
        except ToolError as err:
            ok, text = False, err.user_message
            log.info("tool call failed", extra={"tool": entry.qualified, "detail": err.detail})
        seconds = time.monotonic() - clock
        self._spent += seconds
        text = _cut(text.strip() or "(no output)", self._box.max_result_chars)
        self._report(_ended(started, ok, text, seconds))
        return text if ok else f"Error: {text}"

    def _report(self, record: ToolCallRecord) -> None:
        if record.ok is not None:
            self.calls.append(record)
        if self._on_call is not None:
            self._on_call(record)


def _ended(record: ToolCallRecord, ok: bool, result: str, seconds: float) -> ToolCallRecord:
    return ToolCallRecord(record.name, record.arguments, ok=ok, result=result, seconds=seconds)


def _invalid(entry: ToolEntry, arguments: Mapping[str, Any]) -> str | None:
    """What is wrong with ``arguments`` for ``entry``'s schema, or ``None``."""
    schema = dict(entry.parameters) or {"type": "object"}
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator = validator_class(schema)
        errors = sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return "the tool's own input schema is invalid"
    if not errors:
        return None
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        parts.append(f"{where}: {error.message[:200]}")
    return "; ".join(parts)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"\n[cut: {len(text) - limit:,} more characters]"
    return text[: max(0, limit - len(note))] + note
