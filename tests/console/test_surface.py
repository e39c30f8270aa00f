"""The plain terminal reply surface: edits print only what is new; the footer goes to stderr."""

from __future__ import annotations

import io

from adapters.console.surface import ConsoleSurface, plain_footer
from bot.reply.surface import ReplyStatus, is_append_only
from bot.types import Outcome


async def test_edits_print_only_the_new_suffix() -> None:
    out = io.StringIO()
    surface = ConsoleSurface(out)

    message = await surface.send("Hel")
    await surface.edit(message, "Hello")
    await surface.edit(message, "Hello, world")
    surface.finish()

    assert out.getvalue() == "Hello, world\n"


async def test_the_footer_goes_to_stderr_and_stdout_keeps_only_the_text() -> None:
    out, err = io.StringIO(), io.StringIO()
    surface = ConsoleSurface(out, err)

    message = await surface.send("The answer\n")
    footer = surface.render_status(ReplyStatus(Outcome.COMPLETE, model="m", tokens_per_second=2))
    await surface.edit(message, f"The answer\n\n{footer}")
    surface.finish()

    assert out.getvalue() == "The answer\n\n"
    assert err.getvalue() == "[m · 2.0 tokens/s]\n"
    assert surface.status is not None
    assert surface.status.outcome is Outcome.COMPLETE


async def test_a_reply_with_no_text_prints_only_its_footer() -> None:
    out, err = io.StringIO(), io.StringIO()
    surface = ConsoleSurface(out, err)

    footer = surface.render_status(ReplyStatus(Outcome.ERROR, error="Ollama is down"))
    await surface.send(footer)
    surface.finish()

    assert out.getvalue() == ""
    assert err.getvalue() == "[error: Ollama is down]\n"


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
    done = ReplyStatus(Outcome.COMPLETE, model="llama3.2", tokens_per_second=12.34)
    stopped = ReplyStatus(Outcome.STOPPED, model="llama3.2")
    failed = ReplyStatus(Outcome.ERROR, error="Ollama is down")

    assert plain_footer(done) == "[llama3.2 · 12.3 tokens/s]"
    assert plain_footer(stopped) == "[llama3.2 · stopped]"
    assert plain_footer(failed) == "[error: Ollama is down]"


async def test_the_surface_is_append_only_and_its_pacer_never_waits() -> None:
    surface = ConsoleSurface(io.StringIO())

    await surface.pacer.acquire()
    surface.pacer.penalize(5.0)
    await surface.pacer.acquire()

    assert is_append_only(surface)
    assert surface.max_chars >= 100_000
