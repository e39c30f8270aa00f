"""The seed's three examples, run unchanged against a fake Ollama that has the models they name.

Each example is a script in ``examples/``; it finds Ollama through ``OLLAMA_HOST`` like any user
script, and none calls ``initialize_model()``. Then the seed's two tests: the model is learnt on
first use, and ``ChatError`` is an ``OllamaError``.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.chat_manager import ChatManager
from bot.errors import ChatError, OllamaError
from bot.types import ChatMode, ModelConfig
from tests.fakes.fake_ollama import FakeOllama, Reply

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> Callable[[], Awaitable[None]]:
    namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")
    main: Callable[[], Awaitable[None]] = namespace["main"]
    return main


@pytest.fixture
def ollama_here(fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> FakeOllama:
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    return fake_ollama


async def test_example_1_streams_then_awaits_a_reply(
    ollama_here: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    await example("basic_chat")()
    out = capsys.readouterr().out
    assert out == "echo: Tell me a joke about programming.\necho: Explain why it is funny.\n"
    first, second = ollama_here.requests
    assert first["options"]["temperature"] == 0.7
    assert [m["content"] for m in second["messages"]] == [
        "You are a helpful assistant.",
        "Tell me a joke about programming.",
        "echo: Tell me a joke about programming.",
        "Explain why it is funny.",
    ]


async def test_example_2_tools_and_mode_without_initialize_model(
    ollama_here: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    ollama_here.add_model("llama3.2", capabilities=["completion", "tools"])
    ollama_here.script(
        Reply(tool_calls=[{"name": "calculate", "arguments": {"expression": "1234 * 5678"}}]),
        Reply.text("It is 7006652."),
    )
    await example("tools_and_modes")()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "It is 7006652."
    assert lines[1].endswith("tokens/s")
    first, second = ollama_here.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["current_time", "calculate"]
    assert first["options"]["temperature"] == 0.2  # precise
    tool_message = second["messages"][-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", "7006652")


async def test_example_3_chain_of_thought(
    ollama_here: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    chain = {
        "steps": ["1. From 9:40 to 10:40 is 1 h", "2. From 10:40 to 11:15 is 35 min", "3. Add"],
        "reasoning": "Count the hours, then the minutes.",
        "solution": "1 h 35 min",
    }
    ollama_here.script(Reply.text(json.dumps(chain)))
    await example("chain_of_thought")()
    assert capsys.readouterr().out.splitlines() == [
        "1. From 9:40 to 10:40 is 1 h",
        "2. From 10:40 to 11:15 is 35 min",
        "3. Add",
        "Solution: 1 h 35 min",
    ]
    assert ollama_here.requests[0]["format"]["properties"]["steps"]["minItems"] == 3


async def test_seed_get_response_with_meta_needs_no_initialize_model(
    fake_ollama: FakeOllama,
) -> None:
    async with ChatManager(ModelConfig(name="llama3.2"), host=fake_ollama.url) as chat:
        chat.set_mode(ChatMode.CREATIVE)
        response = await chat.get_response_with_meta("Hello")
    assert response.content == "echo: Hello"
    assert response.model_name == "llama3.2"
    assert response.token_count > 0
    assert chat.model_info is not None
    assert chat.model_info.context_length == 8192


async def test_seed_error_hierarchy_chat_error_is_an_ollama_error(fake_ollama: FakeOllama) -> None:
    assert issubclass(ChatError, OllamaError)
    async with ChatManager(ModelConfig(name="llama3.2"), host=fake_ollama.url) as chat:
        with pytest.raises(OllamaError) as caught:
            await chat.send_message("what is this?", images=[b"\x89PNG"])
    assert isinstance(caught.value, ChatError)
    assert "cannot see images" in str(caught.value)
