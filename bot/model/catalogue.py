"""What the model server says about its models, cached: the one place model metadata is read.

The engine and the command runner both ask it (the runner to check a ``model set`` name and to
forget a pulled model), so neither needs the other.
"""

from __future__ import annotations

import time

from bot.errors import ModelNotFoundError, OllabotError
from bot.model.port import ChatModel
from bot.types import ModelInfo

MODEL_INFO_TTL = 300.0
"""Seconds a model's metadata is trusted before it is asked for again."""


class ModelCatalogue:
    """Model metadata from a :class:`ChatModel`, cached for :data:`MODEL_INFO_TTL` seconds.

    Args:
        model: The chat model backend whose ``show`` and ``list_models`` are asked.
        ttl: How long an answer is kept.
    """

    def __init__(self, model: ChatModel, *, ttl: float = MODEL_INFO_TTL) -> None:
        self._model = model
        self._ttl = ttl
        self._info: dict[str, tuple[float, ModelInfo]] = {}

    async def info(self, name: str) -> ModelInfo:
        """What the server says about ``name`` (cached).

        Raises:
            ModelNotFoundError: listing the installed models.
            OllamaUnavailableError: when the server cannot be reached.
        """
        now = time.monotonic()
        cached = self._info.get(name)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        try:
            info = await self._model.show(name)
        except ModelNotFoundError:
            self._info.pop(name, None)
            raise
        self._info[name] = (now, info)
        return info

    def forget(self, name: str) -> None:
        """Drop what is known about ``name`` (it was pulled, or named again by a moderator)."""
        self._info.pop(name, None)

    async def names(self) -> list[str]:
        """Installed model names, for autocompletion; empty when the server is down."""
        try:
            return [m.name for m in await self._model.list_models()]
        except OllabotError:
            return []
