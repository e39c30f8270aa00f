"""An append-only surface (a terminal) is given text that only grows: no provisional fences.

Chat platforms render each message on its own, so while a code block is open the streamer
closes it provisionally in the message being written. A terminal prints what is new and cannot
take a line back: a closing fence there, gone with the next word, used to leave blank lines
after every word inside a code block.
"""

from __future__ import annotations

import re

from bot.reply.streamer import ReplyStatus, ReplyStreamer
from bot.reply.surface import is_append_only
from bot.types import Outcome, StreamChunk
from tests.fakes.fake_surface import FakeSurface, GatePacer, default_footer

ANSWER = "Here:\n\n```python\ndef cook(pots):\n    for pot in pots:\n        stir(pot)\n```\nDone."
DONE = ReplyStatus(Outcome.COMPLETE, model="llama3.2", tokens_per_second=42.0)


class AppendOnlySurface(FakeSurface):
    """A recording surface that declares itself append-only, as the terminal's do."""

    append_only = True


def _words(text: str) -> list[str]:
    words = re.findall(r"\s*\S+\s*", text)
    assert "".join(words) == text
    return words


async def _stream_word_by_word(surface: FakeSurface, pacer: GatePacer) -> None:
    streamer = ReplyStreamer(surface, typing_interval=0)
    await streamer.start()
    for word in _words(ANSWER):
        streamer.push(StreamChunk(content=word))
        pacer.grant()  # one edit per word: every intermediate state is shown
        await surface.wait_calls(len(surface.calls) + 1)
    pacer.open()
    await streamer.finish(DONE)


async def test_each_text_an_append_only_surface_gets_begins_with_the_one_before() -> None:
    pacer = GatePacer()
    surface = AppendOnlySurface(10_000, pacer=pacer)

    await _stream_word_by_word(surface, pacer)

    texts = [call.text for call in surface.calls]
    live, final = texts[:-1], texts[-1]
    assert len(live) == len(_words(ANSWER))
    for before, after in zip(live, live[1:], strict=False):
        assert after.startswith(before)
    assert all(ANSWER.startswith(text) for text in live)  # no fence the model did not write
    assert final == f"{ANSWER}\n{default_footer(DONE)}"
    assert is_append_only(surface)


async def test_a_platform_surface_still_sees_the_open_code_block_closed() -> None:
    pacer = GatePacer()
    surface = FakeSurface(10_000, pacer=pacer)

    await _stream_word_by_word(surface, pacer)

    inside = next(call.text for call in surface.calls if "def cook" in call.text)
    assert inside.endswith("\n```")  # closed for the platform to render
    assert not is_append_only(surface)
