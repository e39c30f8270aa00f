"""The generation core through OllamaChatModel and the real ollama client, against the fake."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from bot.errors import (
    GenerationTimeout,
    InputRejected,
    ModelNotFoundError,
    OllamaError,
    OllamaUnavailableError,
)
from bot.model.cache import ResponseCache
from bot.model.generation import Generator, ResponseStream, Timeouts
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatRequest
from bot.model.retry import RetryPolicy, is_retryable
from bot.types import Message, Outcome, Response, Role, StreamChunk, ToolCall
from tests.fakes.fake_ollama import FakeOllama, Reply

FAST_RETRY = RetryPolicy(attempts=3, initial=0.001, maximum=0.005, jitter=0.0)
SHORT = Timeouts(first_token=5.0, between_tokens=5.0, total=20.0)


pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def generator(backend: OllamaChatModel) -> Generator:
    return Generator(backend, timeouts=SHORT, retry=FAST_RETRY)


def ask(text: str = "hello there", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        model="llama3.2", messages=(Message(role=Role.USER, content=text),), **kwargs
    )


async def chunks_of(stream: ResponseStream) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


class AddTools:
    """A small real tool runner: one ``add`` tool."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    def schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Add two integers.",
                    "parameters": {
                        "type": "object",
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"],
                    },
                },
            }
        ]

    async def run(self, call: ToolCall) -> str:
        self.calls.append(call)
        try:
            return str(int(call.arguments["a"]) + int(call.arguments["b"]))
        except (KeyError, ValueError) as err:
            return f"Error: {err}"


# -- streaming and awaiting -------------------------------------------------------------------


async def test_iterating_yields_text_chunks_then_await_returns_their_response(
    generator: Generator,
) -> None:
    stream = generator.stream(ask())
    chunks = await chunks_of(stream)
    response = await stream

    assert "".join(c.content for c in chunks) == "echo: hello there"
    assert len(chunks) > 2
    assert chunks[-1].done
    assert not any(c.done for c in chunks[:-1])
    assert response.content == "echo: hello there"
    assert response.outcome is Outcome.COMPLETE
    assert response.token_count == 3
    assert response.prompt_token_count > 0
    assert response.model_name == "llama3.2"
    assert response.done_reason == "stop"
    assert response.time_to_first_token is not None
    assert response.error is None


async def test_await_alone_returns_the_whole_response(generator: Generator) -> None:
    response = await generator.stream(ask("just await"))

    assert response.content == "echo: just await"
    assert response.outcome is Outcome.COMPLETE


async def test_thinking_streams_separately_and_stays_out_of_the_content(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(thinking=["Let me ", "see."], tokens=["Four", "."]))
    stream = generator.stream(ask("2+2?", think=True))
    chunks = await chunks_of(stream)
    response = await stream

    assert "".join(c.thinking for c in chunks) == "Let me see."
    assert "".join(c.content for c in chunks) == "Four."
    assert not any(c.thinking and c.content for c in chunks)
    assert response.content == "Four."
    assert response.thinking == "Let me see."
    assert fake_ollama.requests[-1]["think"] is True


async def test_a_reply_cut_at_num_predict_ends_length_not_complete(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.text("one two three four five six"))
    response = await generator.stream(ask(options={"num_predict": 3}))

    assert response.content == "one two three "
    assert response.done_reason == "length"
    assert response.outcome is Outcome.LENGTH
    assert response.token_count == 3


async def test_length_cut_replies_are_not_cached(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = Generator(backend, retry=FAST_RETRY, cache=ResponseCache())
    request = ask(options={"temperature": 0.0})
    fake_ollama.script(Reply.text("cut short", done_reason="length"))

    assert (await generator.stream(request)).outcome is Outcome.LENGTH
    again = await generator.stream(request)

    assert not again.cached
    assert again.outcome is Outcome.COMPLETE
    assert len(fake_ollama.requests) == 2


# -- retries ----------------------------------------------------------------------------------


async def test_http_500_is_retried_then_succeeds(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(status=500), Reply(status=500))

    response = await generator.stream(ask())

    assert response.content == "echo: hello there"
    assert len(fake_ollama.requests) == 3


async def test_http_500_forever_gives_up_after_the_policy_attempts(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(*[Reply(status=500, error_message="runner crashed")] * 10)

    with pytest.raises(OllamaError) as caught:
        await generator.stream(ask())

    assert caught.value.status_code == 500
    assert "runner crashed" in caught.value.user_message
    assert len(fake_ollama.requests) == FAST_RETRY.attempts


async def test_error_raised_by_iteration_is_raised_again_by_await(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(*[Reply(status=503)] * 3)
    stream = generator.stream(ask())
    with pytest.raises(OllamaError) as first:
        await chunks_of(stream)
    with pytest.raises(OllamaError) as second:
        await stream
    assert second.value is first.value


async def test_missing_model_is_not_retried_and_lists_installed_models(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        await generator.stream(ChatRequest(model="mistral", messages=ask().messages))

    assert caught.value.available_models == ("llama3.2:latest",)
    assert len(fake_ollama.requests) == 1


async def test_refused_connection_is_retried_then_names_the_host(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()

    with pytest.raises(OllamaUnavailableError) as caught:
        await generator.stream(ask())

    assert fake_ollama.url in caught.value.user_message


async def test_ollama_coming_back_during_retries_succeeds(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()
    generator = Generator(backend, retry=RetryPolicy(attempts=50, initial=0.01, maximum=0.05))
    pending = asyncio.ensure_future(generator.stream(ask()))
    await asyncio.sleep(0.05)  # let a few attempts fail; the outcome does not depend on timing
    await fake_ollama.start()

    response = await pending
    assert response.content == "echo: hello there"


async def test_error_line_before_any_token_is_retried_without_duplicating_text(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["never ", "shown"], error_after=0), Reply.text("fine now"))
    stream = generator.stream(ask())
    chunks = await chunks_of(stream)

    assert "".join(c.content for c in chunks) == "fine now"
    assert (await stream).content == "fine now"
    assert len(fake_ollama.requests) == 2


async def test_dropped_connection_before_any_token_is_retried(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["x"], drop_after=0))

    response = await generator.stream(ask())

    assert response.content == "echo: hello there"
    assert len(fake_ollama.requests) == 2


# -- interruption after text was shown --------------------------------------------------------


async def test_error_line_after_tokens_interrupts_and_keeps_partial_text_without_retry(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(tokens=["The ", "answer ", "is ", "42"], error_after=2, error_message="GPU lost"),
        Reply.text("a retry would show this"),
    )
    stream = generator.stream(ask())
    chunks = await chunks_of(stream)
    response = await stream

    assert "".join(c.content for c in chunks) == "The answer "
    assert chunks[-1].done
    assert response.outcome is Outcome.INTERRUPTED
    assert response.content == "The answer "
    assert response.error is not None
    assert "GPU lost" in response.error
    assert len(fake_ollama.requests) == 1


async def test_connection_dropped_after_tokens_interrupts_with_partial_text(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["one ", "two ", "three"], drop_after=2))

    response = await generator.stream(ask())

    assert response.outcome is Outcome.INTERRUPTED
    assert response.content == "one two "
    assert response.error == "The connection to Ollama was lost."
    assert len(fake_ollama.requests) == 1


# -- timeouts ---------------------------------------------------------------------------------


async def test_no_first_token_in_time_raises_timeout_and_closes_the_stream(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    never = asyncio.Event()
    fake_ollama.script(Reply(tokens=["late"], gate=never), Reply.text("not retried"))
    generator = Generator(
        backend, timeouts=Timeouts(first_token=0.2, between_tokens=5, total=10), retry=FAST_RETRY
    )

    with pytest.raises(GenerationTimeout) as caught:
        await generator.stream(ask())

    assert caught.value.phase == "first token"
    assert len(fake_ollama.requests) == 1
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


async def test_gap_between_tokens_interrupts_after_text_and_closes_the_stream(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["quick ", "then slow"], token_delay=30))
    generator = Generator(
        backend, timeouts=Timeouts(first_token=5, between_tokens=0.2, total=10), retry=FAST_RETRY
    )

    response = await generator.stream(ask())

    assert response.outcome is Outcome.INTERRUPTED
    assert response.content == "quick "
    assert response.error is not None
    assert "between tokens" in response.error
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


async def test_total_time_limit_interrupts_a_reply_that_keeps_streaming(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["tick "] * 1000, token_delay=0.02))
    generator = Generator(
        backend, timeouts=Timeouts(first_token=5, between_tokens=5, total=0.3), retry=FAST_RETRY
    )

    response = await generator.stream(ask())

    assert response.outcome is Outcome.INTERRUPTED
    assert response.content.startswith("tick ")
    assert response.error == "The model took too long (total: over 0.3 s)."
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


async def test_a_consumer_slower_than_the_gap_limit_is_not_a_gap_between_tokens(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    # The gap limit times the wait for the next delta only: the watchdog counts a chunk held by
    # the consumer as progress, so a slow consumer (a paced platform) never times out the reply.
    generator = Generator(
        backend, timeouts=Timeouts(first_token=5, between_tokens=0.2, total=10), retry=FAST_RETRY
    )
    fake_ollama.script(Reply(tokens=["one ", "two ", "three"], token_delay=0.05))
    stream = generator.stream(ask())

    async for _ in stream:
        await asyncio.sleep(0.4)
    response = await stream

    assert response.outcome is Outcome.COMPLETE
    assert response.content == "one two three"


async def test_total_limit_passed_while_the_consumer_holds_a_chunk_ends_the_next_wait(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    # The fake holds the stream open after 5 tokens, so it cannot have ended on its own (a
    # stream sent whole before the consumer came back is not "closed by the client").
    fake_ollama.script(Reply(tokens=["tick "] * 50, hold_after=5))
    generator = Generator(
        backend, timeouts=Timeouts(first_token=5, between_tokens=5, total=0.2), retry=FAST_RETRY
    )
    stream = generator.stream(ask())

    seen = [await anext(stream)]
    await asyncio.sleep(0.5)  # the total deadline passes while this task holds the chunk
    seen += [chunk async for chunk in stream]
    response = await stream

    assert seen == [StreamChunk("tick "), StreamChunk(done=True)]  # no further wait
    assert response.outcome is Outcome.INTERRUPTED
    assert response.error == "The model took too long (total: over 0.2 s)."
    assert response.content == "tick "
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


# -- stopping ---------------------------------------------------------------------------------


async def test_aclose_stops_the_reply_and_closes_the_server_stream(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["tok "] * 500, token_delay=0.01))
    stream = generator.stream(ask())
    seen = [await anext(stream), await anext(stream)]

    await stream.aclose()
    response = await stream

    assert response.outcome is Outcome.STOPPED
    assert response.content == "".join(c.content for c in seen) == "tok tok "
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later
    assert fake_ollama.streams_completed == 0


async def test_aclose_from_another_task_stops_a_reply_waiting_for_tokens(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    never = asyncio.Event()
    fake_ollama.script(Reply(tokens=["never"], gate=never))
    stream = generator.stream(ask())
    consumer = asyncio.create_task(chunks_of(stream))
    await fake_ollama.wait_for_requests(1)

    await stream.aclose()
    chunks = await consumer
    response = await stream

    assert "".join(c.content for c in chunks) == ""
    assert response.outcome is Outcome.STOPPED
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


async def test_a_stopped_reply_counts_its_streamed_chunks_and_reports_no_speed(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=[f"t{i} " for i in range(10)], hold_after=4))
    stream = generator.stream(ask())
    received = 0
    async for _ in stream:
        received += 1
        if received == 4:
            break
    await stream.aclose()
    response = await stream
    await fake_ollama.wait_for_client_close()

    # Ollama sends its counters in a last line that a closed stream never gets.
    assert fake_ollama.streams_completed == 0
    assert response.outcome is Outcome.STOPPED
    assert response.token_count == 4
    assert response.token_count_estimated
    assert response.tokens_per_second is None


async def test_an_interrupted_reply_counts_its_streamed_chunks(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["a ", "b ", "c ", "d "], drop_after=3))
    response = await generator.stream(ask())

    assert response.outcome is Outcome.INTERRUPTED
    assert response.token_count == 3
    assert response.token_count_estimated


async def test_a_complete_reply_counts_with_ollamas_counters(generator: Generator) -> None:
    response = await generator.stream(ask("one two"))

    assert response.token_count == 3  # the fake's eval_count: "echo:", "one", "two"
    assert not response.token_count_estimated
    assert response.tokens_per_second is not None


async def test_async_with_closes_a_reply_left_unfinished(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["tok "] * 500, token_delay=0.01))
    async with generator.stream(ask()) as stream:
        await anext(stream)

    assert stream.response is not None
    assert stream.response.outcome is Outcome.STOPPED
    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later


async def test_cancelling_the_consumer_task_closes_the_server_stream(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    never = asyncio.Event()
    fake_ollama.script(Reply(tokens=["never"], gate=never))
    stream = generator.stream(ask())
    consumer = asyncio.create_task(chunks_of(stream))
    await fake_ollama.wait_for_requests(1)

    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert await fake_ollama.closed_by_client() == 1  # closed now, not by the GC later
    assert stream.response is not None
    assert stream.response.outcome is Outcome.STOPPED


async def test_aclose_after_the_end_keeps_the_complete_response(generator: Generator) -> None:
    stream = generator.stream(ask())
    await chunks_of(stream)
    await stream.aclose()

    assert (await stream).outcome is Outcome.COMPLETE


# -- tools ------------------------------------------------------------------------------------


async def test_tool_call_round_trip_feeds_the_result_back_and_streams_the_answer(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    tools = AddTools()
    fake_ollama.script(
        Reply(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]),
        Reply.text("The sum is 5."),
    )
    stream = generator.stream(ask("what is 2+3?"), tool_runner=tools)
    chunks = await chunks_of(stream)
    response = await stream

    assert "".join(c.content for c in chunks) == "The sum is 5."
    assert response.content == "The sum is 5."
    assert response.tool_calls == (ToolCall(name="add", arguments={"a": 2, "b": 3}),)
    assert tools.calls == [ToolCall(name="add", arguments={"a": 2, "b": 3})]
    first, second = fake_ollama.requests
    assert first["tools"] == tools.schemas()
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert second["messages"][1]["tool_calls"] == [
        {"function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    ]
    assert second["messages"][2] == {"role": "tool", "content": "5", "tool_name": "add"}


async def test_tool_rounds_are_bounded_and_the_last_request_offers_no_tools(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    loop = Reply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    fake_ollama.script(loop, loop, Reply.text("Giving up on tools."))

    response = await generator.stream(ask(), tool_runner=AddTools(), max_tool_rounds=2)

    assert response.content == "Giving up on tools."
    assert len(fake_ollama.requests) == 3
    assert not fake_ollama.requests[-1]["tools"]
    assert fake_ollama.requests[1]["tools"]
    assert len(response.tool_calls) == 2


async def test_tool_calls_without_a_runner_are_only_reported(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]))

    response = await generator.stream(ask(tools=AddTools().schemas()))

    assert response.tool_calls == (ToolCall(name="add", arguments={"a": 1, "b": 2}),)
    assert response.outcome is Outcome.COMPLETE
    assert len(fake_ollama.requests) == 1


# -- cache ------------------------------------------------------------------------------------


async def test_cache_hit_replays_the_reply_as_one_chunk_without_calling_the_model(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = Generator(backend, retry=FAST_RETRY, cache=ResponseCache())
    request = ask(options={"temperature": 0.0})
    first = await generator.stream(request)

    stream = generator.stream(request)
    chunks = await chunks_of(stream)
    again = await stream

    assert len(fake_ollama.requests) == 1
    assert chunks == [StreamChunk(content=first.content, done=True)]
    assert again.cached
    assert not first.cached
    assert again.content == first.content


async def test_interrupted_replies_are_not_cached(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = Generator(backend, retry=FAST_RETRY, cache=ResponseCache())
    request = ask(options={"temperature": 0.0})
    fake_ollama.script(Reply(tokens=["half ", "a reply"], error_after=1))

    assert (await generator.stream(request)).outcome is Outcome.INTERRUPTED
    response = await generator.stream(request)

    assert response.outcome is Outcome.COMPLETE
    assert not response.cached
    assert len(fake_ollama.requests) == 2


async def test_aclose_during_retry_backoff_stops_without_waiting_it_out(
    backend: OllamaChatModel, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.model.retry")  # whatever other tests set
    await fake_ollama.stop()
    generator = Generator(backend, retry=RetryPolicy(attempts=5, initial=30.0, maximum=30.0))
    stream = generator.stream(ask())
    backing_off = asyncio.Event()
    handler = _SignalHandler(backing_off)
    logging.getLogger("bot.model.retry").addHandler(handler)
    try:
        consumer = asyncio.create_task(chunks_of(stream))
        await asyncio.wait_for(backing_off.wait(), 5)  # first attempt refused; 30 s sleep begins

        await stream.aclose()
        await consumer
    finally:
        logging.getLogger("bot.model.retry").removeHandler(handler)

    assert stream.response is not None
    assert stream.response.outcome is Outcome.STOPPED


class _SignalHandler(logging.Handler):
    """Sets an event when the retry policy logs that it is about to sleep."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__(logging.WARNING)
        self._event = event

    def emit(self, record: logging.LogRecord) -> None:
        self._event.set()


# -- retry policy -----------------------------------------------------------------------------


def test_retryable_errors_are_only_those_that_say_so() -> None:
    assert is_retryable(OllamaUnavailableError("http://x"))
    assert is_retryable(OllamaError("boom", status_code=500, retryable=True))
    assert not is_retryable(OllamaError("bad request", status_code=400))
    assert not is_retryable(ModelNotFoundError("m", ["a"]))
    assert not is_retryable(GenerationTimeout("first token", 1.0))
    assert not is_retryable(InputRejected("too long"))
    assert not is_retryable(ValueError("not ours"))


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, initial=0.5, maximum=4.0, jitter=0.0)

    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    jittered = [RetryPolicy(initial=1.0, maximum=100.0).backoff(1, jitter=0.5) for _ in range(50)]
    assert all(1.0 <= w <= 1.5 for w in jittered)


def test_retry_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


async def test_each_retry_is_logged(
    generator: Generator, fake_ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ollama.script(Reply(status=500, error_message="first failure"))
    with caplog.at_level(logging.WARNING, logger="bot.model.retry"):
        await generator.stream(ask())

    retries = [r for r in caplog.records if r.name == "bot.model.retry"]
    assert len(retries) == 1
    assert "attempt 1 failed" in retries[0].getMessage()
    assert "first failure" in retries[0].getMessage()


async def test_on_end_reports_the_response_once_and_not_for_failures(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    ended: list[Response] = []
    response = await generator.stream(ask(), on_end=ended.append)
    assert ended == [response]

    fake_ollama.script(*[Reply(status=500)] * FAST_RETRY.attempts)
    with pytest.raises(OllamaError):
        await generator.stream(ask(), on_end=ended.append)
    assert ended == [response]


# -- pinned by mutation testing ----------------------------------------------------------------


async def test_a_stream_that_ends_without_its_final_line_is_retried_before_any_token(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["lost"], end_after=0), Reply.text("Second try."))
    response = await generator.stream(ask())
    assert response.content == "Second try."
    assert response.outcome is Outcome.COMPLETE
    assert len(fake_ollama.requests) == 2


async def test_a_stream_that_ends_without_its_final_line_after_tokens_is_interrupted(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["kept ", "lost"], end_after=1))
    response = await generator.stream(ask())
    assert response.outcome is Outcome.INTERRUPTED
    assert response.content == "kept "
    assert response.error == "The reply ended unexpectedly."
    assert len(fake_ollama.requests) == 1


async def test_tokens_are_counted_across_tool_rounds(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(
            tokens=["Let ", "me ", "add."],
            tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}],
        ),
        Reply(tokens=["It ", "is ", "5", "."]),
    )
    response = await generator.stream(ask(), tool_runner=AddTools())
    assert response.token_count == 3 + 4  # summed over both rounds, not the last one's
    assert response.content == "Let me add.\n\nIt is 5."


async def test_a_reply_that_used_tools_is_not_cached(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = Generator(backend, retry=FAST_RETRY, cache=ResponseCache())
    request = ask(options={"temperature": 0.0})
    call = Reply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    fake_ollama.script(call, Reply.text("Two."), call, Reply.text("Two."))
    first = await generator.stream(request, tool_runner=AddTools())
    again = await generator.stream(request, tool_runner=AddTools())
    assert (first.content, again.content) == ("Two.", "Two.")
    assert not again.cached  # the tool's answer may differ next time (the time, a lookup)
    assert len(fake_ollama.requests) == 4


async def test_a_cache_hit_has_its_own_timings_and_is_reported_at_its_end(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    generator = Generator(backend, retry=FAST_RETRY, cache=ResponseCache())
    request = ask(options={"temperature": 0.0})
    first = await generator.stream(request)
    ended: list[Response] = []
    before = time.monotonic()
    again = await generator.stream(request, on_end=ended.append)
    elapsed = time.monotonic() - before
    assert ended == [again]
    assert again.cached
    assert not first.cached
    assert again.time_to_first_token is not None
    assert again.total_duration is not None
    assert 0 <= again.time_to_first_token <= again.total_duration <= elapsed
