"""The Discord adapter: slash commands, threads as conversations, replies edited in place.

This package is the only one that imports :mod:`discord`.
"""

from adapters.discord.client import DiscordBot, run_discord, running_bot
from adapters.discord.config import DiscordConfig

__all__ = ["DiscordBot", "DiscordConfig", "run_discord", "running_bot"]
