"""The ``[discord]`` table of the configuration, validated once at start-up."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


class DiscordConfig(BaseModel):
    """How the Discord adapter behaves. The token is not here: it comes from ``DISCORD_TOKEN``.

    Attributes:
        api_base_url: Discord's REST API, or a rate-limit proxy in front of it.
        gateway_url: Discord's gateway websocket, or a proxy.
        guild_ids: Sync slash commands to these guilds (instant); empty syncs them globally.
        moderator_roles: Role names or ids whose members count as moderators, besides members
            with Manage Channels or Manage Server.
        allowed_guilds / allowed_channels / allowed_roles / allowed_users: When non-empty, only
            these may use the bot. A category id covers its channels, a channel its threads.
        blocked_guilds / blocked_channels / blocked_roles / blocked_users: Never answered.
        allow_dms: Answer direct messages.
        respond_to_bots: Answer other bots' messages (never the bot's own).
        show_footer: Show model and tokens/s under finished replies.
        max_attachment_bytes: Larger attachments are left out, with a note.
        guild_ready_timeout: Seconds discord.py waits for guilds before ``on_ready``.
        edits_per_second: Sends+edits per second per channel. Discord allows about 5 per 5 s;
            spreading them evenly (with a burst of 1) keeps a streamed reply within a second
            of the model, where a burst of 5 would stall it for the rest of the window.
        edit_burst: Operations a channel may make at once before ``edits_per_second`` applies.
        first_message_borrow: Operations a reply's first message (or a queue notice) may take
            ahead of the channel's pacing: Discord's window allows about 5 per 5 s, so four
            replies starting together all show text at once; the edits after them wait.
        shard_count: Run discord.py's ``AutoShardedClient`` with this many shards in total
            (``None``: one unsharded connection). Several processes can split the shards.
        shard_ids: The shards this process runs (``None``: all of ``shard_count``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_base_url: str = DISCORD_API
    gateway_url: str = DISCORD_GATEWAY
    guild_ids: tuple[int, ...] = ()
    moderator_roles: tuple[str, ...] = ()
    allowed_guilds: frozenset[int] = frozenset()
    allowed_channels: frozenset[int] = frozenset()
    allowed_roles: frozenset[int] = frozenset()
    allowed_users: frozenset[int] = frozenset()
    blocked_guilds: frozenset[int] = frozenset()
    blocked_channels: frozenset[int] = frozenset()
    blocked_roles: frozenset[int] = frozenset()
    blocked_users: frozenset[int] = frozenset()
    allow_dms: bool = False
    respond_to_bots: bool = False
    show_footer: bool = True
    max_attachment_bytes: int = Field(default=512 * 1024, ge=0)
    guild_ready_timeout: float = Field(default=2.0, ge=0)
    edits_per_second: float = Field(default=1.0, gt=0)
    edit_burst: int = Field(default=1, ge=1)
    first_message_borrow: int = Field(default=3, ge=0, le=4)
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _shards_fit(self) -> Self:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shard_ids needs shard_count (the total number of shards)")
        if not self.shard_ids:
            raise ValueError("shard_ids must name at least one shard")
        wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if wrong:
            raise ValueError(
                f"shard_ids {wrong} are outside 0..{self.shard_count - 1} (shard_count is "
                f"{self.shard_count})"
            )
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids lists a shard twice")
        return self
