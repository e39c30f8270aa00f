"""Example 1: a conversation, streamed as it is written, then awaited whole.

Run it against an Ollama that has llama3.2 (``ollama pull llama3.2``); ``OLLAMA_HOST`` says where
Ollama is. The model is learnt on first use: no ``initialize_model()`` call is needed.
"""

import asyncio

from bot.chat_manager import ChatManager
from bot.types import ModelConfig


async def main() -> None:
    config = ModelConfig(name="llama3.2", temperature=0.7)
    async with ChatManager(config, system_prompt="You are a helpful assistant.") as chat:
        async for chunk in chat.send_message("Tell me a joke about programming."):
            print(chunk.content, end="", flush=True)
        print()
        response = await chat.send_message("Explain why it is funny.")
        print(response.content)


if __name__ == "__main__":
    asyncio.run(main())
