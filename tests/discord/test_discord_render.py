"""Footers and thread names."""

from __future__ import annotations

from adapters.discord.render import render_footer
from adapters.discord.turns import thread_name
from bot.reply.streamer import ReplyStatus
from bot.types import Outcome


def test_footer_shows_model_and_speed_only_when_configured() -> None:
    status = ReplyStatus(Outcome.COMPLETE, model="llama3.2", tokens_per_second=41.25)
    assert render_footer(status, show_details=True) == "-# llama3.2 · 41.2 tokens/s"
    assert render_footer(status, show_details=False) == ""


def test_footer_always_says_why_a_reply_ended_early() -> None:
    stopped = ReplyStatus(Outcome.STOPPED, model="m")
    assert "stopped" in render_footer(stopped, show_details=False)
    error = ReplyStatus(Outcome.ERROR, error="Cannot reach Ollama")
    assert render_footer(error, show_details=True) == "⚠️ error: Cannot reach Ollama"
    cut = ReplyStatus(Outcome.INTERRUPTED, model="m", error="connection lost")
    assert render_footer(cut, show_details=True) == "⚠️ interrupted: connection lost"


def test_thread_name_is_the_prompt_cut_at_a_word() -> None:
    assert thread_name("What is  a\nmonad?") == "What is a monad?"
    long = "word " * 40
    name = thread_name(long)
    assert len(name) <= 100
    assert name.endswith("word…")
