"""Slash commands: the app_commands tree and its mapping onto the engine's commands."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from typing import Any, Literal

import discord
from discord import app_commands

from adapters.discord.places import author_of, person_of, place_of, room_key, server_of
from adapters.discord.render import clip, render_result
from adapters.discord.runtime import Runtime
from adapters.discord.surface import NO_MENTIONS
from adapters.discord.turns import ask, chat
from bot.conversation.commands import (
    Command,
    CommandContext,
    ContextSet,
    ContextShow,
    Help,
    ModelList,
    ModelPull,
    ModelSet,
    ModelShow,
    ModeSet,
    ModeShow,
    Reset,
    SettingsShow,
    Stats,
    Stop,
    SystemClear,
    SystemSet,
    SystemShow,
    ThinkSet,
    ToolsAllow,
    ToolsCalls,
    ToolsDeny,
    ToolsList,
)
from bot.conversation.results import PullView, ToolCallsView, render_progress_bar
from bot.store.port import ScopeKind
from bot.types import PullProgress

logger = logging.getLogger(__name__)

Interaction = discord.Interaction[Any]
ScopeChoice = Literal["server", "channel", "thread"]
ModeChoice = Literal["balanced", "precise", "creative", "code"]

QUICK = 2.0
"""Seconds a command may take before it is deferred (Discord wants an answer within 3)."""

# Discord's own commands, listed first by /help: elsewhere every message already is a turn.
HELP_LINES = (
    ("ask <prompt>", "answer once, here"),
    ("chat <prompt>", "start a conversation in a new thread"),
)

_SCOPES: dict[str, ScopeKind] = {
    "server": ScopeKind.SERVER,
    "channel": ScopeKind.ROOM,
    "thread": ScopeKind.THREAD,
}


def _scope(choice: str | None) -> ScopeKind | None:
    return _SCOPES[choice] if choice else None


def describe(error: BaseException) -> str:
    """One line about an unexpected failure, fit for a chat user."""
    if isinstance(error, discord.Forbidden):
        return "the bot lacks a Discord permission here."
    if isinstance(error, discord.HTTPException):
        return f"Discord refused the request ({error.status})."
    return "an internal error; it has been logged."


def command_hash(tree: app_commands.CommandTree[Any], guild_ids: tuple[int, ...]) -> str:
    """A digest of the command definitions and where they go; a change means a re-sync."""
    payload = [cmd.to_dict(tree) for cmd in tree.get_commands()]
    blob = json.dumps({"commands": payload, "guilds": list(guild_ids)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class Commands:
    """Builds the slash commands onto ``tree`` and runs them through the engine."""

    def __init__(self, tree: app_commands.CommandTree[Any], runtime: Runtime) -> None:
        self._tree = tree
        self._rt = runtime
        self._build()

    # --- shared plumbing ----------------------------------------------------------------------

    async def refusal(self, interaction: Interaction) -> str | None:
        """Why the user may not use the bot here (answered ephemerally), or ``None``."""
        place = place_of(interaction.channel, interaction.guild)
        return self._rt.policy.refusal(place, person_of(interaction.user))

    def context(self, interaction: Interaction) -> CommandContext:
        channel = interaction.channel
        assert channel is not None
        permissions = interaction.permissions if interaction.guild else None
        return CommandContext(
            key=room_key(channel),
            server=server_of(interaction.guild),
            author=author_of(
                interaction.user,
                self._rt.policy,
                permissions,
                in_thread=isinstance(channel, discord.Thread),
            ),
        )

    async def run(self, interaction: Interaction, command: Command) -> None:
        """Execute ``command`` and show its result: at once when quick, else after deferring."""
        reason = await self.refusal(interaction)
        if reason is not None:
            await interaction.response.send_message(
                reason, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
            return
        ctx = self.context(interaction)
        task = asyncio.ensure_future(self._rt.engine.execute(ctx, command))
        done, _ = await asyncio.wait({task}, timeout=QUICK)
        view = task.result() if done else None
        if isinstance(view, ToolCallsView) and view.calls:
            await self._send_calls(interaction, view)
            return
        if done:
            result = task.result()
            await interaction.response.send_message(
                render_result(result), ephemeral=result.ephemeral, allowed_mentions=NO_MENTIONS
            )
        else:
            await interaction.response.defer(thinking=True)
            result = await task
            if result.ephemeral:
                await interaction.delete_original_response()
                await interaction.followup.send(
                    render_result(result), ephemeral=True, allowed_mentions=NO_MENTIONS
                )
            else:
                await interaction.edit_original_response(
                    content=render_result(result), allowed_mentions=NO_MENTIONS
                )
        if isinstance(result, PullView) and result.progress is not None:
            await self._show_pull(interaction, result)

    async def _send_calls(self, interaction: Interaction, view: ToolCallsView) -> None:
        """Tool calls and results: untrusted and long, so an attached file, only to the asker."""
        data = io.BytesIO(view.as_text().encode("utf-8"))
        await interaction.response.send_message(
            f"**{view.title}** (attached)",
            file=discord.File(data, filename="tool-calls.txt"),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def _show_pull(self, interaction: Interaction, view: PullView) -> None:
        """Edit the response into a live progress bar; only the newest progress is shown."""
        assert view.progress is not None
        pacer = self._rt.pacer_for(interaction.channel_id or 0)
        latest: list[PullProgress] = []
        changed = asyncio.Event()
        finished = False

        async def follow() -> None:
            nonlocal finished
            assert view.progress is not None
            try:
                async for progress in view.progress:
                    latest[:] = [progress]
                    changed.set()
            finally:
                finished = True
                changed.set()

        follower = asyncio.ensure_future(follow())
        shown = ""
        try:
            while True:
                await changed.wait()
                changed.clear()
                done = finished
                if latest:
                    text = clip(f"**Pulling `{view.model}`**\n{render_progress_bar(latest[0])}")
                    if text != shown:
                        await pacer.acquire()
                        await interaction.edit_original_response(
                            content=text, allowed_mentions=NO_MENTIONS
                        )
                        shown = text
                if done:
                    break
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _on_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A command failed unexpectedly: log it and still tell the user, privately."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        logger.error(
            "slash command failed",
            exc_info=cause,
            extra={"platform": "discord", "command": getattr(interaction.command, "name", None)},
        )
        text = f"⚠️ That did not work: {describe(cause)}"
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException:
            logger.warning("could not report a command failure", exc_info=True)

    async def _model_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = await self._rt.engine.model_names()
        wanted = current.lower()
        return [app_commands.Choice(name=n, value=n) for n in names if wanted in n.lower()][:25]

    async def _tool_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        wanted = current.lower()
        names = [n for n in self._rt.engine.tool_names() if wanted in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names][:25]

    # --- the tree -----------------------------------------------------------------------------

    def _build(self) -> None:
        tree, rt = self._tree, self._rt
        run = self.run
        tree.error(self._on_error)

        @tree.command(name="chat", description="Start a conversation in a new thread")
        @app_commands.describe(prompt="What to ask")
        async def chat_cmd(interaction: Interaction, prompt: str) -> None:
            reason = await self.refusal(interaction)
            if reason is not None:
                await interaction.response.send_message(reason, ephemeral=True)
                return
            await chat(interaction, rt, prompt, self.context(interaction))

        @tree.command(name="ask", description="Ask once and get the answer here")
        @app_commands.describe(prompt="What to ask", private="Only you see the answer")
        async def ask_cmd(interaction: Interaction, prompt: str, private: bool = False) -> None:
            reason = await self.refusal(interaction)
            if reason is not None:
                await interaction.response.send_message(reason, ephemeral=True)
                return
            await ask(interaction, rt, prompt, self.context(interaction), private=private)

        model = app_commands.Group(name="model", description="Which model answers here")

        @model.command(name="show", description="The model answering here")
        async def model_show(interaction: Interaction) -> None:
            await run(interaction, ModelShow())

        @model.command(name="set", description="Choose the model (moderators)")
        @app_commands.describe(name="An installed model", scope="Where it applies")
        async def model_set(
            interaction: Interaction, name: str, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, ModelSet(name, _scope(scope)))

        @model.command(name="list", description="Installed models")
        async def model_list(interaction: Interaction) -> None:
            await run(interaction, ModelList())

        @model.command(name="pull", description="Download a model into Ollama (moderators)")
        @app_commands.describe(
            name="Model name, e.g. llama3.2",
            hosts="Ollama hosts to pull to, separated by spaces (default: all)",
        )
        async def model_pull(interaction: Interaction, name: str, hosts: str = "") -> None:
            await run(interaction, ModelPull(name, tuple(hosts.split())))

        model_set.autocomplete("name")(self._model_names)
        model_pull.autocomplete("name")(self._model_names)
        tree.add_command(model)

        mode = app_commands.Group(name="mode", description="Answer style")

        @mode.command(name="show", description="The answer style here")
        async def mode_show(interaction: Interaction) -> None:
            await run(interaction, ModeShow())

        @mode.command(name="set", description="Choose the answer style (moderators)")
        async def mode_set(
            interaction: Interaction, mode: ModeChoice, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, ModeSet(mode, _scope(scope)))

        tree.add_command(mode)

        system = app_commands.Group(name="system", description="The system prompt")

        @system.command(name="show", description="The system prompt here")
        async def system_show(interaction: Interaction) -> None:
            await run(interaction, SystemShow())

        @system.command(name="set", description="Set the system prompt (moderators)")
        async def system_set(
            interaction: Interaction, text: str, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, SystemSet(text, _scope(scope)))

        @system.command(name="clear", description="Back to the default prompt (moderators)")
        async def system_clear(interaction: Interaction, scope: ScopeChoice | None = None) -> None:
            await run(interaction, SystemClear(_scope(scope)))

        tree.add_command(system)

        context = app_commands.Group(name="context", description="The model's context window")

        @context.command(name="show", description="The context window here, in tokens")
        async def context_show(interaction: Interaction) -> None:
            await run(interaction, ContextShow())

        @context.command(name="set", description="Set the context window (moderators)")
        @app_commands.describe(tokens="Tokens, e.g. 8192", scope="Where it applies")
        async def context_set(
            interaction: Interaction,
            tokens: app_commands.Range[int, 512, 1_048_576],
            scope: ScopeChoice | None = None,
        ) -> None:
            await run(interaction, ContextSet(tokens, _scope(scope)))

        @context.command(name="clear", description="Back to the inherited window (moderators)")
        async def context_clear(interaction: Interaction, scope: ScopeChoice | None = None) -> None:
            await run(interaction, ContextSet(None, _scope(scope)))

        tree.add_command(context)

        tools = app_commands.Group(name="tools", description="The tools the model may use here")

        @tools.command(name="list", description="The tools here, allowed or not")
        async def tools_list(interaction: Interaction) -> None:
            await run(interaction, ToolsList())

        @tools.command(name="calls", description="The last reply's tool calls, as a file")
        async def tools_calls(interaction: Interaction) -> None:
            await run(interaction, ToolsCalls())

        @tools.command(name="allow", description="Let the model use a tool here (moderators)")
        @app_commands.describe(tool="server.tool, or server.* for all", scope="Where it applies")
        async def tools_allow(
            interaction: Interaction, tool: str, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, ToolsAllow(tool, _scope(scope)))

        @tools.command(name="deny", description="Take a tool away here (moderators)")
        @app_commands.describe(tool="server.tool, or server.* for all", scope="Where it applies")
        async def tools_deny(
            interaction: Interaction, tool: str, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, ToolsDeny(tool, _scope(scope)))

        tools_allow.autocomplete("tool")(self._tool_names)
        tools_deny.autocomplete("tool")(self._tool_names)
        tree.add_command(tools)

        @tree.command(name="think", description="Let thinking models think first (moderators)")
        async def think_cmd(
            interaction: Interaction, on: bool, scope: ScopeChoice | None = None
        ) -> None:
            await run(interaction, ThinkSet(on, _scope(scope)))

        @tree.command(name="cot", description="Reasoning steps, then the solution")
        async def cot_cmd(interaction: Interaction, task: str) -> None:
            # A reply like /ask: queued, rate-limited, streamed, stoppable with /stop, stored.
            reason = await self.refusal(interaction)
            if reason is not None:
                await interaction.response.send_message(reason, ephemeral=True)
                return
            ctx = self.context(interaction)
            await ask(interaction, rt, task, ctx, private=False, chain=True)

        @tree.command(name="settings", description="Every setting in force here")
        async def settings_cmd(interaction: Interaction) -> None:
            await run(interaction, SettingsShow())

        @tree.command(name="reset", description="Forget this conversation")
        async def reset_cmd(interaction: Interaction) -> None:
            await run(interaction, Reset())

        @tree.command(name="stop", description="Stop the reply being written")
        async def stop_cmd(interaction: Interaction) -> None:
            await run(interaction, Stop())

        @tree.command(name="stats", description="Messages, tokens and speed here")
        async def stats_cmd(interaction: Interaction) -> None:
            await run(interaction, Stats())

        @tree.command(name="help", description="What the bot can do")
        async def help_cmd(interaction: Interaction) -> None:
            await run(interaction, Help(HELP_LINES))
