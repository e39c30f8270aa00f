"""OllamaChatModel through the real ollama.AsyncClient against the wire-level fake."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from bot.errors import ModelNotFoundError, OllamaError, OllamaUnavailableError
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatDelta, ChatRequest
from bot.types import Message, Role, ToolCall
from tests.fakes.fake_ollama import FakeOllama, Reply

USER = Message(role=Role.USER, content="hello there")


@pytest.fixture
async def backend(fake_ollama: FakeOllama) -> AsyncIterator[OllamaChatModel]:
    async with OllamaChatModel(fake_ollama.url, connect_timeout=2.0) as model:
        yield model


def request(*messages: Message, **kwargs: object) -> ChatRequest:
    return ChatRequest(model="llama3.2", messages=messages or (USER,), **kwargs)  # type: ignore[arg-type]


async def collect(backend: OllamaChatModel, req: ChatRequest) -> list[ChatDelta]:
    return [delta async for delta in backend.chat(req)]


async def drain(backend: OllamaChatModel, req: ChatRequest, seen: list[str]) -> None:
    async for delta in backend.chat(req):
        seen.append(delta.content)


async def test_chat_streams_deltas_and_reports_counters_in_seconds(
    backend: OllamaChatModel,
) -> None:
    deltas = await collect(backend, request())

    assert "".join(d.content for d in deltas) == "echo: hello there"
    assert len(deltas) > 2  # streamed word by word, not in one piece
    last = deltas[-1]
    assert last.done
    assert last.done_reason == "stop"
    assert last.eval_count == 3
    assert last.total_duration is not None
    assert 0 <= last.total_duration < 60  # seconds, not nanoseconds
    assert not any(d.done for d in deltas[:-1])


async def test_chat_sends_options_tools_think_format_and_tool_messages(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    tool = {"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}
    messages = (
        Message(role=Role.SYSTEM, content="be brief"),
        Message(role=Role.USER, content="look", images=(b"\x89PNG",)),
        Message(
            role=Role.ASSISTANT, content="", tool_calls=(ToolCall(name="calc", arguments={"x": 1}),)
        ),
        Message(role=Role.TOOL, content="2", metadata={"tool_name": "calc"}),
    )
    req = request(
        *messages,
        options={"temperature": 0.2, "seed": 7},
        tools=[tool],
        think=True,
        format={"type": "object"},
        keep_alive="5m",
    )
    await collect(backend, req)

    body = fake_ollama.requests[-1]
    assert body["options"] == {"temperature": 0.2, "seed": 7}
    assert body["tools"][0]["function"]["name"] == "calc"
    assert body["think"] is True
    assert body["format"] == {"type": "object"}
    assert body["keep_alive"] == "5m"
    assert body["stream"] is True
    sent = body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[1]["images"] == [base64.b64encode(b"\x89PNG").decode()]
    assert sent[2]["tool_calls"] == [{"function": {"name": "calc", "arguments": {"x": 1}}}]
    assert sent[3]["tool_name"] == "calc"


async def test_chat_separates_thinking_and_reports_tool_calls(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(
            tokens=["ok"],
            thinking=["let me ", "think"],
            tool_calls=[{"name": "calc", "arguments": {"expression": "1+1"}}],
        )
    )
    deltas = await collect(backend, request())

    assert "".join(d.thinking for d in deltas) == "let me think"
    assert "".join(d.content for d in deltas) == "ok"
    calls = [c for d in deltas for c in d.tool_calls]
    assert calls == [ToolCall(name="calc", arguments={"expression": "1+1"})]


async def test_unknown_model_raises_model_not_found_listing_installed(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3:8b")
    with pytest.raises(ModelNotFoundError) as caught:
        await collect(backend, ChatRequest(model="mistral", messages=(USER,)))

    err = caught.value
    assert err.model == "mistral"
    assert set(err.available_models) == {"llama3.2:latest", "qwen3:8b"}
    assert "qwen3:8b" in err.user_message
    assert not err.retryable


async def test_http_500_is_a_retryable_error_with_its_status(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(status=500, error_message="llama runner crashed"))
    with pytest.raises(OllamaError) as caught:
        await collect(backend, request())

    assert caught.value.retryable
    assert caught.value.status_code == 500
    assert "llama runner crashed" in caught.value.user_message


async def test_http_400_is_not_retryable(backend: OllamaChatModel, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(status=400, error_message="model does not support tools"))
    with pytest.raises(OllamaError) as caught:
        await collect(backend, request())

    assert not caught.value.retryable
    assert caught.value.status_code == 400


async def test_error_line_mid_stream_is_retryable_after_the_partial_deltas(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["a", "b", "c"], error_after=2, error_message="out of memory"))
    seen: list[str] = []
    with pytest.raises(OllamaError) as caught:
        await drain(backend, request(), seen)

    assert seen == ["a", "b"]
    assert caught.value.retryable
    assert "out of memory" in caught.value.user_message


async def test_connection_dropped_mid_stream_is_a_retryable_error(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["a", "b", "c"], drop_after=1))
    seen: list[str] = []
    with pytest.raises(OllamaError) as caught:
        await drain(backend, request(), seen)

    assert seen == ["a"]
    assert caught.value.retryable
    assert "connection" in caught.value.user_message.lower()


async def test_refused_connection_raises_unavailable_naming_the_host(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()

    with pytest.raises(OllamaUnavailableError) as caught:
        await collect(backend, request())
    assert caught.value.host == fake_ollama.url
    assert fake_ollama.url in caught.value.user_message
    assert caught.value.retryable
    with pytest.raises(OllamaUnavailableError):
        await backend.show("llama3.2")
    with pytest.raises(OllamaUnavailableError):
        await backend.list_models()
    with pytest.raises(OllamaUnavailableError):
        await backend.version()


async def test_backend_recovers_when_ollama_comes_back_on_the_same_port(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()
    with pytest.raises(OllamaUnavailableError):
        await backend.version()
    await fake_ollama.start()

    assert await backend.version()


async def test_closing_the_iterator_closes_the_server_side_stream(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(tokens=["tok "] * 500, token_delay=0.01))
    stream = backend.chat(request())
    first = await anext(stream)
    assert first.content == "tok "
    assert fake_ollama.active_streams == 1

    await stream.aclose()  # type: ignore[attr-defined]

    await fake_ollama.wait_for_client_close(1)
    await fake_ollama.wait_for_idle()
    assert fake_ollama.streams_completed == 0


async def test_show_reports_context_length_and_capabilities(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model(
        "qwen3:8b",
        capabilities=["completion", "tools", "thinking"],
        context_length=40960,
        family="qwen3",
    )
    info = await backend.show("qwen3:8b")

    assert info.context_length == 40960
    assert info.supports_tools
    assert info.supports_thinking
    assert not info.supports_vision
    assert info.family == "qwen3"


async def test_show_unknown_model_raises_model_not_found(backend: OllamaChatModel) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        await backend.show("nope")
    assert caught.value.available_models == ("llama3.2:latest",)


async def test_list_models_names_every_installed_model(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("qwen3:8b")
    fake_ollama.remove_model("llama3.2")

    assert [m.name for m in await backend.list_models()] == ["qwen3:8b"]


async def test_pull_reports_progress_then_success_and_installs_the_model(
    backend: OllamaChatModel,
) -> None:
    progress = [p async for p in backend.pull("phi4")]

    assert progress[-1].status == "success"
    fractions = [p.fraction for p in progress if p.fraction is not None]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert "phi4:latest" in [m.name for m in await backend.list_models()]


async def test_pull_of_an_unknown_model_fails_with_the_reason(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    fake_ollama.pullable = {"phi4"}
    with pytest.raises(OllamaError) as caught:
        async for _ in backend.pull("does-not-exist"):
            pass
    assert "does-not-exist" in caught.value.user_message
    assert "file does not exist" in caught.value.user_message
    assert not caught.value.retryable


async def test_version_reports_the_server_version(backend: OllamaChatModel) -> None:
    assert await backend.version() == "0.12.6"


async def test_host_is_the_url_it_talks_to(
    backend: OllamaChatModel, fake_ollama: FakeOllama
) -> None:
    assert backend.host == fake_ollama.url


def test_streamed_line_of_the_wrong_shape_is_rejected_not_passed_on() -> None:
    # Lines are read without pydantic (see _LeanClient); a malformed one must still fail loudly
    # (the backend translates _MalformedLine into "Ollama sent an unexpected answer").
    from bot.model.ollama import _line_delta, _MalformedLine

    with pytest.raises(_MalformedLine):
        _line_delta(message="not an object", done=False)
    with pytest.raises(_MalformedLine):
        _line_delta(message={"content": 42}, done=False)
    with pytest.raises(_MalformedLine):
        _line_delta(message={"tool_calls": [{"function": {}}]}, done=False)
    assert _line_delta(message={"content": "Hi"}, done=False) == ChatDelta("Hi")
