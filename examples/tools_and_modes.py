"""Example 2: tools and a chat mode, with the reply's timings and token counts.

Needs a model with tool support (llama3.2 has it). No ``initialize_model()`` call: the model is
learnt on the first message, and the tools enabled before that are checked then.
"""

import asyncio

from bot.chat_manager import ChatManager
from bot.types import ChatMode, ModelConfig


async def main() -> None:
    config = ModelConfig(name="llama3.2")
    async with ChatManager(config) as chat:
        chat.enable_function_calling()
        chat.set_mode(ChatMode.PRECISE)
        response = await chat.get_response_with_meta("What is 1234 * 5678?")
        print(response.content)
        print(f"{response.token_count} tokens at {response.tokens_per_second or 0:.1f} tokens/s")


if __name__ == "__main__":
    asyncio.run(main())
