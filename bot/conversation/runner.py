"""Runs platform-free commands for the engine: permission checks, audit, settings, models."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bot.backend import ChatRequest
from bot.commands import (
    HELP_LINES,
    ChainView,
    Command,
    CommandContext,
    CommandResult,
    Cot,
    Help,
    ModelList,
    ModelListView,
    ModelPull,
    ModelSet,
    ModelShow,
    ModeSet,
    ModeShow,
    PullView,
    Refusal,
    Reset,
    SettingRow,
    SettingsShow,
    SettingsView,
    Stats,
    StatsView,
    Stop,
    SystemClear,
    SystemSet,
    SystemShow,
    ThinkSet,
)
from bot.errors import OllabotError
from bot.prompts import ChainOfThoughtPrompt, parse_chain
from bot.settings import SettingKey, parse_value, target_scope
from bot.store import Scope, ScopeKind
from bot.types import ChatMode, PullProgress

if TYPE_CHECKING:
    from bot.engine import Engine

logger = logging.getLogger(__name__)

_SCOPE_WORDS = {ScopeKind.SERVER: "server", ScopeKind.ROOM: "channel", ScopeKind.THREAD: "thread"}


class CommandRunner:
    """Executes :data:`bot.commands.Command` values against one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def run(self, ctx: CommandContext, command: Command) -> CommandResult:
        try:
            return await self._dispatch(ctx, command)
        except OllabotError as err:
            logger.info(
                "command failed",
                extra={"command": type(command).__name__, "detail": err.detail},
            )
            return CommandResult("Could not do that", err.user_message, ok=False, ephemeral=True)

    async def _dispatch(self, ctx: CommandContext, command: Command) -> CommandResult:
        engine = self._engine
        match command:
            case ModelShow():
                settings = await engine.settings.effective(ctx.key, ctx.server)
                source = settings.sources.get(SettingKey.MODEL, "default")
                return CommandResult("Model", f"`{settings.model}` (set at: {source})")
            case ModelList():
                settings = await engine.settings.effective(ctx.key, ctx.server)
                models = await engine.model.list_models()
                return ModelListView("Installed models", models=models, current=settings.model)
            case ModelSet(name=name, scope=scope):
                return await self._set(ctx, SettingKey.MODEL, name, scope, check_model=True)
            case ModelPull(name=name):
                return await self._pull(ctx, name)
            case ModeShow():
                settings = await engine.settings.effective(ctx.key, ctx.server)
                modes = ", ".join(m.value for m in ChatMode)
                return CommandResult("Mode", f"`{settings.mode.value}` (modes: {modes})")
            case ModeSet(mode=mode, scope=scope):
                return await self._set(ctx, SettingKey.MODE, mode, scope)
            case SystemShow():
                settings = await engine.settings.effective(ctx.key, ctx.server)
                return CommandResult("System prompt", settings.system_prompt)
            case SystemSet(text=text, scope=scope):
                return await self._set(ctx, SettingKey.SYSTEM_PROMPT, text, scope)
            case SystemClear(scope=scope):
                return await self._set(ctx, SettingKey.SYSTEM_PROMPT, None, scope)
            case ThinkSet(on=on, scope=scope):
                return await self._set(ctx, SettingKey.THINK, on, scope)
            case Cot(task=task):
                return await self._chain(ctx, task)
            case SettingsShow():
                settings = await engine.settings.effective(ctx.key, ctx.server)
                rows = [
                    SettingRow(
                        k.value, _show(settings.value(k)), settings.sources.get(k, "default")
                    )
                    for k in SettingKey
                ]
                return SettingsView("Settings in force here", rows=rows)
            case Stats():
                stats = await engine.store.channel_stats(ctx.key.platform, ctx.key.room)
                return StatsView("Statistics for this channel", stats=stats)
            case Reset():
                await engine.sessions.stop(ctx.key)
                await engine.store.reset_session(ctx.key)
                return CommandResult("Conversation reset", "The bot starts afresh here.")
            case Stop():
                stopped = await engine.sessions.stop(ctx.key)
                if stopped:
                    return CommandResult("Stopped", "The reply was stopped; its text is kept.")
                return CommandResult("Nothing to stop", "No reply is being written here.")
            case Help():
                body = "\n".join(f"- `{usage}`: {what}" for usage, what in HELP_LINES)
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
        engine = self._engine
        scope = target_scope(ctx.key, ctx.server, scope_kind)
        if not ctx.author.is_moderator:
            # Refused before the value is checked, so that every attempt is audited, a
            # malformed one ("mode set evil") too, with what was asked for.
            current = (await engine.store.get_settings(scope)).get(key.value)
            await self._refused(ctx, scope, key.value, current, _audited(raw))
            return Refusal(
                "Only moderators can change that",
                f"Changing `{key.value}` in this {_SCOPE_WORDS[scope.kind]} needs a moderator. "
                "Nothing was changed.",
            )
        value = parse_value(key, raw)
        if check_model:
            engine.forget_model(str(value))
            await engine.model_info(str(value))  # ModelNotFoundError lists what is installed
        old = await engine.store.set_setting(scope, key.value, value)
        await engine.store.audit(
            scope,
            key.value,
            old,
            value,
            actor_id=ctx.author.id,
            actor_name=ctx.author.name,
            allowed=True,
        )
        where = _SCOPE_WORDS[scope.kind]
        if value is None:
            return CommandResult(
                f"`{key.value}` cleared", f"This {where} uses the inherited value."
            )
        return CommandResult(f"`{key.value}` set", f"This {where} now uses {_show(value)}.")

    async def _refused(
        self, ctx: CommandContext, scope: Scope, key: str, current: Any, wanted: Any
    ) -> None:
        """Audit and log an attempt the author was not allowed to make."""
        await self._engine.store.audit(
            scope,
            key,
            current,
            wanted,
            actor_id=ctx.author.id,
            actor_name=ctx.author.name,
            allowed=False,
        )
        logger.warning(
            "refused a non-moderator",
            extra={"actor": ctx.author.id, "key": key, "scope": str(scope)},
        )

    async def _pull(self, ctx: CommandContext, name: str) -> CommandResult:
        if not ctx.author.is_moderator:
            scope = target_scope(ctx.key, ctx.server, None)
            await self._refused(ctx, scope, "pull", None, name)
            return Refusal(
                "Only moderators can pull models",
                "Pulling downloads gigabytes onto the bot's machine. Nothing was pulled.",
            )
        model = self._engine.model

        async def progress() -> AsyncIterator[PullProgress]:
            try:
                async for step in model.pull(name):
                    yield step
            except OllabotError as err:
                yield PullProgress(status=f"error: {err.user_message}")
                return
            self._engine.forget_model(name)

        return PullView(f"Pulling `{name}`", model=name, progress=progress())

    async def _chain(self, ctx: CommandContext, task: str) -> CommandResult:
        engine = self._engine
        settings = await engine.settings.effective(ctx.key, ctx.server)
        info = await engine.model_info(settings.model)
        prompt = ChainOfThoughtPrompt(task=task)
        request = ChatRequest(
            model=settings.model,
            messages=prompt.messages(settings.system_prompt),
            options=settings.model_config().options(settings.mode),
            format=prompt.schema(),
            think=settings.think and info.supports_thinking,
        )
        response = await engine.generator.stream(request)
        return ChainView("Chain of thought", chain=parse_chain(response.content))


_AUDIT_TEXT_CHARS = 500


def _audited(raw: Any) -> Any:
    """A refused value as audited: long text is cut, so that refusals cannot bloat the log."""
    if isinstance(raw, str) and len(raw) > _AUDIT_TEXT_CHARS:
        return raw[: _AUDIT_TEXT_CHARS - 1] + "…"
    return raw


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    return f"`{text}`" if len(text) < 80 else f"`{text[:77]}...`"


__all__ = ["CommandRunner"]
