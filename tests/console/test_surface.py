"""The terminal reply surface: edits print only what is new, and nothing twice."""

from __future__ import annotations

import io

from adapters.console.surface import ConsoleSurface
from bot.reply.streamer import ReplyStatus
from bot.types import Outcome


async def test_edits_print_only_the_new_suffix() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    message = await surface.send("Hel")
    await surface.edit(message, "Hello")
    await surface.edit(message, "Hello, world")
    surface.flush_pending()

    assert out.getvalue() == "Hello, world"


async def test_a_provisional_closing_fence_is_not_printed_twice() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    message = await surface.send("```py\nx = 1\n```")
    await surface.edit(message, "```py\nx = 1\ny = 2\n```")
    await surface.edit(message, "```py\nx = 1\ny = 2\n```\ndone")
    surface.flush_pending()

    assert out.getvalue() == "```py\nx = 1\ny = 2\n```\ndone"


async def test_text_held_back_at_the_end_is_printed_when_the_reply_ends() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    message = await surface.send("code:\n```")
    assert out.getvalue() == "code:\n"
    surface.flush_pending()

    assert out.getvalue() == "code:\n```"
    assert message == "1"


async def test_text_changed_behind_the_cursor_is_reprinted_on_a_new_line() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    message = await surface.send("thinking…")
    await surface.edit(message, "The answer")

    assert out.getvalue() == "thinking…\nThe answer"


async def test_a_continuation_message_starts_on_a_new_line() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    await surface.send("first part")
    await surface.send("second part")

    assert out.getvalue() == "first part\nsecond part"


def test_footer_says_how_the_reply_ended() -> None:
    surface = ConsoleSurface(io.StringIO())

    done = ReplyStatus(Outcome.COMPLETE, model="llama3.2", tokens_per_second=12.34)
    stopped = ReplyStatus(Outcome.STOPPED, model="llama3.2")
    failed = ReplyStatus(Outcome.ERROR, error="Ollama is down")

    assert surface.render_status(done) == "[llama3.2 · 12.3 tokens/s]"
    assert surface.render_status(stopped) == "[llama3.2 · stopped]"
    assert surface.render_status(failed) == "[error: Ollama is down]"


async def test_pacer_never_waits_and_the_limit_is_large() -> None:
    surface = ConsoleSurface(io.StringIO())

    await surface.pacer.acquire()
    surface.pacer.penalize(5.0)
    await surface.pacer.acquire()

    assert surface.max_chars >= 100_000
