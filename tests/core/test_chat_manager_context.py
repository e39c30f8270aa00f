"""ChatManager's context window follows the engine's rule (real ollama client, fake Ollama)."""

from __future__ import annotations

import pytest

from bot.chat_manager import ChatManager
from bot.errors import InputRejected
from bot.model.retry import RetryPolicy
from bot.types import ModelConfig
from tests.fakes.fake_ollama import FakeOllama


def manager(fake: FakeOllama, config: ModelConfig | None = None) -> ChatManager:
    return ChatManager(config, host=fake.url, retry=RetryPolicy.none())


async def test_the_window_is_the_configured_one_capped_at_the_models_maximum(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_model("llama3.2", context_length=131_072)
    fake_ollama.add_model("mid", context_length=32_768)
    async with manager(fake_ollama) as chat:
        await chat.send_message("default")
    async with manager(fake_ollama, ModelConfig(name="mid", context_length=100_000)) as chat:
        await chat.send_message("too big")
        await chat.send_message("again")

    assert [r["options"]["num_ctx"] for r in fake_ollama.requests] == [8192, 32_768, 32_768]
    assert [c.num_ctx for c in fake_ollama.contexts] == [8192, 32_768, 32_768]
    assert fake_ollama.reloads == 0


async def test_a_message_that_cannot_fit_the_window_is_refused_with_the_limit(
    fake_ollama: FakeOllama,
) -> None:
    async with manager(fake_ollama, ModelConfig(context_length=512)) as chat:
        await chat.initialize_model()
        with pytest.raises(InputRejected, match="512-token context window"):
            chat.send_message("why " * 400)
    assert fake_ollama.requests == []
