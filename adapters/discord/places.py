"""Where a Discord event happened and who did it, as plain values for the engine and the policy."""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.access import AccessPolicy, Person, Place
from bot.turn import Author, SessionKey

PLATFORM = "discord"


def place_of(channel: Any, guild: discord.Guild | None) -> Place:
    """The channel, its parent and its category, innermost first."""
    ids: list[int] = []
    if channel is not None:
        ids.append(channel.id)
        if isinstance(channel, discord.Thread):
            ids.append(channel.parent_id)
            parent = channel.parent
            category_id = getattr(parent, "category_id", None)
            if category_id:
                ids.append(category_id)
        elif getattr(channel, "category_id", None):
            ids.append(channel.category_id)
    return Place(guild.id if guild else None, tuple(ids))


def person_of(user: discord.User | discord.Member) -> Person:
    roles = getattr(user, "roles", [])
    return Person(
        user_id=user.id,
        role_ids=frozenset(r.id for r in roles),
        role_names=frozenset(r.name for r in roles),
        is_bot=user.bot,
    )


def author_of(
    user: discord.User | discord.Member,
    policy: AccessPolicy,
    permissions: discord.Permissions | None,
) -> Author:
    """The engine's view of a person; ``permissions`` are theirs in the channel (``None``: DM)."""
    moderator = permissions is not None and policy.is_moderator(
        person_of(user),
        manage_channels=permissions.manage_channels,
        manage_guild=permissions.manage_guild,
    )
    return Author(id=str(user.id), name=user.display_name, is_moderator=moderator)


def room_key(channel: Any) -> SessionKey:
    """The key commands use: the channel, or a thread within its parent, or a DM."""
    if isinstance(channel, discord.Thread):
        return SessionKey(PLATFORM, str(channel.parent_id), str(channel.id))
    return SessionKey(PLATFORM, str(channel.id))


def chain_key(channel_id: int, root: str) -> SessionKey:
    """The key of a reply chain in a channel, named after the chain's first message."""
    return SessionKey(PLATFORM, str(channel_id), root)


def server_of(guild: discord.Guild | None) -> str | None:
    return str(guild.id) if guild else None
