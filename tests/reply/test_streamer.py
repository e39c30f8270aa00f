"""ReplyStreamer: what the user sees while a reply streams, and at its end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import ModelNotFoundError, OllabotError, OllamaError
from bot.reply.splitting import fence_state, split_reply, unsplit
from bot.reply.streamer import (
    PLACEHOLDER,
    THINKING_MARK,
    Operation,
    ReplyStatus,
    ReplyStreamer,
    StreamedReply,
)
from bot.types import Outcome, StreamChunk
from tests.fakes.fake_surface import FakeSurface, GatePacer, NoopSurface, default_footer
from tests.reply.test_splitting import texts

DONE = ReplyStatus(Outcome.COMPLETE, model="llama3.2", tokens_per_second=42.0)


def answer(text: str) -> StreamChunk:
    return StreamChunk(content=text)


def footer_of(status: ReplyStatus = DONE) -> str:
    return default_footer(status)


def reassembled(surface: FakeSurface, reply: StreamedReply) -> str:
    """The answer as read back from the messages: each message is a part plus, last, the footer."""
    assert len(surface.texts) == len(reply.parts)
    for index, (shown, part) in enumerate(zip(surface.texts, reply.parts, strict=True)):
        expected = part.text if part.body.strip() else ""
        if index == len(reply.parts) - 1 and reply.status is not None:
            footer = surface.render_status(reply.status)
            expected = f"{expected}\n{footer}" if expected.strip() else footer
        assert shown == (expected or PLACEHOLDER)
    return unsplit(reply.parts)


# --- first text, coalescing, stale edits ---------------------------------------------------------


async def test_first_text_is_visible_after_the_first_chunk() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface)
    await streamer.start()
    await asyncio.sleep(0)
    assert surface.typing_count == 1  # the typing indicator runs until there is text
    streamer.push(answer("Hello"))
    await surface.wait_calls(1)
    assert surface.texts == ["Hello"]
    reply = await streamer.finish(DONE)
    assert surface.texts == ["Hello\n" + footer_of()]
    assert not streamer.typing_active
    assert reply.text == "Hello"
    assert reply.message_ids == ("m1",)


async def test_first_send_does_not_wait_for_the_pacer_when_budget_allows() -> None:
    from bot.reply.pacing import TokenBucketPacer

    # A pacer that would make anyone without a token wait an hour.
    surface = FakeSurface(pacer=TokenBucketPacer(rate=1 / 3600, burst=1))
    streamer = ReplyStreamer(surface)
    streamer.push(answer("Hi"))
    await surface.wait_calls(1)
    assert surface.texts == ["Hi"]
    await streamer.aclose()


async def test_many_chunks_are_coalesced_into_few_edits_with_the_final_text_complete() -> None:
    pacer = GatePacer()
    surface = FakeSurface(pacer=pacer)
    streamer = ReplyStreamer(surface)
    await streamer.start()
    words = [f"w{i} " for i in range(300)]
    for index, word in enumerate(words):
        await streamer.feed(answer(word))
        if index % 100 == 0:
            pacer.grant()  # a slow pacer: one grant every hundred chunks
    pacer.open()
    reply = await streamer.finish(DONE)
    assert reply.sends == 1
    assert reply.edits <= 4
    assert surface.texts == ["".join(words) + "\n" + footer_of()]


async def test_stale_edits_are_dropped_not_queued() -> None:
    pacer = GatePacer()
    surface = FakeSurface(pacer=pacer)
    streamer = ReplyStreamer(surface)
    streamer.push(answer("a"))
    pacer.grant()
    await surface.wait_calls(1)
    for letter in "bcdef":
        await streamer.feed(answer(letter))
    assert pacer.waiting == 1  # the flusher waits for the pacer, holding no text
    pacer.grant()
    await surface.wait_calls(2)
    assert [call.text for call in surface.calls] == ["a", "abcdef"]
    pacer.open()
    await streamer.finish(DONE)


async def test_operations_are_logged_with_growing_visible_length() -> None:
    seen: list[Operation] = []
    surface = FakeSurface(max_chars=100)
    streamer = ReplyStreamer(surface, on_operation=seen.append)
    for index in range(60):
        await streamer.feed(answer(f"token{index} "))
    reply = await streamer.finish(DONE)
    assert list(reply.operations) == seen
    # A freeze may move text to the continuation, but once that is sent nothing is lost.
    for index, op in enumerate(seen):
        if op.kind == "send":
            assert op.visible >= max(o.visible for o in seen[: index + 1])
    assert len(reply.message_ids) > 1
    assert seen[-1].final
    assert seen[-1].visible == len(reply.text)
    assert {op.message_id for op in seen} == set(reply.message_ids)


# --- splitting ----------------------------------------------------------------------------------


async def test_reply_over_limit_keeps_code_fence_intact_across_messages() -> None:
    code = "\n".join(f"    total += {i}  # step {i}" for i in range(40))
    text = "Here you go:\n\n```python\ndef f():\n    total = 0\n" + code + "\n```\n\nThat's it."
    surface = FakeSurface(max_chars=300)
    streamer = ReplyStreamer(surface)
    await streamer.start()
    for start in range(0, len(text), 7):
        await streamer.feed(answer(text[start : start + 7]))
    reply = await streamer.finish(DONE)
    assert len(reply.message_ids) > 2
    assert all(len(t) <= 300 for t in surface.texts)
    assert all(fence_state(t) is None for t in surface.texts)
    assert all(t.startswith("```python\n") for t in surface.texts[1:-1])
    assert reassembled(surface, reply) == text
    assert surface.texts[-1].endswith("\n" + footer_of())
    assert not any(footer_of() in t for t in surface.texts[:-1])


async def test_full_part_is_frozen_before_the_continuation_is_sent() -> None:
    surface = FakeSurface(max_chars=50)
    streamer = ReplyStreamer(surface)
    for word in ["alpha "] * 20:
        await streamer.feed(answer(word))
    await streamer.finish(DONE)
    first_send_of_m2 = next(i for i, c in enumerate(surface.calls) if c.message_id == "m2")
    # m1's last operation (its frozen text) happened before m2 was sent.
    last_m1 = max(i for i, c in enumerate(surface.calls) if c.message_id == "m1")
    assert last_m1 < first_send_of_m2
    assert surface.messages["m1"] == surface.calls[last_m1].text


# --- 429s and failures --------------------------------------------------------------------------


async def test_rate_limited_send_and_edit_are_retried_with_the_newest_text() -> None:
    pacer = GatePacer()
    pacer.open()
    surface = FakeSurface(pacer=pacer, fail_with_429=[0, 2], retry_after=1.5)
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("Hello"))
    await streamer.feed(answer(" world"))
    reply = await streamer.finish(DONE)
    assert pacer.penalties == [1.5, 1.5]
    assert reply.rate_limited == 2
    assert surface.texts == ["Hello world\n" + footer_of()]
    assert reply.delivered


async def test_final_edit_is_retried_through_429s_with_a_real_pacer() -> None:
    from bot.reply.pacing import TokenBucketPacer

    surface = FakeSurface(
        pacer=TokenBucketPacer(rate=1000.0, burst=5), fail_with_429=[1, 2, 3], retry_after=0.001
    )
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("Hi"))
    reply = await streamer.finish(DONE)
    assert reply.delivered
    assert surface.texts == ["Hi\n" + footer_of()]


async def test_final_edit_gives_up_after_bounded_attempts_with_an_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pacer = GatePacer()
    pacer.open()
    surface = FakeSurface(pacer=pacer, fail_with_429=range(1, 1000))
    streamer = ReplyStreamer(surface, max_attempts=3)
    await streamer.feed(answer("Hi"))
    with caplog.at_level(logging.ERROR, logger="bot.reply.streamer"):
        reply = await streamer.finish(DONE)
    assert not reply.delivered
    assert surface.texts == ["Hi"]
    assert "giving up" in caplog.text


async def test_other_surface_errors_are_retried() -> None:
    surface = FakeSurface(errors={0: OllamaError("network hiccup")})
    streamer = ReplyStreamer(surface, retry_backoff=0.001)
    await streamer.feed(answer("Hi"))
    reply = await streamer.finish(DONE)
    assert reply.delivered
    assert surface.texts == ["Hi\n" + footer_of()]


# --- thinking -----------------------------------------------------------------------------------


async def test_thinking_is_shown_in_a_blockquote_before_the_answer_when_asked() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface, show_thinking=True)
    await streamer.feed(StreamChunk(thinking="Let me see.\nTwo plus two"))
    await streamer.feed(StreamChunk(thinking=" is four."))
    await streamer.feed(answer("It is 4."))
    reply = await streamer.finish(DONE)
    assert surface.texts == [
        f"{THINKING_MARK}Let me see.\n> Two plus two is four.\n\nIt is 4.\n" + footer_of()
    ]
    assert reply.text == "It is 4."
    assert reply.thinking == "Let me see.\nTwo plus two is four."


async def test_thinking_is_never_shown_by_default() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface)
    await streamer.feed(StreamChunk(thinking="secret reasoning"))
    await streamer.feed(answer("Answer."))
    reply = await streamer.finish(DONE)
    assert surface.texts == ["Answer.\n" + footer_of()]
    assert "secret" not in "".join(c.text for c in surface.calls)
    assert reply.text == "Answer."


async def test_long_thinking_is_elided() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface, show_thinking=True, max_thinking_chars=10)
    await streamer.feed(StreamChunk(thinking="0123456789abcdef"))
    await streamer.feed(answer("ok"))
    await streamer.finish(DONE)
    assert surface.texts[0].startswith(f"{THINKING_MARK}0123456789 {PLACEHOLDER}\n\nok")


# --- outcomes -----------------------------------------------------------------------------------


async def test_empty_answer_with_an_error_shows_the_error() -> None:
    surface = FakeSurface(footer=lambda status: "")
    streamer = ReplyStreamer(surface)
    await streamer.start()
    error = ModelNotFoundError("nope", ["llama3.2"]).user_message
    reply = await streamer.finish(ReplyStatus(Outcome.ERROR, error=error))
    assert surface.texts == [f"\N{WARNING SIGN} {error}"]
    assert reply.text == ""


async def test_error_already_in_the_footer_is_not_repeated() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface)  # never started: the engine's refusal path
    status = ReplyStatus(Outcome.ERROR, error="You may not do this.")
    await streamer.finish(status)
    assert surface.texts == [footer_of(status)]


@pytest.mark.parametrize("outcome", list(Outcome))
async def test_empty_answer_without_error_still_shows_an_outcome(outcome: Outcome) -> None:
    surface = FakeSurface(footer=lambda status: "")
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("  \n"))
    await streamer.finish(ReplyStatus(outcome))
    assert len(surface.texts) == 1
    assert surface.texts[0].strip()


async def test_stopped_reply_keeps_its_text_and_says_so() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("Partial ans"))
    status = ReplyStatus(Outcome.STOPPED, model="llama3.2")
    reply = await streamer.finish(status)
    assert surface.texts == ["Partial ans\n" + footer_of(status)]
    assert reply.status == status


async def test_push_after_finish_is_refused_and_finish_is_idempotent() -> None:
    streamer = ReplyStreamer(FakeSurface())
    first = await streamer.finish(DONE)
    with pytest.raises(RuntimeError):
        streamer.push(answer("late"))
    assert await streamer.finish(DONE) is first


async def test_run_streams_and_shows_an_error_that_ends_the_stream() -> None:
    async def chunks() -> AsyncIterator[StreamChunk]:
        yield answer("Half of the")
        raise OllamaError("Ollama went away.")

    def status_for(err: OllabotError | None) -> ReplyStatus:
        if err is None:
            return DONE
        return ReplyStatus(Outcome.INTERRUPTED, error=err.user_message)

    surface = FakeSurface()
    reply = await ReplyStreamer(surface).run(chunks(), status_for=status_for)
    assert reply.status is not None
    assert reply.status.outcome is Outcome.INTERRUPTED
    assert surface.texts == ["Half of the\n-# model · interrupted · Ollama went away."]


async def test_context_manager_finishes_with_the_error_and_leaves_no_task() -> None:
    surface = FakeSurface()

    async def reply() -> None:
        async with ReplyStreamer(surface) as streamer:
            await streamer.feed(answer("Hi"))
            raise OllamaError("boom")

    with pytest.raises(OllamaError):
        await reply()
    assert surface.texts == ["Hi\n-# model · error · boom"]


async def test_noop_surface_takes_a_whole_reply() -> None:
    surface = NoopSurface()
    streamer = ReplyStreamer(surface)
    for index in range(500):
        streamer.push(answer(f"t{index} "))
    reply = await streamer.finish(DONE)
    assert surface.sends == len(reply.message_ids) >= 1


async def test_footer_too_long_for_a_small_surface_is_shortened() -> None:
    surface = FakeSurface(max_chars=40, footer=lambda status: "x" * 100)
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("word " * 20))
    reply = await streamer.finish(DONE)
    assert all(len(t) <= 40 for t in surface.texts)
    assert surface.texts[-1].endswith("x" + PLACEHOLDER)
    assert unsplit(reply.parts) == "word " * 20


def test_surface_too_small_for_any_message_is_refused() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        ReplyStreamer(FakeSurface(max_chars=5))


# --- property: whatever the chunking, the messages say exactly the answer -----------------------


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=30)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=chunked(),
    max_chars=st.integers(60, 2000),
    yields=st.booleans(),
    rate_limited=st.sets(st.integers(0, 12), max_size=4),
)
def test_any_chunking_and_limit_shows_exactly_the_answer(
    case: tuple[str, list[str]], max_chars: int, yields: bool, rate_limited: set[int]
) -> None:
    text, chunks = case

    async def scenario() -> tuple[FakeSurface, StreamedReply]:
        pacer = GatePacer()
        pacer.open()
        surface = FakeSurface(max_chars=max_chars, pacer=pacer, fail_with_429=rate_limited)
        streamer = ReplyStreamer(surface)
        for chunk in chunks:
            if yields:
                await streamer.feed(answer(chunk))  # lets the flusher freeze parts mid-stream
            else:
                streamer.push(answer(chunk))
        return surface, await streamer.finish(DONE)

    surface, reply = asyncio.run(scenario())
    assert reply.delivered
    assert reply.text == text
    assert all(len(t) <= max_chars for t in surface.texts)
    if text.strip():
        reserve = len("\n" + footer_of())
        assert list(reply.parts) == split_reply(text, max_chars, reserve=reserve)
        assert reassembled(surface, reply) == text


async def test_replies_sharing_a_channel_pacer_take_turns() -> None:
    from bot.reply.pacing import TokenBucketPacer
    from tests.reply.test_pacing import FakeClock

    clock = FakeClock()
    pacer = TokenBucketPacer(rate=1.0, burst=1, clock=clock, sleep=clock.sleep)
    log: list[str] = []

    async def reply(name: str) -> None:
        surface = FakeSurface(pacer=pacer)
        streamer = ReplyStreamer(surface, on_operation=lambda op: log.append(name))
        for index in range(30):
            await streamer.feed(answer(f"{name}{index} "))
            await asyncio.sleep(0)
        await streamer.finish(DONE)
        assert surface.texts[-1].startswith("".join(f"{name}{i} " for i in range(30)))

    await asyncio.gather(reply("a"), reply("b"))
    # Neither reply holds the channel: the grants alternate instead of one reply going first.
    assert log.index("b") <= 2
    assert "".join(log[:6]) in {"ababab", "bababa"}


async def test_a_finishing_reply_takes_its_turn_then_borrows_instead_of_waiting_a_token() -> None:
    """Issue 10, point 8: a reply's last operations wait their turn, not for the refill."""
    from bot.reply.pacing import TokenBucketPacer
    from tests.reply.test_pacing import ManualClock

    clock = ManualClock()
    pacer = TokenBucketPacer(rate=1.0, burst=1, first_borrow=1, clock=clock, sleep=clock.sleep)
    log: list[tuple[str, float]] = []

    def record(name: str) -> Callable[[Operation], None]:
        return lambda op: log.append((f"{name} {op.kind}", clock.now - 1000.0))

    a = ReplyStreamer(FakeSurface(pacer=pacer), typing_interval=0, on_operation=record("a"))
    b_surface = FakeSurface(pacer=pacer)
    b = ReplyStreamer(b_surface, typing_interval=0, on_operation=record("b"))
    await a.feed(answer("a0 "))
    await b.feed(answer("b0 "))
    await clock.advance(0)  # a's first message takes the token, b's borrows the next one
    await a.feed(answer("a1 "))
    await clock.advance(0)  # a's edit waits until the debt is paid: two seconds
    finishing = asyncio.create_task(b.finish(DONE))
    await clock.advance(0)
    await clock.advance(1.0)
    assert log == [("a send", 0.0), ("b send", 0.0)]  # b's footer waits behind a's edit
    await clock.advance(1.0)
    await finishing
    # In turn after a's edit, and at once: it borrows rather than waiting a second more.
    assert log == [("a send", 0.0), ("b send", 0.0), ("a edit", 2.0), ("b edit", 2.0)]
    assert b_surface.texts == [f"b0 \n{footer_of()}"]
    finished = asyncio.create_task(a.finish(DONE))
    for _ in range(3):
        await clock.advance(1.0)
    await finished


async def test_error_after_partial_text_is_shown_even_without_a_footer() -> None:
    surface = FakeSurface(footer=lambda status: "")
    streamer = ReplyStreamer(surface)
    await streamer.feed(answer("The first half"))
    reply = await streamer.finish(ReplyStatus(Outcome.INTERRUPTED, error="Ollama went away."))
    assert surface.texts == ["The first half\n\n\N{WARNING SIGN} Ollama went away."]
    assert reply.text == "The first half"


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (a deadline, never a timing assertion)."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met")


async def test_typing_repeats_until_text_then_stops() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface, typing_interval=0.001, typing_limit=600)
    await streamer.start()
    await until(lambda: surface.typing_count >= 3)  # repeats while there is no text
    streamer.push(answer("Hi"))
    await surface.wait_calls(1)
    await until(lambda: not streamer.typing_active)  # the text is visible: typing ends
    typed = surface.typing_count
    await streamer.finish(DONE)
    assert surface.typing_count == typed


async def test_typing_stops_at_its_limit_without_text() -> None:
    surface = FakeSurface()
    streamer = ReplyStreamer(surface, typing_interval=0.001, typing_limit=0.05)
    await streamer.start()
    await until(lambda: not streamer.typing_active)  # ends by itself, no text ever sent
    assert surface.typing_count >= 1
    assert surface.calls == []
    await streamer.finish(DONE)


async def test_context_manager_shows_an_outcome_even_for_an_unexpected_error() -> None:
    surface = FakeSurface(footer=lambda status: "")

    async def reply() -> None:
        async with ReplyStreamer(surface) as streamer:
            await streamer.feed(answer("Hi"))
            raise KeyError("bug")

    with pytest.raises(KeyError):
        await reply()
    assert surface.texts == ["Hi\n\n\N{WARNING SIGN} Something went wrong while answering."]


async def test_cancelling_the_owner_leaves_no_background_task() -> None:
    pacer = GatePacer()  # never grants: the flusher is stuck waiting
    surface = FakeSurface(pacer=pacer)
    streamer = ReplyStreamer(surface)

    async def owner() -> None:
        async with streamer:
            await streamer.feed(answer("Hi"))
            await asyncio.Event().wait()

    task = asyncio.create_task(owner())
    await until(lambda: pacer.waiting == 1)  # the flusher waits for a grant
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert surface.calls == []
