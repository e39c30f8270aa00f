"""What the engine adds on top of the bare ollama client, per streamed reply.

Run: ``.venv/bin/python bench/engine_overhead.py``

The wire-level fake Ollama (``tests/fakes/fake_ollama.py``) runs in this process and streams a
2,000-token reply with no delay; all variants are timed in the same process, alternating, over
several rounds:

  a. bare: ``ollama.AsyncClient.chat(stream=True)`` consumed in a plain loop (the library builds
     a pydantic ``ChatResponse`` per line; ``OllamaChatModel`` skips that, see its
     ``_LeanClient``, so ``backend`` can be cheaper than ``bare``). Every variant sends the
     same request (ChatManager's options).
  b. engine: ``ChatManager.send_message`` (validation, history trimming, ``Generator.stream``
     with its timeouts, retry policy and ``OllamaChatModel``); ``Generator.stream`` alone
     (``gen``) and ``OllamaChatModel.chat`` alone (``backend``) are timed too.
  c. engine + streamer: (b) fed into ``bot.reply.streamer.ReplyStreamer`` onto a no-op surface
     (every send/edit returns at once; the pacer never waits, the worst case for the streamer's
     CPU).

Prints each variant's median time and the median per-round ratios b/a and c/a (targets: b/a <=
1.10, c/a <= 1.15). The fake's own work (JSON per line, socket writes) is in every variant, as a
real Ollama's would be on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import ollama  # noqa: E402

from bot.chat_manager import ChatManager  # noqa: E402
from bot.model.generation import Generator, Timeouts  # noqa: E402
from bot.model.ollama import OllamaChatModel  # noqa: E402
from bot.model.port import ChatRequest  # noqa: E402
from bot.model.retry import RetryPolicy  # noqa: E402
from bot.reply.streamer import ReplyStatus, ReplyStreamer  # noqa: E402
from bot.types import Message, ModelConfig, Outcome, Role  # noqa: E402
from tests.fakes.fake_ollama import FakeOllama, Reply  # noqa: E402

MODEL = "llama3.2"
PROMPT = "Write a long story."


class _NoWait:
    async def acquire(self) -> None:
        return None

    def penalize(self, retry_after: float) -> None:
        return None


class NullSurface:
    """A reply surface that shows nothing and never waits."""

    def __init__(self) -> None:
        self._pacer = _NoWait()
        self.operations = 0

    @property
    def max_chars(self) -> int:
        return 2000

    @property
    def pacer(self) -> _NoWait:
        return self._pacer

    async def send(self, text: str) -> str:
        self.operations += 1
        return str(self.operations)

    async def edit(self, message_id: str, text: str) -> None:
        self.operations += 1

    def render_status(self, status: ReplyStatus) -> str:
        return ""

    async def typing(self) -> None:
        return None


async def main(tokens: int, rounds: int) -> None:
    async with FakeOllama() as fake:
        words = [f"w{i % 97} " for i in range(tokens)]
        fake.default_reply = lambda body: Reply(tokens=words)
        expected = "".join(words)

        client = ollama.AsyncClient(host=fake.url)
        backend = OllamaChatModel(fake.url)
        generator = Generator(backend, timeouts=Timeouts(), retry=RetryPolicy())
        manager = ChatManager(ModelConfig(name=MODEL), host=fake.url)
        await manager.initialize_model()  # else the first timed reply would learn the model
        # Every variant asks for the same thing as ChatManager does (its sampling options and
        # context size): sending options costs the client and the fake ~1.5 ms of CPU per
        # request here, which is not engine overhead.
        options = {**manager.config.options(manager.mode), "num_ctx": manager.context_length}
        request = ChatRequest(
            model=MODEL, messages=(Message(role=Role.USER, content=PROMPT),), options=options
        )

        async def bare() -> str:
            parts: list[str] = []
            stream = await client.chat(
                model=MODEL,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                options=options,
            )
            async for part in stream:
                parts.append(part.message.content or "")
            return "".join(parts)

        async def raw() -> str:
            parts: list[str] = []
            async for delta in backend.chat(request):
                parts.append(delta.content)
            return "".join(parts)

        async def gen() -> str:
            parts: list[str] = []
            stream = generator.stream(request)
            async for chunk in stream:
                parts.append(chunk.content)
            await stream
            return "".join(parts)

        async def engine() -> str:
            manager.clear_history()
            parts: list[str] = []
            stream = manager.send_message(PROMPT)
            async for chunk in stream:
                parts.append(chunk.content)
            await stream
            return "".join(parts)

        async def streamed() -> str:
            manager.clear_history()
            streamer = ReplyStreamer(NullSurface(), typing_interval=0)
            stream = manager.send_message(PROMPT)
            await streamer.start()
            async for chunk in stream:
                streamer.push(chunk)
            response = await stream
            reply = await streamer.finish(ReplyStatus(Outcome.COMPLETE, model=MODEL))
            return reply.text if response.outcome is Outcome.COMPLETE else ""

        variants: dict[str, Callable[[], Awaitable[str]]] = {
            "a bare": bare,
            "backend": raw,
            "gen": gen,
            "b engine": engine,
            "c engine+streamer": streamed,
        }
        for name, run in variants.items():  # warm up, and check every variant sees the reply
            text = await run()
            if text.strip() != expected.strip():
                raise SystemExit(f"{name}: wrong text ({len(text)} chars)")

        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]  # rotate the order
            for name in order:
                gc.collect()
                start, start_cpu = time.perf_counter(), time.process_time()
                await variants[name]()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)

        await manager.close()
        await backend.close()
        await client.close()

    load = os.getloadavg()[0]
    print(f"{tokens} tokens per reply, {rounds} rounds, in-process fake Ollama, load {load:.1f}")
    for name in names:
        median, median_cpu = statistics.median(times[name]), statistics.median(cpu[name])
        print(
            f"  {name:<18} median {median * 1000:7.1f} ms wall, {median_cpu * 1000:7.1f} ms CPU"
            f"  ({tokens / median:,.0f} tokens/s)"
        )
    # Wall time is what a user waits for; process CPU time is steadier when other processes
    # share the machine (both include the fake server, which runs in this process). Ratios to
    # ``backend`` show what the engine adds on top of its own backend (which skips the
    # library's per-line pydantic parsing that ``bare`` pays for).
    # The per-token CPU difference is the median of the per-round (paired) differences.
    checks = (("backend", 1.10), ("gen", 1.10), ("b engine", 1.10), ("c engine+streamer", 1.15))
    for base in ("a bare", "backend"):
        for name, target in checks:
            if name == base:
                continue
            pairs = list(zip(times[name], times[base], strict=True))
            cpu_pairs = list(zip(cpu[name], cpu[base], strict=True))
            wall = statistics.median(t / b for t, b in pairs)
            used = statistics.median(t / b for t, b in cpu_pairs)
            extra = statistics.median(t - b for t, b in cpu_pairs) / tokens
            verdict = ""
            if base == "a bare":
                verdict = " (target <= {:.2f}) wall {}, CPU {};".format(
                    target,
                    "ok" if wall <= target else "OVER TARGET",
                    "ok" if used <= target else "OVER TARGET",
                )
            print(
                f"  {name:<18} / {base:<7}: median ratio {wall:.3f} wall, {used:.3f} CPU"
                f"{verdict} {extra * 1e6:+.1f} us CPU per token"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rounds))
