"""Fixtures for the reliability suite (faults, hostile input, load).

Several parts of the suite share this file: add fixtures, do not change the ones here.
"""

from __future__ import annotations

from tests.discord.conftest import bot, bot_config, engine, fake_discord, make_engine, world
from tests.matrix.conftest import human, new_human, start_bot, synapse

# Re-exported so that pytest finds the Discord and Matrix fixtures in this directory too.
# (The Matrix ``synapse`` fixture is session-scoped: this directory gets its own Synapse.)
__all__ = [
    "bot",
    "bot_config",
    "engine",
    "fake_discord",
    "human",
    "make_engine",
    "new_human",
    "start_bot",
    "synapse",
    "world",
]
