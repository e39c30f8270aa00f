"""Where a Discord event happened and who did it, as plain values for the engine and the policy."""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.access import AccessPolicy, Person, Place
from bot.turn import Author, ScopeKind, SessionKey

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
    *,
    in_thread: bool = False,
) -> Author:
    """The engine's view of a person, with the scopes Discord says they moderate here.

    - the server: Manage Server from their roles (``Member.guild_permissions``), never from
      a channel overwrite;
    - the channel: Manage Channels in this channel (``permissions``, overwrites included);
    - the thread (``in_thread``): Manage Threads in it.

    A configured moderator role moderates every scope. ``permissions`` are theirs in the
    channel; ``None`` in a DM, where nobody moderates anything.
    """
    moderates: set[ScopeKind] = set()
    if permissions is not None and isinstance(user, discord.Member):
        by_role = policy.has_moderator_role(person_of(user))
        if by_role or user.guild_permissions.manage_guild:
            moderates.add(ScopeKind.SERVER)
        if by_role or permissions.manage_channels:
            moderates.add(ScopeKind.ROOM)
        if in_thread and (by_role or permissions.manage_threads):
            moderates.add(ScopeKind.THREAD)
    return Author(id=str(user.id), name=user.display_name, moderates=frozenset(moderates))


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
