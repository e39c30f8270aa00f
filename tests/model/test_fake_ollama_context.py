"""The fake Ollama applies the real server's context rule, seen through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.model.generation import Generator
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatRequest
from bot.types import Message, Role
from tests.fakes.fake_ollama import FakeOllama, prompt_tokens

LONG = "word " * 500  # a message "m<i> " + LONG is 505 tokens as the fake counts


@pytest.fixture
async def generator(fake_ollama: FakeOllama) -> AsyncIterator[Generator]:
    async with OllamaChatModel(fake_ollama.url) as model:
        yield Generator(model)


def conversation(n: int) -> tuple[Message, ...]:
    turns = [
        Message(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content=f"m{i} {LONG}")
        for i in range(n)
    ]
    return (Message(role=Role.SYSTEM, content="Be brief."), *turns)


def ask(messages: tuple[Message, ...], **options: Any) -> ChatRequest:
    return ChatRequest(model="llama3.2", messages=messages, options=options)


async def test_without_num_ctx_the_oldest_messages_are_dropped_at_4096_tokens(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    response = await generator.stream(ask(conversation(10)))

    ran = fake_ollama.contexts[-1]
    assert ran.num_ctx == 4096
    assert ran.dropped == 2  # m0 and m1: the system prompt and the newest 8 fit
    assert [m["content"][:3] for m in ran.messages] == ["Be ", *(f"m{i} " for i in range(2, 10))]
    assert response.prompt_token_count == ran.prompt_tokens <= 4096
    assert ran.prompt_tokens == sum(prompt_tokens(m) for m in ran.messages)


async def test_num_ctx_is_honoured_up_to_the_models_maximum_and_a_change_reloads(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    fake_ollama.add_model("llama3.2", context_length=6000)
    await generator.stream(ask(conversation(10), num_ctx=8192))
    await generator.stream(ask(conversation(10), num_ctx=8192))
    assert fake_ollama.reloads == 0
    await generator.stream(ask(conversation(2), num_ctx=2048))

    assert [(c.num_ctx, c.dropped) for c in fake_ollama.contexts] == [
        (6000, 0),
        (6000, 0),
        (2048, 0),
    ]
    assert fake_ollama.reloads == 1


async def test_the_newest_message_is_kept_even_alone_too_long_and_the_prompt_cut(
    generator: Generator, fake_ollama: FakeOllama
) -> None:
    messages = (Message(role=Role.USER, content=LONG * 2),)
    response = await generator.stream(ask(messages, num_ctx=512))

    ran = fake_ollama.contexts[-1]
    assert (ran.dropped, len(ran.messages)) == (0, 1)
    assert response.prompt_token_count == 512
