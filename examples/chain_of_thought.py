"""Example 3: a chain of thought: the steps, the reasoning and the solution, apart."""

import asyncio

from bot.chat_manager import ChatManager
from bot.errors import OllamaError
from bot.prompts import ChainOfThoughtPrompt
from bot.types import ModelConfig


async def main() -> None:
    async with ChatManager(ModelConfig(name="llama3.2")) as chat:
        prompt = ChainOfThoughtPrompt(
            task="A train leaves at 9:40 and arrives at 11:15. How long is the journey?",
            steps=3,
        )
        try:
            result = await chat.execute_chain(prompt)
        except OllamaError as err:  # ChatError too: it is an OllamaError
            print(f"Failed: {err}")
            return
        for number, step in enumerate(result.steps, start=1):
            print(f"{number}. {step}")
        print(f"Solution: {result.solution}")


if __name__ == "__main__":
    asyncio.run(main())
