"""Several Ollama hosts behind one model: RoutedChatModel over real OllamaChatModel clients, each
against its own wire fake. What is asserted is what reached each fake and what the caller got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bot.errors import InputRejected, ModelNotFoundError, OllamaUnavailableError
from bot.model.generation import Generator
from bot.model.hosts import HostState
from bot.model.ollama import OllamaChatModel
from bot.model.port import ChatRequest, HostStatus, select_hosts
from bot.model.retry import RetryPolicy
from bot.model.router import RoutedChatModel
from bot.types import Message, Outcome, Response, Role
from tests.fakes.fake_ollama import FakeOllama, Reply, echo_text

MODEL = "llama3.2:latest"


def ask(text: str, model: str = "llama3.2", **kwargs: object) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message(role=Role.USER, content=text),), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOllama, FakeOllama]]:
    async with FakeOllama() as a, FakeOllama() as b:
        yield a, b


def routed(*fakes: FakeOllama, cap: int = 4) -> RoutedChatModel:
    return RoutedChatModel(
        [OllamaChatModel(f.url, connect_timeout=2.0) for f in fakes],
        max_parallel_per_host=cap,
        recheck_initial=0.05,
        recheck_max=0.2,
    )


async def text_of(router: RoutedChatModel, request: ChatRequest) -> str:
    return "".join([d.content async for d in router.chat(request)])


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for a condition the code under test reaches by itself (no fixed sleeps)."""
    # (Polled: the router has no change notifications for tests.)
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def status_of(router: RoutedChatModel, fake: FakeOllama) -> HostStatus:
    [status] = [s for s in router.statuses() if s.url == fake.url]
    return status


async def test_a_request_goes_to_the_host_with_the_model_loaded_options_unchanged(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    b.loaded.add(MODEL)
    options = {"num_ctx": 16384, "temperature": 0.1, "seed": 7}
    async with routed(a, b) as router:
        for i in range(3):
            assert await text_of(router, ask(f"hi {i}", options=options)) == f"echo: hi {i}"

    assert len(a.requests) == 0
    assert [r["options"] for r in b.requests] == [options] * 3


async def test_a_model_on_one_host_only_is_served_there_and_listed_once(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    b.add_model("qwen3:8b")
    async with routed(a, b) as router:
        for i in range(3):
            assert await text_of(router, ask(f"q{i}", model="qwen3:8b")) == f"echo: q{i}"
        names = sorted(m.name for m in await router.list_models())
        hosts = await router.hosts()
        with pytest.raises(ModelNotFoundError) as missing:
            await text_of(router, ask("x", model="mistral"))

    assert [r["model"] for r in b.requests] == ["qwen3:8b"] * 3
    assert a.requests == []
    assert names == [MODEL, "qwen3:8b"]
    assert [(h.url, h.up, h.models) for h in hosts] == [
        (a.url, True, (MODEL,)),
        (b.url, True, (MODEL, "qwen3:8b")),
    ]
    assert "qwen3:8b" in hosts[1].loaded
    assert missing.value.available_models == (MODEL, "qwen3:8b")


async def test_per_host_caps_hold_under_load_and_every_reply_completes(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    gate = asyncio.Event()
    for fake in fakes:
        fake.default_reply = lambda body: Reply.text(echo_text(body), gate=gate)
    async with routed(a, b, cap=2) as router:
        replies = [asyncio.create_task(text_of(router, ask(f"m{i}"))) for i in range(10)]
        await until(lambda: a.active_streams == 2 and b.active_streams == 2)
        await until(lambda: router.waiting == 6)
        gate.set()
        texts = await asyncio.gather(*replies)

    assert texts == [f"echo: m{i}" for i in range(10)]
    assert a.max_active_streams == b.max_active_streams == 2
    assert a.streams_completed + b.streams_completed == 10


async def test_with_the_loaded_host_full_an_idle_host_loads_the_model(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    a.loaded.add(MODEL)
    gate = asyncio.Event()
    a.script(Reply.text("busy", gate=gate))
    async with routed(a, b, cap=1) as router:
        first = asyncio.create_task(text_of(router, ask("one")))
        await until(lambda: a.active_streams == 1)
        assert await text_of(router, ask("two")) == "echo: two"
        gate.set()
        assert await first == "busy"

    assert [r["messages"][-1]["content"] for r in b.requests] == ["two"]


async def test_with_the_loaded_host_full_and_the_other_busy_the_request_waits_for_a_slot(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    b.add_model("qwen3:8b")
    a.loaded.add(MODEL)
    gate_a, gate_b = asyncio.Event(), asyncio.Event()
    a.script(Reply.text("a busy", gate=gate_a))
    b.script(Reply.text("b busy", gate=gate_b))
    async with routed(a, b, cap=2) as router:
        on_a = asyncio.create_task(text_of(router, ask("one")))
        on_b = asyncio.create_task(text_of(router, ask("other", model="qwen3:8b")))
        await until(lambda: a.active_streams == 1 and b.active_streams == 1)
        a.script(Reply.text("a busy too", gate=gate_a))
        second_a = asyncio.create_task(text_of(router, ask("two")))
        await until(lambda: a.active_streams == 2)
        waiting = asyncio.create_task(text_of(router, ask("three")))
        await until(lambda: router.waiting == 1)
        gate_a.set()
        assert await waiting == "echo: three"
        gate_b.set()
        assert [await on_a, await second_a, await on_b] == ["a busy", "a busy too", "b busy"]

    assert [r["messages"][-1]["content"] for r in a.requests] == ["one", "two", "three"]
    assert [r["model"] for r in b.requests] == ["qwen3:8b"]


async def test_a_host_answering_500_before_the_first_token_is_skipped_and_marked_down(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    a.loaded.add(MODEL)
    a.script(Reply(status=500, error_message="CUDA error: out of memory"))
    async with routed(a, b) as router:
        assert await text_of(router, ask("hello")) == "echo: hello"
        assert len(a.requests) == 1
        assert len(b.requests) == 1
        # Down, then checked again (its /api/version answers) and brought back.
        await until(lambda: status_of(router, a).up)
        assert await text_of(router, ask("again")) == "echo: again"

    assert len(a.requests) == 2


async def test_a_host_that_lost_the_model_is_refreshed_and_another_serves(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    a.loaded.add(MODEL)
    async with routed(a, b) as router:
        assert await text_of(router, ask("one")) == "echo: one"
        a.remove_model(MODEL)
        assert await text_of(router, ask("two")) == "echo: two"
        assert await text_of(router, ask("three")) == "echo: three"
        after = status_of(router, a)

    assert [r["messages"][-1]["content"] for r in a.requests] == ["one", "two"]
    assert [r["messages"][-1]["content"] for r in b.requests] == ["two", "three"]
    assert after.up
    assert after.models == ()


async def response(generator: Generator, request: ChatRequest) -> Response:
    return await generator.stream(request)


async def test_a_killed_host_interrupts_only_its_running_reply_and_the_rest_go_elsewhere(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    a.loaded.add(MODEL)
    b.loaded.add(MODEL)
    gate_b = asyncio.Event()
    words = [f"w{i} " for i in range(400)]
    a.script(Reply(tokens=words, token_delay=0.01))
    b.script(Reply.text("b was busy", gate=gate_b))
    router = routed(a, b, cap=1)
    generator = Generator(router, retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.02))
    async with router:
        running = generator.stream(ask("long story"))
        first = await anext(running)
        busy_b = asyncio.create_task(response(generator, ask("on b")))
        await until(lambda: b.active_streams == 1)
        queued = asyncio.create_task(response(generator, ask("queued")))
        await until(lambda: router.waiting == 1)

        await a.kill()
        rest = "".join([chunk.content async for chunk in running])
        cut = await running
        gate_b.set()
        on_b, moved = await busy_b, await queued
        down = status_of(router, a)
        later = await response(generator, ask("later"))
        await a.start()
        await until(lambda: status_of(router, a).up)

    assert first.content == "w0 "
    assert cut.outcome is Outcome.INTERRUPTED
    assert cut.content == "w0 " + rest
    assert 0 < len(rest) < len("".join(words[1:]))
    assert (on_b.outcome, on_b.content) == (Outcome.COMPLETE, "b was busy")
    assert (moved.outcome, moved.content) == (Outcome.COMPLETE, "echo: queued")
    assert (later.outcome, later.content) == (Outcome.COMPLETE, "echo: later")
    assert not down.up
    assert [r["messages"][-1]["content"] for r in b.requests] == ["on b", "queued", "later"]
    assert a.killed_streams == 1


async def test_pull_goes_to_the_named_host_or_to_all(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    async with routed(a, b) as router:
        one = [p.status async for p in router.pull("qwen3:8b", hosts=[b.url])]
        models_after_one = [s.models for s in router.statuses()]
        every = [p.status async for p in router.pull("phi4")]
        with pytest.raises(InputRejected, match="gpu9"):
            [p async for p in router.pull("phi4", hosts=["gpu9"])]

    short_a, short_b = a.url.split("//")[1], b.url.split("//")[1]
    assert one[0] == f"{short_b}: pulling manifest"
    assert one[-1] == "success: qwen3:8b is on 1 host(s)"
    assert models_after_one[1] == (MODEL, "qwen3:8b")
    assert "qwen3:8b" not in a.models
    assert any(s.startswith(short_a) for s in every)
    assert any(s.startswith(short_b) for s in every)
    assert "phi4:latest" in a.models
    assert "phi4:latest" in b.models


def test_hosts_are_named_by_url_host_and_port_or_unambiguous_host_name() -> None:
    urls = ["http://gpu1:11434", "http://gpu1:11435", "https://gpu2:443"]

    assert select_hosts(urls, []) == urls
    assert select_hosts(urls, ["http://gpu1:11434/", "gpu1:11435"]) == urls[:2]
    assert select_hosts(urls, ["gpu2", "gpu2:443"]) == [urls[2]]
    with pytest.raises(InputRejected, match="'gpu1' matches several hosts"):
        select_hosts(urls, ["gpu1"])


async def test_a_model_every_host_lost_is_reported_with_what_all_hosts_have(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    a.add_model("phi4")
    b.add_model("qwen3:8b")
    async with routed(a, b) as router:
        assert await text_of(router, ask("one")) == "echo: one"
        a.remove_model(MODEL)
        b.remove_model(MODEL)
        with pytest.raises(ModelNotFoundError) as missing:
            await text_of(router, ask("two"))

    assert missing.value.available_models == ("phi4:latest", "qwen3:8b")
    assert len(a.requests) + len(b.requests) == 3  # "one", then "two" tried on both


async def test_every_host_down_is_reported_pointing_at_ollama_hosts_not_ollama_host(
    fakes: tuple[FakeOllama, FakeOllama],
) -> None:
    a, b = fakes
    async with routed(a, b) as router:
        assert await text_of(router, ask("one")) == "echo: one"
        await a.stop()
        await b.stop()
        with pytest.raises(OllamaUnavailableError) as down:
            await text_of(router, ask("two"))
        states = [s.up for s in router.statuses()]

    assert "Check ollama.hosts in the config." in down.value.user_message
    assert "OLLAMA_HOST" not in down.value.user_message
    assert states == [False, False]


async def test_a_down_host_is_checked_again_after_a_doubling_backoff_up_to_the_maximum() -> None:
    now = [100.0]
    backend = OllamaChatModel("http://127.0.0.1:9", connect_timeout=0.5)
    host = HostState(backend, cap=4, recheck_initial=1.0, recheck_max=5.0, clock=lambda: now[0])
    waits = []
    for _ in range(5):
        host.mark_down(OllamaUnavailableError(host.url))
        waits.append(host.next_check - now[0])
    down = host.status()
    host.mark_up()
    host.mark_down(OllamaUnavailableError(host.url))
    await backend.close()

    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert (down.up, down.detail) == (False, "Cannot reach Ollama at http://127.0.0.1:9.")
    assert host.next_check - now[0] == 1.0  # back up resets the backoff
