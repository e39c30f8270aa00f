"""Per-place settings and their cascade: configured defaults, then server, room, thread.

Moderators set values at a scope; the effective value for a conversation is the narrowest one
that is set. Values are validated here, so a bad value is refused before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from bot.config import DefaultsConfig
from bot.conversation.history import context_window
from bot.errors import InputRejected
from bot.store.port import Scope, ScopeKind, Store
from bot.turn import SessionKey
from bot.types import (
    DEFAULT_CONTEXT_LENGTH,
    MIN_CONTEXT_LENGTH,
    ChatMode,
    ModelConfig,
    ModelInfo,
)


class SettingKey(StrEnum):
    """The settings a moderator can change."""

    MODEL = "model"
    MODE = "mode"
    SYSTEM_PROMPT = "system_prompt"
    TEMPERATURE = "temperature"
    TOP_P = "top_p"
    SEED = "seed"
    NUM_PREDICT = "num_predict"
    CONTEXT_LENGTH = "context_length"
    THINK = "think"
    SHOW_THINKING = "show_thinking"


MAX_SYSTEM_PROMPT_CHARS = 4000


def _model_name(value: Any) -> str:
    name = str(value).strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise InputRejected("A model name is one word, like `llama3.2` or `qwen3:8b`.")
    return name


def _mode(value: Any) -> str:
    try:
        return ChatMode(str(value).strip().lower()).value
    except ValueError:
        names = ", ".join(m.value for m in ChatMode)
        raise InputRejected(f"Unknown mode '{value}'. Modes: {names}.") from None


def _system_prompt(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise InputRejected("The system prompt must not be empty (use `system clear` instead).")
    if len(text) > MAX_SYSTEM_PROMPT_CHARS:
        raise InputRejected(
            f"The system prompt is {len(text):,} characters; "
            f"the limit is {MAX_SYSTEM_PROMPT_CHARS:,}."
        )
    return text


def _bounded_float(name: str, low: float, high: float, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputRejected(f"{name} must be a number from {low:g} to {high:g}.") from None
    if not low <= number <= high:
        raise InputRejected(f"{name} must be a number from {low:g} to {high:g}.")
    return number


def _int(name: str, low: int, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputRejected(f"{name} must be a whole number.") from None
    if number < low:
        raise InputRejected(f"{name} must be at least {low}.")
    return number


MAX_CONTEXT_LENGTH = 1 << 20


def _context_length(value: Any) -> int:
    words = (
        f"context_length is a number of tokens from {MIN_CONTEXT_LENGTH:,} "
        f"to {MAX_CONTEXT_LENGTH:,}"
    )
    try:
        number = int(str(value).strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise InputRejected(f"{words}, like `8192`.") from None
    if not MIN_CONTEXT_LENGTH <= number <= MAX_CONTEXT_LENGTH:
        raise InputRejected(f"{words}.")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"on", "true", "yes", "1"}:
        return True
    if text in {"off", "false", "no", "0"}:
        return False
    raise InputRejected("Say `on` or `off`.")


PARSERS: dict[SettingKey, Callable[[Any], Any]] = {
    SettingKey.MODEL: _model_name,
    SettingKey.MODE: _mode,
    SettingKey.SYSTEM_PROMPT: _system_prompt,
    # Partials, not closures: the checks run (and can be tested) at parse time.
    SettingKey.TEMPERATURE: partial(_bounded_float, "temperature", 0.0, 2.0),
    SettingKey.TOP_P: partial(_bounded_float, "top_p", 0.01, 1.0),
    SettingKey.SEED: partial(_int, "seed", 0),
    SettingKey.NUM_PREDICT: partial(_int, "num_predict", 1),
    SettingKey.CONTEXT_LENGTH: _context_length,
    SettingKey.THINK: _bool,
    SettingKey.SHOW_THINKING: _bool,
}


def parse_value(key: SettingKey, value: Any) -> Any:
    """Validate and normalise a value for ``key``; ``None`` means "clear"."""
    return None if value is None else PARSERS[key](value)


@dataclass(frozen=True, slots=True)
class EffectiveSettings:
    """The settings in force for one conversation, and where each value comes from."""

    model: str
    mode: ChatMode
    system_prompt: str
    temperature: float | None
    top_p: float | None
    seed: int | None
    num_predict: int | None
    think: bool
    show_thinking: bool
    context_length: int = DEFAULT_CONTEXT_LENGTH
    sources: Mapping[SettingKey, str] = field(default_factory=dict)

    def context_window(self, info: ModelInfo) -> int:
        """The ``num_ctx`` for ``info``'s model: ``context_length``, capped at its maximum."""
        return context_window(info.context_length, self.context_length)

    def request_options(self, info: ModelInfo) -> dict[str, Any]:
        """The Ollama ``options`` of every request made here to ``info``'s model.

        ``num_ctx`` is always set (see :func:`bot.conversation.history.context_window`), so
        Ollama never falls back to its own default window, and is the same from one request
        to the next, so Ollama does not reload the model.
        """
        return self.model_config(self.context_window(info)).options(self.mode)

    def model_config(self, context_length: int | None = None) -> ModelConfig:
        return ModelConfig(
            name=self.model,
            context_length=context_length,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            num_predict=self.num_predict,
            think=self.think,
        )

    def value(self, key: SettingKey) -> Any:
        value = getattr(self, key.value)
        return value.value if isinstance(value, ChatMode) else value


def scopes_for(key: SessionKey, server: str | None) -> list[Scope]:
    """The scopes of a conversation, widest first."""
    scopes: list[Scope] = []
    if server:
        scopes.append(Scope(key.platform, ScopeKind.SERVER, server))
    scopes.append(Scope(key.platform, ScopeKind.ROOM, key.room))
    if key.thread:
        scopes.append(Scope(key.platform, ScopeKind.THREAD, f"{key.room}/{key.thread}"))
    return scopes


def target_scope(key: SessionKey, server: str | None, kind: ScopeKind | None) -> Scope:
    """Where a settings command applies: the named kind, else the thread or the room."""
    if kind is None:
        kind = ScopeKind.THREAD if key.thread else ScopeKind.ROOM
    for scope in scopes_for(key, server):
        if scope.kind is kind:
            return scope
    where = {ScopeKind.SERVER: "a server", ScopeKind.THREAD: "a thread"}.get(kind, "a room")
    raise InputRejected(f"This conversation is not in {where}.")


class SettingsResolver:
    """Computes effective settings from the configured defaults and the stored scopes."""

    def __init__(self, store: Store, defaults: DefaultsConfig) -> None:
        self._store = store
        self._defaults = defaults

    async def effective(self, key: SessionKey, server: str | None) -> EffectiveSettings:
        values: dict[SettingKey, Any] = {
            SettingKey.MODEL: self._defaults.model,
            SettingKey.MODE: self._defaults.mode.value,
            SettingKey.SYSTEM_PROMPT: self._defaults.system_prompt,
            SettingKey.TEMPERATURE: self._defaults.temperature,
            SettingKey.TOP_P: self._defaults.top_p,
            SettingKey.SEED: self._defaults.seed,
            SettingKey.NUM_PREDICT: self._defaults.num_predict,
            SettingKey.CONTEXT_LENGTH: self._defaults.context_length,
            SettingKey.THINK: self._defaults.think,
            SettingKey.SHOW_THINKING: self._defaults.show_thinking,
        }
        sources = dict.fromkeys(values, "default")
        for scope in scopes_for(key, server):
            stored = await self._store.get_settings(scope)
            for name, value in stored.items():
                try:
                    setting = SettingKey(name)
                except ValueError:
                    continue  # a key from a newer version: ignore rather than fail a chat
                if value is not None:
                    values[setting] = value
                    sources[setting] = scope.kind.value
        return EffectiveSettings(
            model=values[SettingKey.MODEL],
            mode=ChatMode(values[SettingKey.MODE]),
            system_prompt=values[SettingKey.SYSTEM_PROMPT],
            temperature=values[SettingKey.TEMPERATURE],
            top_p=values[SettingKey.TOP_P],
            seed=values[SettingKey.SEED],
            num_predict=values[SettingKey.NUM_PREDICT],
            context_length=int(values[SettingKey.CONTEXT_LENGTH]),
            think=bool(values[SettingKey.THINK]),
            show_thinking=bool(values[SettingKey.SHOW_THINKING]),
            sources=sources,
        )
