"""ChatManager through the real ollama client against the fake Ollama server."""

from __future__ import annotations

import base64
import json

import pytest

from bot.batch import process_message_batch
from bot.chat_manager import ChatManager
from bot.errors import ChatError, InputRejected, ModelNotFoundError, OllamaError
from bot.model.cache import ResponseCache
from bot.model.ollama import OllamaChatModel
from bot.model.retry import RetryPolicy
from bot.prompts import ChainOfThoughtPrompt, ChainResult
from bot.types import ChatMode, Message, ModelConfig, Outcome, Role
from tests.fakes.fake_ollama import FakeOllama, Reply

CHAIN = {"steps": ["Add 2 and 2"], "reasoning": "Two plus two is four.", "solution": "4"}


def manager(fake: FakeOllama, **kwargs: object) -> ChatManager:
    kwargs.setdefault("retry", RetryPolicy.none())
    return ChatManager(host=fake.url, **kwargs)  # type: ignore[arg-type]


def roles(body: dict[str, object]) -> list[str]:
    return [m["role"] for m in body["messages"]]  # type: ignore[attr-defined,index]


async def test_streamed_chunks_make_the_reply_and_both_sides_are_remembered(
    fake_ollama: FakeOllama,
) -> None:
    async with manager(fake_ollama, system_prompt="Be brief.") as chat:
        await chat.initialize_model("llama3.2")
        stream = chat.send_message("hello there")
        text = "".join([chunk.content async for chunk in stream])
        response = await stream
    assert text == "echo: hello there"
    assert response.content == "echo: hello there"
    assert response.outcome is Outcome.COMPLETE
    assert response.token_count > 0
    assert [(m.role, m.content) for m in chat.history] == [
        (Role.USER, "hello there"),
        (Role.ASSISTANT, "echo: hello there"),
    ]
    body = fake_ollama.requests[0]
    assert body["model"] == "llama3.2"
    assert body["stream"] is True
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_awaited_reply_carries_meta_and_history_is_sent_next_time(
    fake_ollama: FakeOllama,
) -> None:
    async with manager(fake_ollama) as chat:
        first = await chat.get_response_with_meta("one")
        second = await chat.send_message("two")
    assert first.content == "echo: one"
    assert first.model_name == "llama3.2"
    assert first.time_to_first_token is not None
    assert second.content == "echo: two"
    assert [m["content"] for m in fake_ollama.requests[1]["messages"]] == [
        "one",
        "echo: one",
        "two",
    ]


async def test_mode_changes_the_options_and_the_system_addendum(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama, system_prompt="You are Ollabot.") as chat:
        await chat.send_message("a")
        chat.set_mode(ChatMode.PRECISE)
        await chat.send_message("b")
        chat.set_mode(ChatMode.CODE)
        await chat.send_message("c")
    balanced, precise, code = (body["options"] for body in fake_ollama.requests)
    assert (balanced["temperature"], balanced["top_p"]) == (0.7, 0.9)
    assert (precise["temperature"], precise["top_p"]) == (0.2, 0.5)
    assert (code["temperature"], code["top_p"]) == (0.1, 0.5)
    precise_system = fake_ollama.requests[1]["messages"][0]["content"]
    assert precise_system.startswith("You are Ollabot.\n\n")
    assert ChatMode.PRECISE.profile.addendum in precise_system
    assert fake_ollama.requests[0]["messages"][0]["content"] == "You are Ollabot."


async def test_explicit_config_values_win_over_the_mode(fake_ollama: FakeOllama) -> None:
    config = ModelConfig(name="llama3.2", temperature=0.33, seed=7, context_length=2048)
    async with manager(fake_ollama, config=config, mode=ChatMode.CREATIVE) as chat:
        await chat.send_message("x")
    options = fake_ollama.requests[0]["options"]
    assert options["temperature"] == 0.33
    assert options["top_p"] == 0.95
    assert options["seed"] == 7
    assert options["num_ctx"] == 2048


async def test_history_is_trimmed_to_the_context_and_the_system_prompt_kept(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_model("tiny", context_length=400)
    async with manager(fake_ollama, system_prompt="SYSTEM PROMPT") as chat:
        info = await chat.initialize_model("tiny")
        assert info.context_length == 400
        for i in range(8):
            await chat.send_message(f"message {i} " + "x" * 200)
    last = fake_ollama.requests[-1]
    assert last["options"]["num_ctx"] == 400
    assert last["messages"][0] == {"role": "system", "content": "SYSTEM PROMPT"}
    sent = [m["content"] for m in last["messages"][1:]]
    assert sent[-1].startswith("message 7 ")
    assert not any(s.startswith(("message 0 ", "echo: message 0 ")) for s in sent)
    # The budget (400 - 100 reserved) holds the system prompt and only the newest few turns.
    assert len(sent) < 8
    assert len(chat.history) == 16


async def test_thinking_is_requested_only_when_supported_and_never_stored(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_model("qwen3", capabilities=["completion", "thinking"])
    fake_ollama.script(Reply(thinking=["Let me ", "think."], tokens=["Four", "."]))
    async with manager(fake_ollama, config=ModelConfig(name="qwen3", think=True)) as chat:
        await chat.initialize_model()
        stream = chat.send_message("2+2?")
        chunks = [chunk async for chunk in stream]
        response = await stream
        await chat.initialize_model("llama3.2")
        await chat.send_message("again")
    assert "".join(c.thinking for c in chunks) == "Let me think."
    assert response.content == "Four."
    assert response.thinking == "Let me think."
    assert chat.history[1] == Message(
        role=Role.ASSISTANT, content="Four.", metadata={"outcome": "complete"}
    )
    assert fake_ollama.requests[0]["think"] is True
    assert fake_ollama.requests[1].get("think") in (None, False)


async def test_calculator_tool_round_trip(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3", capabilities=["completion", "tools"])
    fake_ollama.script(
        Reply(tool_calls=[{"name": "calculate", "arguments": {"expression": "6 * 7"}}]),
        Reply.text("It is 42."),
    )
    async with manager(fake_ollama, config=ModelConfig(name="qwen3")) as chat:
        await chat.initialize_model()
        chat.enable_function_calling()
        response = await chat.get_response_with_meta("What is 6 times 7?")
    assert response.content == "It is 42."
    assert [c.name for c in response.tool_calls] == ["calculate"]
    first, second = fake_ollama.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["current_time", "calculate"]
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"] == "42"
    assert roles(second)[-2] == "assistant"
    assert [(m.role, m.content) for m in chat.history] == [
        (Role.USER, "What is 6 times 7?"),
        (Role.ASSISTANT, "It is 42."),
    ]


async def test_tools_are_refused_for_a_model_without_tool_support(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama) as chat:
        await chat.initialize_model()
        with pytest.raises(ChatError, match="does not support tools"):
            chat.enable_function_calling()
        await chat.send_message("hi")
    assert not fake_ollama.requests[0].get("tools")


async def test_tools_enabled_before_the_model_is_known_are_checked_on_first_use(
    fake_ollama: FakeOllama,
) -> None:
    async with manager(fake_ollama) as chat:
        chat.enable_function_calling()  # recorded: nothing is known about llama3.2 yet
        with pytest.raises(ChatError, match="does not support tools") as refused:
            await chat.send_message("hi")
        assert isinstance(refused.value, OllamaError)
        assert chat.tools is None
        reply = await chat.send_message("hi")
    assert reply.content == "echo: hi"
    assert len(fake_ollama.requests) == 1
    assert not fake_ollama.requests[0].get("tools")


async def test_the_model_is_learnt_once_on_first_use(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3", capabilities=["completion", "tools"], context_length=32768)
    async with manager(fake_ollama, config=ModelConfig(name="qwen3")) as chat:
        chat.enable_function_calling()
        assert chat.model_info is None
        await chat.send_message("one")
        await chat.send_message("two")
        await chat.execute_chain(ChainOfThoughtPrompt("three"))
        assert chat.model_info is not None
    assert [b["model"] for path, b in fake_ollama.log if path == "/api/show"] == ["qwen3"]
    assert all(body["tools"] for body in fake_ollama.requests[:2])
    assert fake_ollama.requests[0]["options"]["num_ctx"] == 8192


async def test_chain_of_thought_with_good_json(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply.text(json.dumps(CHAIN)))
    async with manager(fake_ollama) as chat:
        result = await chat.execute_chain(ChainOfThoughtPrompt("What is 2+2?", steps=1))
    assert result == ChainResult(
        reasoning="Two plus two is four.", solution="4", steps=["Add 2 and 2"]
    )
    body = fake_ollama.requests[0]
    assert body["format"]["required"] == ["steps", "reasoning", "solution"]
    assert body["messages"][-1]["content"].startswith("Task: What is 2+2?")
    assert chat.history == []


async def test_chain_of_thought_with_json_in_a_fence(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply.text(f"Here you go:\n```json\n{json.dumps(CHAIN)}\n```"))
    async with manager(fake_ollama) as chat:
        result = await chat.execute_chain(ChainOfThoughtPrompt("What is 2+2?"))
    assert result.solution == "4"
    assert result.steps == ["Add 2 and 2"]


async def test_chain_of_thought_with_prose(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply.text("Reasoning:\n1. Take two.\n2. Add two.\nAnswer: 4"))
    async with manager(fake_ollama) as chat:
        result = await chat.execute_chain(ChainOfThoughtPrompt("What is 2+2?"))
    assert result.solution == "4"
    assert result.steps == ["Take two.", "Add two."]
    assert chat.history == []


async def test_missing_model_error_lists_installed_models(fake_ollama: FakeOllama) -> None:
    fake_ollama.add_model("qwen3:8b")
    async with manager(fake_ollama) as chat:
        with pytest.raises(ModelNotFoundError) as info:
            await chat.initialize_model("nope")
    assert set(info.value.available_models) == {"llama3.2:latest", "qwen3:8b"}
    assert "llama3.2:latest" in str(info.value)
    assert chat.config.name == "llama3.2"


async def test_deterministic_reply_is_served_from_cache(fake_ollama: FakeOllama) -> None:
    cache = ResponseCache()
    config = ModelConfig(name="llama3.2", temperature=0.0)
    async with manager(fake_ollama, config=config, cache=cache) as chat:
        first = await chat.send_message("same question")
        chat.clear_history()
        second = await chat.send_message("same question")
    assert len(fake_ollama.requests) == 1
    assert not first.cached
    assert second.cached
    assert second.content == first.content
    assert (cache.hits, cache.misses) == (1, 1)
    assert [m.content for m in chat.history] == ["same question", "echo: same question"]


async def test_sampled_reply_is_not_cached(fake_ollama: FakeOllama) -> None:
    cache = ResponseCache()
    config = ModelConfig(name="llama3.2", temperature=0.7)
    async with manager(fake_ollama, config=config, cache=cache) as chat:
        await chat.send_message("same question")
        chat.clear_history()
        second = await chat.send_message("same question")
    assert len(fake_ollama.requests) == 2
    assert not second.cached
    assert len(cache) == 0


async def test_batch_keeps_order_and_isolates_a_failure(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama) as chat:
        items = await process_message_batch(chat, ["first", "   ", "third", "x" * 5000], 2)
    assert [item.ok for item in items] == [True, False, True, False]
    assert items[0].unwrap().content == "echo: first"
    assert items[2].unwrap().content == "echo: third"
    assert isinstance(items[1].error, InputRejected)
    assert isinstance(items[3].error, InputRejected)
    assert len(fake_ollama.requests) == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("\u200b \n", "empty"), ("y" * 4097, "4,097 characters; the limit is 4,096")],
)
async def test_rejected_input_never_reaches_the_server(
    fake_ollama: FakeOllama, text: str, reason: str
) -> None:
    async with manager(fake_ollama) as chat:
        with pytest.raises(InputRejected, match=reason):
            chat.send_message(text)
    assert fake_ollama.requests == []
    assert chat.history == []


async def test_input_limit_is_configurable(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama, max_input_chars=10) as chat:
        with pytest.raises(InputRejected, match="the limit is 10"):
            chat.send_message("x" * 11)
        assert (await chat.send_message("x" * 10)).content == "echo: " + "x" * 10


async def test_stopped_reply_keeps_its_partial_text_in_history(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(tokens=["one ", "two ", "three ", "four"]))
    async with manager(fake_ollama) as chat:
        async with chat.send_message("count") as stream:
            async for chunk in stream:
                if chunk.content == "two ":
                    break
        response = stream.response
        await fake_ollama.wait_for_idle()
    assert response is not None
    assert response.outcome is Outcome.STOPPED
    assert response.content == "one two "
    assert chat.history[-1] == Message(
        role=Role.ASSISTANT, content="one two", metadata={"outcome": "stopped"}
    )


async def test_interrupted_reply_keeps_its_partial_text_in_history(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(tokens=["one ", "two ", "three"], drop_after=2))
    async with manager(fake_ollama) as chat:
        response = await chat.send_message("count")
    assert response.outcome is Outcome.INTERRUPTED
    assert response.error
    assert [(m.role, m.content) for m in chat.history] == [
        (Role.USER, "count"),
        (Role.ASSISTANT, "one two"),
    ]


async def test_failure_before_any_text_raises_and_leaves_history_alone(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.remove_model("llama3.2")
    async with manager(fake_ollama) as chat:
        with pytest.raises(ModelNotFoundError):
            await chat.send_message("hi")
    assert chat.history == []


async def test_clear_history_forgets_the_conversation(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama, system_prompt="S") as chat:
        await chat.send_message("one")
        chat.clear_history()
        await chat.send_message("two")
    assert [m["content"] for m in fake_ollama.requests[1]["messages"]] == ["S", "two"]


async def test_available_models_lists_what_is_installed(fake_ollama: FakeOllama) -> None:
    async with manager(fake_ollama) as chat:
        assert await chat.available_models() == ["llama3.2:latest"]


async def test_images_go_to_a_vision_model_and_are_refused_otherwise(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_model("llava", capabilities=["completion", "vision"])
    async with manager(fake_ollama) as chat:
        with pytest.raises(ChatError, match="cannot see images"):
            await chat.send_message("what is this?", images=[b"\x89PNG"])
        with pytest.raises(ChatError, match="cannot see images"):
            chat.send_message("what is this?", images=[b"\x89PNG"])  # known now: at once
        await chat.initialize_model("llava")
        await chat.send_message("what is this?", images=[b"\x89PNG"])
    assert len(fake_ollama.requests) == 1
    assert fake_ollama.requests[0]["messages"][-1]["images"] == [
        base64.b64encode(b"\x89PNG").decode()
    ]


async def test_a_backend_passed_in_is_used_and_left_open(fake_ollama: FakeOllama) -> None:
    async with OllamaChatModel(fake_ollama.url) as backend:
        async with ChatManager(model=backend) as chat:
            assert (await chat.send_message("hi")).content == "echo: hi"
        # Still open: the manager did not build it, so it does not close it.
        assert await backend.version()
