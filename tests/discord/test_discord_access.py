"""Allow/block lists and moderator rules, decided on plain ids."""

from __future__ import annotations

from adapters.discord.access import AccessPolicy, Person, Place
from adapters.discord.config import DiscordConfig

GUILD = 1
CATEGORY = 10
CHANNEL = 11
THREAD = 12
ALICE = Person(user_id=100, role_ids=frozenset({7}), role_names=frozenset({"Helpers"}))


def policy(**kwargs: object) -> AccessPolicy:
    return AccessPolicy(DiscordConfig.model_validate(kwargs))


def in_thread() -> Place:
    return Place(GUILD, (THREAD, CHANNEL, CATEGORY))


def test_everyone_allowed_by_default_except_bots_and_dms() -> None:
    p = policy()
    assert p.refusal(in_thread(), ALICE) is None
    assert p.refusal(in_thread(), Person(user_id=5, is_bot=True)) is not None
    assert p.refusal(Place(None, (99,)), ALICE) is not None


def test_dms_and_bots_when_configured() -> None:
    p = policy(allow_dms=True, respond_to_bots=True)
    assert p.refusal(Place(None, (99,)), ALICE) is None
    assert p.refusal(in_thread(), Person(user_id=5, is_bot=True)) is None


def test_allowed_category_covers_its_channels_and_their_threads() -> None:
    p = policy(allowed_channels=[CATEGORY])
    assert p.refusal(in_thread(), ALICE) is None
    assert p.refusal(Place(GUILD, (CHANNEL, CATEGORY)), ALICE) is None
    assert p.refusal(Place(GUILD, (55,)), ALICE) == "The bot is not enabled in this channel."


def test_blocked_parent_channel_blocks_its_threads() -> None:
    p = policy(blocked_channels=[CHANNEL])
    assert p.refusal(in_thread(), ALICE) == "The bot is disabled in this channel."


def test_user_role_and_guild_lists() -> None:
    assert policy(blocked_users=[100]).refusal(in_thread(), ALICE) is not None
    assert policy(allowed_users=[101]).refusal(in_thread(), ALICE) is not None
    assert policy(blocked_roles=[7]).refusal(in_thread(), ALICE) is not None
    assert policy(allowed_roles=[8]).refusal(in_thread(), ALICE) is not None
    assert policy(allowed_roles=[7]).refusal(in_thread(), ALICE) is None
    assert policy(blocked_guilds=[GUILD]).refusal(in_thread(), ALICE) is not None
    assert policy(allowed_guilds=[2]).refusal(in_thread(), ALICE) is not None


def test_a_configured_moderator_role_is_matched_by_name_or_id() -> None:
    assert policy(moderator_roles=["Helpers"]).has_moderator_role(ALICE)
    assert policy(moderator_roles=["7"]).has_moderator_role(ALICE)
    assert not policy().has_moderator_role(ALICE)
    assert not policy(moderator_roles=["Mods"]).has_moderator_role(ALICE)
