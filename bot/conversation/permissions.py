"""Who may do what, and where: one rule for every adapter.

Adapters report what the platform says about a person for each scope of the place an event
happened in (:attr:`bot.turn.Author.moderates`, or :attr:`~bot.turn.Author.is_moderator` for
"every scope here"); this module decides what that allows. No adapter re-decides it.

- **Settings** (model, mode, system prompt, thinking, and anything else stored per scope) at a
  scope need a moderator of *that* scope: moderating a channel is not moderating its server.
  Discord: the server needs Manage Server from the member's roles (a channel overwrite does not
  count), the channel needs Manage Channels in that channel, a thread Manage Threads in it; a
  configured moderator role counts everywhere. Matrix: a room or a thread in it needs the
  configured power level in that room; a space needs it in every room of the space the bot is
  in, unless the user is a configured bot admin.
- **Pulling a model** downloads gigabytes onto the bot's machine: a moderator of the channel or
  room (or of the server) where it is asked.
- **Stopping**: a user may stop the replies they asked for, running or queued; a moderator of
  the place may stop any (see :class:`bot.conversation.stopping.ActiveTurns`).
"""

from __future__ import annotations

from bot.conversation.results import Refusal
from bot.turn import Author, ScopeKind, SessionKey

__all__ = [
    "SCOPE_WORDS",
    "may_pull",
    "may_stop",
    "moderates",
    "place_kind",
    "settings_refusal",
]

SCOPE_WORDS = {ScopeKind.SERVER: "server", ScopeKind.ROOM: "channel", ScopeKind.THREAD: "thread"}
"""How a scope is named to users (a Matrix room is a channel, a space a server)."""


def moderates(author: Author, kind: ScopeKind) -> bool:
    """Whether ``author`` moderates the scope ``kind`` of the place they acted in."""
    return author.is_moderator or kind in author.moderates


def place_kind(key: SessionKey) -> ScopeKind:
    """The scope a command issued at ``key`` acts on by default: the thread, else the room."""
    return ScopeKind.THREAD if key.thread is not None else ScopeKind.ROOM


def settings_refusal(
    author: Author, kind: ScopeKind, what: str, where: str | None = None
) -> Refusal | None:
    """Why ``author`` may not change ``what`` at scope ``kind``; ``None`` when they may.

    Args:
        author: Who asks, with the scopes the platform says they moderate.
        kind: The scope the change would apply to.
        what: The setting, for the message (``model``, ``tools``...).
        where: How the platform names the scope ("channel", "chat"); default
            :data:`SCOPE_WORDS`.
    """
    if moderates(author, kind):
        return None
    where = where or SCOPE_WORDS[kind]
    return Refusal(
        "Only moderators can change that",
        f"Changing `{what}` for this {where} needs a moderator of the {where}. "
        "Nothing was changed.",
    )


def may_pull(author: Author) -> bool:
    """Pulling a model: a moderator of the channel or room, or of the server."""
    return moderates(author, ScopeKind.ROOM) or moderates(author, ScopeKind.SERVER)


def may_stop(by: Author, asker_id: str, kind: ScopeKind) -> bool:
    """Whether ``by`` may stop a reply ``asker_id`` asked for, in a place of scope ``kind``."""
    return by.id == asker_id or moderates(by, kind)
