"""ResponseStream's rounds, counters, timings and ends, pinned value by value.

Written against the survivors of a mutation run over ``bot/model/stream.py`` (docs/quality.md,
"Stream"): each test asserts what the caller gets (chunks, the Response's fields, the error),
what reached the fake Ollama, and that no stream was left open. The real ``ollama`` client
talks to the wire fake; time is the generator's own clock where a test needs exact durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import pytest

from bot.errors import GenerationTimeout, OllamaError
from bot.model.cache import ResponseCache
from bot.model.generation import Generator, ResponseStream, Timeouts
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatRequest
from bot.model.retry import RetryPolicy
from bot.types import Message, Outcome, Response, Role, StreamChunk, ToolCall
from tests.fakes.fake_ollama import FakeOllama, Reply

pytestmark = pytest.mark.usefixtures("no_leaks")

RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.005, jitter=0.0)
ROOMY = Timeouts(first_token=30.0, between_tokens=30.0, total=60.0)
ADD = {"name": "add", "arguments": {"a": 2, "b": 3}}


class Clock:
    """The generator's clock, set by the test (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Tools:
    """A real tool runner: ``add`` answers the scripted results in turn, after one await."""

    def __init__(self, *results: str) -> None:
        self.results = list(results)
        self.calls: list[ToolCall] = []

    def schemas(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "add", "parameters": {}}}]

    async def run(self, call: ToolCall) -> str:
        self.calls.append(call)
        await asyncio.sleep(0)  # a tool does I/O: it lets the loop turn at least once
        return self.results.pop(0)


def ask(text: str = "hello there", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        model="llama3.2", messages=(Message(role=Role.USER, content=text),), **kwargs
    )


def make(
    backend: OllamaChatModel,
    *,
    timeouts: Timeouts = ROOMY,
    retry: RetryPolicy = RETRY,
    clock: Clock | None = None,
    cache: ResponseCache | None = None,
) -> Generator:
    if clock is None:
        return Generator(backend, timeouts=timeouts, retry=retry, cache=cache)
    return Generator(backend, timeouts=timeouts, retry=retry, cache=cache, clock=clock)


async def chunks_of(stream: ResponseStream) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def sent(fake: FakeOllama, request: int) -> list[tuple[str, str]]:
    """(role, content) of each message of the fake's ``request``-th chat request."""
    return [(m["role"], m.get("content", "")) for m in fake.requests[request]["messages"]]


# -- counters and timings -----------------------------------------------------------------


async def test_timings_are_read_from_the_generators_clock(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    clock = Clock(1000.0)
    gate = asyncio.Event()
    fake_ollama.script(Reply(tokens=["a ", "b"], gate=gate))
    stream = make(backend, clock=clock).stream(ask())
    first = asyncio.create_task(anext(stream))
    await fake_ollama.wait_for_requests(1)  # the stream started at 1000

    clock.now = 1003.0
    gate.set()
    assert (await first).content == "a "
    clock.now = 1010.0
    await chunks_of(stream)
    response = await stream

    assert (response.time_to_first_token, response.total_duration) == (3.0, 10.0)


async def test_a_stream_closed_before_it_started_is_an_empty_stopped_reply(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    clock = Clock(1000.0)
    ended: list[Response] = []
    stream = make(backend, clock=clock).stream(ask(), on_end=ended.append)
    clock.now = 1005.0

    await stream.aclose()
    response = await stream

    assert response == Response(model_name="llama3.2", outcome=Outcome.STOPPED, total_duration=0.0)
    assert ended == [response]
    assert fake_ollama.requests == []


async def test_a_reply_with_no_tokens_counts_none(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply())  # the model ended at once: Ollama's eval_count is 0

    response = await make(backend).stream(ask())

    assert (response.content, response.outcome) == ("", Outcome.COMPLETE)
    assert (response.token_count, response.token_count_estimated) == (0, False)


@pytest.mark.parametrize("end", ["stopped", "interrupted"])
async def test_a_reply_without_ollamas_last_line_counts_its_one_chunk(
    backend: OllamaChatModel, fake_ollama: FakeOllama, end: str
) -> None:
    if end == "stopped":
        fake_ollama.script(Reply(tokens=["one ", "two"], hold_after=1))
    else:
        fake_ollama.script(Reply(tokens=["one ", "two"], drop_after=1))
    ended: list[Response] = []
    stream = make(backend).stream(ask(), on_end=ended.append)

    assert (await anext(stream)).content == "one "
    if end == "stopped":
        await stream.aclose()
    rest = await chunks_of(stream)
    response = await stream

    assert rest == ([] if end == "stopped" else [StreamChunk(done=True)])
    assert response.content == "one "
    assert response.outcome is (Outcome.STOPPED if end == "stopped" else Outcome.INTERRUPTED)
    assert (response.token_count, response.token_count_estimated) == (1, True)
    assert (response.prompt_token_count, response.done_reason) == (0, None)
    assert ended == [response]  # once, although the stream and aclose both end it
    assert await fake_ollama.closed_by_client() == (1 if end == "stopped" else 0)


async def test_a_gap_limit_times_each_gap_not_the_whole_reply(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    # 25 empty lines (as a model's first lines can be) and 25 tokens, 0.03 s apart: each
    # phase lasts longer than the gap limit, no gap comes near it.
    fake_ollama.script(Reply(tokens=[""] * 25 + ["a "] * 25, token_delay=0.03))
    timeouts = Timeouts(first_token=30.0, between_tokens=0.5, total=60.0)

    response = await make(backend, timeouts=timeouts).stream(ask())

    assert response.outcome is Outcome.COMPLETE
    assert response.content == "a " * 25


# -- timeouts: which limit, which words ---------------------------------------------------


@pytest.mark.parametrize(
    ("hang", "timeouts", "phase", "seconds"),
    [
        ("before the first line", Timeouts(30.0, 0.2, 7.0, 60.0), "first token", 0.2),
        ("after an empty line", Timeouts(30.0, 7.0, 0.2, 60.0), "between tokens", 0.2),
        ("before the first line", Timeouts(30.0, 7.0, 7.0, 0.3), "total", 0.3),
    ],
    ids=["first token", "gap before any text", "total"],
)
async def test_a_timeout_before_any_text_names_its_limit(
    backend: OllamaChatModel,
    fake_ollama: FakeOllama,
    hang: str,
    timeouts: Timeouts,
    phase: str,
    seconds: float,
) -> None:
    if hang == "before the first line":
        fake_ollama.script(Reply(tokens=["late"], gate=asyncio.Event()))
    else:  # an empty content line (nothing to show yet), then nothing
        fake_ollama.script(Reply(tokens=[""], hold_after=1))

    with pytest.raises(GenerationTimeout) as caught:
        await make(backend, timeouts=timeouts).stream(ask())

    assert (caught.value.phase, caught.value.seconds) == (phase, seconds)
    assert caught.value.user_message == f"The model took too long ({phase}: over {seconds} s)."
    assert len(fake_ollama.requests) == 1
    assert await fake_ollama.closed_by_client() == 1


@pytest.mark.parametrize(
    ("timeouts", "error"),
    [
        (Timeouts(30.0, 30.0, 0.3, 60.0), "The model took too long (between tokens: over 0.3 s)."),
        (Timeouts(30.0, 30.0, 30.0, 0.4), "The model took too long (total: over 0.4 s)."),
    ],
    ids=["gap", "total"],
)
async def test_a_limit_still_fires_after_the_watchdog_saw_tokens_flow(
    backend: OllamaChatModel, fake_ollama: FakeOllama, timeouts: Timeouts, error: str
) -> None:
    # Ten tokens while the watchdog checks (it sees progress), then the stream stalls.
    fake_ollama.script(Reply(tokens=["a "] * 12, token_delay=0.03, hold_after=10))

    async with asyncio.timeout(10):  # a dead watchdog would wait for ever
        response = await make(backend, timeouts=timeouts).stream(ask())

    assert response.outcome is Outcome.INTERRUPTED
    assert response.error == error
    assert response.content in {"a " * n for n in range(1, 11)}  # all ten, unless very slow
    assert await fake_ollama.closed_by_client() == 1


async def test_a_tool_round_that_starts_after_the_total_deadline_ends_the_reply(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    # The deadline is read from the generator's clock: it passes while the consumer holds
    # the first round's text, so the tool gets no time at all (not even a second).
    clock = Clock(1000.0)
    tools = Tools("5")
    fake_ollama.script(Reply(tokens=["Let ", "me ", "add."], tool_calls=[ADD]))
    stream = make(backend, clock=clock).stream(ask(), tool_runner=tools)

    seen = [await anext(stream)]
    clock.now = 1060.0  # ROOMY.total later
    seen += await chunks_of(stream)
    response = await stream

    assert response.outcome is Outcome.INTERRUPTED
    assert response.content == "".join(c.content for c in seen) == "Let me add."
    assert response.error == "The model took too long (total: over 60 s)."
    assert len(fake_ollama.requests) == 1  # the tool's result never went back


# -- tool rounds --------------------------------------------------------------------------


async def test_what_the_model_said_before_each_tool_call_goes_back_with_it(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(tokens=["Let ", "me ", "add."], tool_calls=[ADD]),
        Reply(tool_calls=[{"name": "add", "arguments": {"a": 5, "b": 1}}]),
        Reply(tokens=["It ", "is ", "6."]),
    )
    response = await make(backend).stream(ask("2+3+1?"), tool_runner=Tools("5", "6"))

    assert response.content == "Let me add.\n\nIt is 6."
    assert sent(fake_ollama, 1) == [
        ("user", "2+3+1?"),
        ("assistant", "Let me add."),
        ("tool", "5"),
    ]
    assert sent(fake_ollama, 2)[3:] == [("assistant", ""), ("tool", "6")]
    assert fake_ollama.requests[2]["messages"][3]["tool_calls"] == [
        {"function": {"name": "add", "arguments": {"a": 5, "b": 1}}}
    ]


async def test_four_tool_rounds_by_default_then_a_request_without_tools(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(*[Reply(tool_calls=[ADD])] * 4, Reply.text("Enough."))

    response = await make(backend).stream(ask(), tool_runner=Tools(*["5"] * 4))

    assert response.content == "Enough."
    assert [bool(r.get("tools")) for r in fake_ollama.requests] == [True] * 4 + [False]


@pytest.mark.parametrize(
    ("result", "to_model"),
    [("", "(no output)"), (" \n\t", "(no output)"), ("  5\n", "5")],
)
async def test_a_tool_result_goes_back_stripped_and_never_empty(
    backend: OllamaChatModel, fake_ollama: FakeOllama, result: str, to_model: str
) -> None:
    fake_ollama.script(Reply(tool_calls=[ADD]), Reply.text("Done."))

    await make(backend).stream(ask(), tool_runner=Tools(result))

    assert sent(fake_ollama, 1)[-1] == ("tool", to_model)


# -- stopping from another task -----------------------------------------------------------


async def test_a_reply_stopped_from_another_task_ends_its_consumer_with_a_done_chunk(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["one ", "two ", "three"], hold_after=2))
    stream = make(backend).stream(ask())
    received: list[StreamChunk] = []
    two = asyncio.Event()

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)
            if len(received) == 2:
                two.set()  # no await before the next __anext__: it is waiting inside next

    consumer = asyncio.create_task(consume())
    await two.wait()
    await stream.aclose()
    await consumer

    assert received == [StreamChunk("one "), StreamChunk("two "), StreamChunk(done=True)]
    assert (await stream).outcome is Outcome.STOPPED
    assert await fake_ollama.closed_by_client() == 1


async def test_a_second_task_asking_for_a_chunk_waits_for_the_end(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["never"], gate=asyncio.Event()))
    stream = make(backend).stream(ask())
    consumer = asyncio.create_task(chunks_of(stream))
    await fake_ollama.wait_for_requests(1)  # the consumer waits inside the stream
    second = asyncio.create_task(anext(stream))

    await stream.aclose()

    with pytest.raises(StopAsyncIteration):
        await second
    assert await consumer == [StreamChunk(done=True)]


class StopIgnoringTools(Tools):
    """A runner whose ``add`` ignores being stopped: it answers instead of raising."""

    def __init__(self) -> None:
        super().__init__()
        self.running = asyncio.Event()

    async def run(self, call: ToolCall) -> str:
        self.calls.append(call)
        self.running.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # until stopped
        return "interrupted"


async def test_a_stop_during_a_tool_that_ignores_it_starts_no_further_tool(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tool_calls=[ADD, ADD]))
    tools = StopIgnoringTools()
    stream = make(backend).stream(ask(), tool_runner=tools)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        consumer = asyncio.create_task(chunks_of(stream))
        await tools.running.wait()
        await stream.aclose()
        chunks = await consumer

    assert chunks == [StreamChunk(done=True)]
    assert (await stream).outcome is Outcome.STOPPED
    assert len(tools.calls) == 1  # the second call was never started...
    assert [str(w.message) for w in caught] == []  # ...nor left "never awaited"
    assert len(fake_ollama.requests) == 1


# -- cache and logs -----------------------------------------------------------------------


async def test_a_cache_hit_replays_the_thinking_too(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = make(backend, cache=ResponseCache())
    request = ask("2+2?", think=True, options={"temperature": 0.0})
    fake_ollama.script(Reply(thinking=["Two ", "and two."], tokens=["Four."]))
    await generator.stream(request)

    replay = await chunks_of(generator.stream(request))

    assert replay == [StreamChunk(content="Four.", thinking="Two and two.", done=True)]
    assert len(fake_ollama.requests) == 1


LOG_CASES: Sequence[tuple[Reply, RetryPolicy, str]] = [
    (
        Reply(tokens=["lost"], end_after=0),
        RetryPolicy.none(),
        "generation failed before any text: The reply ended unexpectedly.",
    ),
    (
        Reply(tokens=["kept ", "lost"], end_after=1),
        RETRY,
        "generation interrupted after partial text: The reply ended unexpectedly.",
    ),
]


@pytest.mark.parametrize(("reply", "retry", "line"), LOG_CASES, ids=["failed", "interrupted"])
async def test_a_failed_reply_is_logged_with_its_detail(
    backend: OllamaChatModel,
    fake_ollama: FakeOllama,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    retry: RetryPolicy,
    line: str,
) -> None:
    fake_ollama.script(reply)
    with (
        caplog.at_level(logging.WARNING, logger="bot.model.generation"),
        contextlib.suppress(OllamaError),  # the first case fails: its log line is the point
    ):
        await make(backend, retry=retry).stream(ask())

    logged = [r.getMessage() for r in caplog.records if r.name == "bot.model.generation"]
    assert logged == [line]
