"""Runs platform-free commands for the engine: permission checks, audit, settings, models.

The runner is given the few parts of the engine it uses (settings, store, sessions, the model,
its catalogue and the generator), so it does not import the engine that builds it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from cachetools import TTLCache

from bot.conversation.commands import (
    HELP_LINES,
    Command,
    CommandContext,
    ContextSet,
    ContextShow,
    Cot,
    Help,
    ModelList,
    ModelPull,
    ModelSet,
    ModelShow,
    ModeSet,
    ModeShow,
    Reset,
    SettingsShow,
    Stats,
    Stop,
    SystemClear,
    SystemSet,
    SystemShow,
    ThinkSet,
    ToolsAllow,
    ToolsCalls,
    ToolsDeny,
    ToolsList,
)
from bot.conversation.permissions import SCOPE_WORDS, may_pull, settings_refusal
from bot.conversation.results import (
    CommandResult,
    ModelListView,
    PullView,
    Refusal,
    SettingRow,
    SettingsView,
    StatsView,
)
from bot.conversation.sessions import SessionManager
from bot.conversation.settings import (
    EffectiveSettings,
    SettingKey,
    SettingsResolver,
    parse_value,
    target_scope,
)
from bot.conversation.stopping import ActiveTurns, StopReport
from bot.conversation.tooling import ToolCommands
from bot.errors import OllabotError
from bot.model.catalogue import ModelCatalogue
from bot.model.port import ChatModel
from bot.store.port import Scope, ScopeKind, Store
from bot.types import ChatMode, PullProgress

logger = logging.getLogger(__name__)


class CommandRunner:
    """Executes :data:`bot.conversation.commands.Command` values.

    Args:
        turns: The turns being answered or waiting (for ``stop``).
        settings: Resolves the settings in force for a session.
        store: History, settings and the audit log.
        sessions: Queues and running replies (for ``stop`` and ``reset``).
        model: The chat model backend (``list``, ``pull``).
        catalogue: Model metadata, to check a ``model set`` name.
        tools: Runs the ``tools`` commands.
    """

    def __init__(
        self,
        *,
        turns: ActiveTurns,
        settings: SettingsResolver,
        store: Store,
        sessions: SessionManager,
        model: ChatModel,
        catalogue: ModelCatalogue,
        tools: ToolCommands,
    ) -> None:
        self._settings = settings
        self._store = store
        self._turns = turns
        self._sessions = sessions
        self._model = model
        self._catalogue = catalogue
        self._recent_refusals: TTLCache[tuple[str, str, str], bool] = TTLCache(
            maxsize=4096, ttl=_REFUSAL_WINDOW
        )
        self._tools = tools

    async def run(self, ctx: CommandContext, command: Command) -> CommandResult:
        try:
            if not isinstance(command, Stop):  # stopping a runaway reply is never refused
                await self._sessions.check_command_rate(ctx.author.id)
            return await self._dispatch(ctx, command)
        except OllabotError as err:
            logger.info(
                "command failed",
                extra={"command": type(command).__name__, "detail": err.detail},
            )
            return CommandResult("Could not do that", err.user_message, ok=False, ephemeral=True)

    async def _dispatch(self, ctx: CommandContext, command: Command) -> CommandResult:
        match command:
            case ModelShow():
                settings = await self._settings.effective(ctx.key, ctx.server)
                # The resolver names a source for every key ("default" when none is stored).
                source = settings.sources[SettingKey.MODEL]
                return CommandResult("Model", f"`{settings.model}` (set at: {source})")
            case ModelList():
                settings = await self._settings.effective(ctx.key, ctx.server)
                hosts = await self._model.hosts()
                models = await self._model.list_models()
                return ModelListView(
                    "Installed models", models=models, current=settings.model, hosts=hosts
                )
            case ModelSet(name=name, scope=scope):
                return await self._set(ctx, SettingKey.MODEL, name, scope, check_model=True)
            case ModelPull(name=name, hosts=hosts):
                return await self._pull(ctx, name, hosts)
            case ModeShow():
                settings = await self._settings.effective(ctx.key, ctx.server)
                modes = ", ".join(m.value for m in ChatMode)
                return CommandResult("Mode", f"`{settings.mode.value}` (modes: {modes})")
            case ModeSet(mode=mode, scope=scope):
                return await self._set(ctx, SettingKey.MODE, mode, scope)
            case SystemShow():
                settings = await self._settings.effective(ctx.key, ctx.server)
                return CommandResult("System prompt", settings.system_prompt)
            case SystemSet(text=text, scope=scope):
                return await self._set(ctx, SettingKey.SYSTEM_PROMPT, text, scope)
            case SystemClear(scope=scope):
                return await self._set(ctx, SettingKey.SYSTEM_PROMPT, None, scope)
            case ThinkSet(on=on, scope=scope):
                return await self._set(ctx, SettingKey.THINK, on, scope)
            case Cot():
                # A chain of thought is a reply: queued, streamed, stoppable and stored like
                # any other. Adapters hand it to Engine.handle_turn as Turn(chain=True).
                return CommandResult(
                    "Chain of thought",
                    "A chain of thought is answered as a reply in the conversation.",
                    ok=False,
                    ephemeral=True,
                )
            case SettingsShow():
                settings = await self._settings.effective(ctx.key, ctx.server)
                window = await self._window_note(settings)
                rows = [
                    SettingRow(
                        k.value,
                        _show(settings.value(k))
                        + (window if k is SettingKey.CONTEXT_LENGTH else ""),
                        settings.sources[k],
                    )
                    for k in SettingKey
                ]
                rows.append(await self._tools.settings_row(ctx))
                return SettingsView("Settings in force here", rows=rows)
            case ContextShow():
                settings = await self._settings.effective(ctx.key, ctx.server)
                source = settings.sources[SettingKey.CONTEXT_LENGTH]
                shown = f"{settings.context_length:,} tokens{await self._window_note(settings)}"
                return CommandResult("Context window", f"{shown} (set at: {source})")
            case ContextSet(tokens=tokens, scope=scope):
                return await self._set(ctx, SettingKey.CONTEXT_LENGTH, tokens, scope)
            case Stats():
                stats = await self._store.channel_stats(ctx.key.platform, ctx.key.room)
                return StatsView(f"Statistics for this {ctx.room_word}", stats=stats)
            case Reset():
                # The place's conversations: in a thread (or a reply chain) that one; in a
                # channel or room its own, its reply chains and its threads. Replies being
                # written finish in the old conversation; nothing is stopped.
                await self._store.reset_place(ctx.key)
                where = "thread" if ctx.key.thread else ctx.room_word
                also = "" if ctx.key.thread else ", its reply chains and threads included"
                return CommandResult(
                    "Conversation reset",
                    f"The bot starts afresh in this {where}{also}: the next message carries no "
                    "earlier one.",
                )
            case Stop():
                return stop_result(await self._turns.stop(ctx.key, ctx.author))
            case ToolsList() | ToolsAllow() | ToolsDeny() | ToolsCalls():
                return await self._tools.run(ctx, command)
            case Help(extra):
                lines = (*extra, *HELP_LINES)
                body = "\n".join(f"- `{usage}`: {what}" for usage, what in lines)
                return CommandResult("Commands", body, ephemeral=True)
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    async def _set(
        self,
        ctx: CommandContext,
        key: SettingKey,
        raw: Any,
        scope_kind: ScopeKind | None,
        *,
        check_model: bool = False,
    ) -> CommandResult:
        scope = target_scope(ctx.key, ctx.server, scope_kind)
        refusal = settings_refusal(ctx.author, scope.kind, key.value, _scope_word(ctx, scope.kind))
        if refusal is not None:
            # Refused before the value is checked, so that every attempt is audited, a
            # malformed one ("mode set evil") too, with what was asked for.
            current = (await self._store.get_settings(scope)).get(key.value)
            await self._refused(ctx, scope, key.value, _audited(current), _audited(raw))
            return refusal
        value = parse_value(key, raw)
        if check_model:
            self._catalogue.forget(str(value))
            await self._catalogue.info(str(value))  # ModelNotFoundError lists what is installed
        old = await self._store.set_setting(scope, key.value, value)
        await self._store.audit(
            scope,
            key.value,
            old,
            value,
            actor_id=ctx.author.id,
            actor_name=ctx.author.name,
            allowed=True,
        )
        where = _scope_word(ctx, scope.kind)
        if value is None:
            return CommandResult(
                f"`{key.value}` cleared", f"This {where} uses the inherited value."
            )
        return CommandResult(f"`{key.value}` set", f"This {where} now uses {_show(value)}.")

    async def _window_note(self, settings: EffectiveSettings) -> str:
        """Says so when the model's maximum caps ``context_length`` ("" when it does not)."""
        try:
            info = await self._catalogue.info(settings.model)
        except OllabotError:
            return ""  # the setting still stands; the cap is shown once the model answers
        window = settings.context_window(info)
        if window == settings.context_length:
            return ""
        return f" (capped at `{settings.model}`'s maximum: {window:,})"

    async def _refused(
        self, ctx: CommandContext, scope: Scope, key: str, current: Any, wanted: Any
    ) -> None:
        """Audit and log an attempt the author was not allowed to make.

        Repeats are coalesced: the same person refused the same key in the same scope is
        audited once per :data:`_REFUSAL_WINDOW` (each attempt is still logged).
        """
        logger.warning(
            "refused a non-moderator",
            extra={"actor": ctx.author.id, "key": key, "scope": str(scope)},
        )
        seen = (ctx.author.id, str(scope), key)
        if seen in self._recent_refusals:
            return
        self._recent_refusals[seen] = True
        await self._store.audit(
            scope,
            key,
            current,
            wanted,
            actor_id=ctx.author.id,
            actor_name=ctx.author.name,
            allowed=False,
        )

    async def _pull(
        self, ctx: CommandContext, name: str, hosts: tuple[str, ...] = ()
    ) -> CommandResult:
        if not may_pull(ctx.author):
            scope = target_scope(ctx.key, ctx.server, None)
            await self._refused(ctx, scope, "pull", None, _audited(name))
            return Refusal(
                "Only moderators can pull models",
                "Pulling downloads gigabytes onto the bot's machine. Nothing was pulled.",
            )
        model = self._model

        async def progress() -> AsyncIterator[PullProgress]:
            try:
                async for step in model.pull(name, hosts):
                    yield step
            except OllabotError as err:
                yield PullProgress(status=f"error: {err.user_message}")
                return
            self._catalogue.forget(name)

        return PullView(f"Pulling `{name}`", model=name, progress=progress())


_AUDIT_TEXT_CHARS = 200
_REFUSAL_WINDOW = 600.0
"""Seconds during which a repeated refusal (same person, scope and key) is not audited again."""


def _audited(raw: Any) -> Any:
    """A refused value as audited: long text is cut, so that refusals cannot bloat the log."""
    if isinstance(raw, str) and len(raw) > _AUDIT_TEXT_CHARS:
        return raw[: _AUDIT_TEXT_CHARS - 1] + "…"
    return raw


def _scope_word(ctx: CommandContext, kind: ScopeKind) -> str:
    """How the platform names a scope in a sentence ("this channel", "this chat")."""
    return ctx.room_word if kind is ScopeKind.ROOM else SCOPE_WORDS[kind]


def stop_result(report: StopReport) -> CommandResult:
    """What ``stop`` answers: how many replies it stopped, or why none."""
    if report.stopped:
        n = report.stopped
        return CommandResult(
            f"Stopped {n} repl{'y' if n == 1 else 'ies'}",
            "What was written so far is kept.",
        )
    if report.refused:
        return Refusal(
            "Not yours to stop",
            "Only the replies you asked for can be stopped here, unless you are a moderator "
            "of this place.",
        )
    return CommandResult("Nothing to stop", "No reply is being written or waiting here.")


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    return f"`{text}`" if len(text) < 80 else f"`{text[:77]}...`"


__all__ = ["CommandRunner"]
