"""Who may use the bot where, and who counts as a moderator. Pure decisions on plain ids."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from adapters.discord.config import DiscordConfig


@dataclass(frozen=True, slots=True)
class Place:
    """Where a message or command happened.

    Attributes:
        guild_id: ``None`` in DMs.
        channel_ids: The channel and what contains it: a thread, its parent channel, the
            category of that channel (whichever exist), innermost first.
    """

    guild_id: int | None
    channel_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Person:
    """Who acted: their id, role ids and names, and whether they are a bot."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    role_names: frozenset[str] = frozenset()
    is_bot: bool = False


class AccessPolicy:
    """Applies the allow and block lists of :class:`DiscordConfig`."""

    def __init__(self, config: DiscordConfig) -> None:
        self._c = config

    def refusal(self, place: Place, person: Person) -> str | None:
        """Why ``person`` may not use the bot at ``place``; ``None`` when they may."""
        c = self._c
        if person.is_bot and not c.respond_to_bots:
            return "The bot does not answer bots here."
        if person.user_id in c.blocked_users:
            return "You are blocked from using the bot."
        if c.allowed_users and person.user_id not in c.allowed_users:
            return "You are not on the list of people who may use the bot."
        if place.guild_id is None:
            return None if c.allow_dms else "The bot does not answer direct messages."
        if place.guild_id in c.blocked_guilds:
            return "The bot is disabled in this server."
        if c.allowed_guilds and place.guild_id not in c.allowed_guilds:
            return "The bot is not enabled in this server."
        if _meets(place.channel_ids, c.blocked_channels):
            return "The bot is disabled in this channel."
        if c.allowed_channels and not _meets(place.channel_ids, c.allowed_channels):
            return "The bot is not enabled in this channel."
        if _meets(person.role_ids, c.blocked_roles):
            return "One of your roles is blocked from using the bot."
        if c.allowed_roles and not _meets(person.role_ids, c.allowed_roles):
            return "None of your roles may use the bot."
        return None

    def has_moderator_role(self, person: Person) -> bool:
        """Whether one of the person's roles is a configured moderator role (name or id)."""
        wanted = set(self._c.moderator_roles)
        return bool(wanted & person.role_names) or bool(wanted & {str(r) for r in person.role_ids})


def _meets(ids: Iterable[int], listed: Collection[int]) -> bool:
    return any(i in listed for i in ids)
