"""``/chat`` and ``/ask``: conversations started by a slash command."""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.places import chain_key, room_key
from adapters.discord.render import clip
from adapters.discord.runtime import Runtime
from adapters.discord.surface import (
    NO_MENTIONS,
    ChannelSurface,
    InteractionSurface,
    OnSent,
    translate,
)
from bot.conversation.commands import CommandContext
from bot.turn import SessionKey, Turn
from bot.validation import neutralise_bidi

Interaction = discord.Interaction[Any]

THREAD_NAME_MAX = 100


def thread_name(prompt: str) -> str:
    """A thread title from the prompt: its first line, cut at a word within Discord's 100."""
    line = " ".join(neutralise_bidi(prompt).split())
    if len(line) <= THREAD_NAME_MAX:
        return line or "Conversation"
    cut = line[: THREAD_NAME_MAX - 1].rsplit(" ", 1)[0]
    return cut + "…"


async def chat(interaction: Interaction, rt: Runtime, prompt: str, ctx: CommandContext) -> None:
    """Open a thread named after the prompt and answer inside it.

    Later messages in the thread continue the conversation without a mention (the bot owns the
    thread). Where no thread can be opened (a DM, or already inside a thread), it answers in
    place, in that conversation.
    """
    await interaction.response.defer(thinking=True)
    channel: Any = interaction.channel
    if isinstance(channel, discord.TextChannel):
        try:
            thread: Any = await channel.create_thread(
                name=thread_name(prompt),
                type=discord.ChannelType.public_thread,
                auto_archive_duration=1440,
            )
        except discord.HTTPException as err:
            reason = "it lacks the permission" if err.status == 403 else f"error {err.status}"
            await interaction.edit_original_response(
                content=f"⚠️ The bot could not open a thread here ({reason}). Try `/ask`.",
                allowed_mentions=NO_MENTIONS,
            )
            return
        await interaction.edit_original_response(
            content=f"🧵 {interaction.user.mention} started a conversation: {thread.mention}",
            allowed_mentions=NO_MENTIONS,
        )
        pacer = rt.pacer_for(thread.id)
        await pacer.acquire()
        await thread.send(
            clip(neutralise_bidi(f"**{interaction.user.display_name}** asked:\n>>> {prompt}")),
            allowed_mentions=NO_MENTIONS,
        )
        surface: ChannelSurface | InteractionSurface = ChannelSurface(
            thread, pacer, show_footer=rt.config.show_footer
        )
        key = room_key(thread)
        target = thread.id
    else:
        surface = _interaction_surface(interaction, rt, ephemeral=False)
        key = ctx.key
        target = interaction.channel_id or 0
    await _answer(interaction, rt, ctx, key, prompt, surface, target)


async def ask(
    interaction: Interaction,
    rt: Runtime,
    prompt: str,
    ctx: CommandContext,
    *,
    private: bool,
    chain: bool = False,
) -> None:
    """Answer in place; privately (ephemeral) when asked; as a chain of thought with ``chain``.

    In a channel it starts a conversation of its own, which a reply to the answer continues;
    in a thread or a DM it is part of that conversation.
    """
    await interaction.response.defer(thinking=True, ephemeral=private)
    channel_id = interaction.channel_id or 0
    own_chain = ctx.key.thread is None and interaction.guild is not None
    root = f"ask-{interaction.id}"
    key = chain_key(channel_id, root) if own_chain else ctx.key
    linked = own_chain and not private
    surface = _interaction_surface(
        interaction, rt, ephemeral=private, on_sent=rt.chains.linker(root) if linked else None
    )
    await _answer(interaction, rt, ctx, key, prompt, surface, channel_id, chain=chain)


async def _answer(
    interaction: Interaction,
    rt: Runtime,
    ctx: CommandContext,
    key: SessionKey,
    prompt: str,
    surface: ChannelSurface | InteractionSurface,
    channel_id: int,
    *,
    chain: bool = False,
) -> None:
    """Hand the prompt to the engine as a turn of ``key``, answered on ``surface``."""
    turn = Turn(
        key=key,
        author=ctx.author,
        text=prompt,
        server=ctx.server,
        event_id=str(interaction.id),
        chain=chain,
    )
    try:
        with rt.replying():
            await rt.engine.handle_turn(turn, surface, notify=_notifier(interaction))
    finally:
        rt.token_channels.pop(interaction.token, None)


def _interaction_surface(
    interaction: Interaction, rt: Runtime, *, ephemeral: bool, on_sent: OnSent | None = None
) -> InteractionSurface:
    channel_id = interaction.channel_id or 0
    rt.token_channels[interaction.token] = channel_id
    channel: Any = interaction.channel
    return InteractionSurface(
        interaction,
        rt.pacer_for(channel_id),
        fallback=channel,
        ephemeral=ephemeral,
        show_footer=rt.config.show_footer,
        on_sent=on_sent,
    )


def _notifier(interaction: Interaction) -> Any:
    async def notify(text: str) -> None:
        try:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as err:
            # Translated, so that the engine sees its own error and goes on with the reply.
            raise translate(err) from err

    return notify
