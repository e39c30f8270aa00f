"""What the message and command handlers share: the engine, the policy, pacers, chains."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from adapters.discord.access import AccessPolicy
from adapters.discord.chains import CHAIN_STATE_PREFIX, ReplyChains
from adapters.discord.config import DiscordConfig
from bot.conversation.engine import Engine
from bot.reply.streamer import Pacer


@dataclass
class Runtime:
    """Handlers' shared state. ``pacer_for`` gives the one pacer of a channel id."""

    engine: Engine
    config: DiscordConfig
    pacer_for: Callable[[int], Pacer]
    policy: AccessPolicy = field(init=False)
    chains: ReplyChains = field(init=False)
    token_channels: dict[str, int] = field(default_factory=dict)
    in_flight: set[asyncio.Task[object]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.policy = AccessPolicy(self.config)
        self.chains = ReplyChains(self.engine.store)
        self.engine.retention.prune_state_under(CHAIN_STATE_PREFIX)

    @contextmanager
    def replying(self) -> Iterator[None]:
        """Mark the current task as writing a reply, so that closing the bot can end it."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self.in_flight.discard(task)
